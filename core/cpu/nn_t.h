/*
 * nn_t.h - the CPU nn kernels written once for a float type: nn.c includes this file with
 * T = float and T = double and NN(name) naming the instance. Every tensor is contiguous and
 * seen through the 3-d geometry given in its comment; sums run in double.
 */

/* x, y: [outer, n, inner]; the softmax runs along n. One pass finds max and sum together
 * (the sum is rescaled when the max grows), a second writes y. */
static void NN(softmax)(T *y, const T *x, int64_t outer, int64_t n, int64_t inner, bool log_) {
    int64_t lanes = outer * inner;
#pragma omp parallel for schedule(static) if (lanes * n > LUNAR_GRAIN && cpu_threads() > 1) \
    num_threads(cpu_threads())
    for (int64_t l = 0; l < lanes; l++) {
        int64_t o = l / inner, i = l % inner;
        const T *px = x + o * n * inner + i;
        T *py = y + o * n * inner + i;
        double m = -INFINITY, s = 0;
        for (int64_t k = 0; k < n; k++) {
            double v = px[k * inner];
            if (v > m) {
                s = s * exp(m - v) + 1;
                m = v;
            } else if (v != -INFINITY) { /* adds 0; with m still -inf it would be NaN */
                s += exp(v - m);
            }
        }
        if (log_) {
            double lse = m + log(s);
            for (int64_t k = 0; k < n; k++) py[k * inner] = (T)(px[k * inner] - lse);
        } else {
            double r = 1 / s;
            for (int64_t k = 0; k < n; k++) py[k * inner] = (T)(exp(px[k * inner] - m) * r);
        }
    }
}

/* g, y, gx: [outer, n, inner]. softmax: gx = y (g - sum(g y)); log: gx = g - exp(y) sum(g) */
static void NN(softmax_bwd)(T *gx, const T *g, const T *y, int64_t outer, int64_t n,
                            int64_t inner, bool log_) {
    int64_t lanes = outer * inner;
#pragma omp parallel for schedule(static) if (lanes * n > LUNAR_GRAIN && cpu_threads() > 1) \
    num_threads(cpu_threads())
    for (int64_t l = 0; l < lanes; l++) {
        int64_t base = (l / inner) * n * inner + l % inner;
        double s = 0;
        for (int64_t k = 0; k < n; k++) {
            int64_t j = base + k * inner;
            s += log_ ? (double)g[j] : (double)g[j] * y[j];
        }
        for (int64_t k = 0; k < n; k++) {
            int64_t j = base + k * inner;
            gx[j] = (T)(log_ ? g[j] - exp((double)y[j]) * s : y[j] * (g[j] - s));
        }
    }
}

/* z: [N, C, inner] logits; t: [N, inner] int64 0-based; w: [C] or NULL;
 * loss, lse: [N, inner]. loss = (1 - ls) w[t] (lse - z[t]) + ls / C sum_c w[c] (lse - z[c]),
 * 0 where t is ignored. */
static void NN(xent)(T *loss, T *lse_out, const T *z, const int64_t *t, const T *w, int64_t nb,
                     int64_t c, int64_t inner, int64_t ignore, double ls) {
    int64_t lanes = nb * inner;
#pragma omp parallel for schedule(static) if (lanes * c > LUNAR_GRAIN && cpu_threads() > 1) \
    num_threads(cpu_threads())
    for (int64_t l = 0; l < lanes; l++) {
        const T *pz = z + (l / inner) * c * inner + l % inner;
        double m = -INFINITY, s = 0;
        for (int64_t k = 0; k < c; k++) {
            double v = pz[k * inner];
            if (v > m) {
                s = s * exp(m - v) + 1;
                m = v;
            } else if (v != -INFINITY) { /* adds 0; with m still -inf it would be NaN */
                s += exp(v - m);
            }
        }
        double lse = s > 0 ? m + log(s) : -INFINITY; /* no classes: log of an empty sum */
        lse_out[l] = (T)lse;
        int64_t tc = t[l];
        if (tc == ignore) {
            loss[l] = 0;
            continue;
        }
        double r = (1 - ls) * (w ? w[tc] : 1) * (lse - pz[tc * inner]);
        if (ls != 0) {
            double sm = 0;
            for (int64_t k = 0; k < c; k++) sm += (w ? w[k] : 1) * (lse - pz[k * inner]);
            r += ls / (double)c * sm;
        }
        loss[l] = (T)r;
    }
}

/* The derivative of xent's loss, times g: [N, inner] (the upstream gradient per element).
 * gz[c] = g (p_c ((1 - ls) w[t] + ls W / C) - (1 - ls) w[t] [c == t] - ls w[c] / C), where
 * W = sum of the weights; gz: [N, C, inner]. */
static void NN(xent_bwd)(T *gz, const T *g, const T *z, const T *lse, const int64_t *t,
                         const T *w, int64_t nb, int64_t c, int64_t inner, int64_t ignore,
                         double ls) {
    double wsum = 0;
    for (int64_t k = 0; k < c; k++) wsum += w ? w[k] : 1;
    int64_t lanes = nb * inner;
#pragma omp parallel for schedule(static) if (lanes * c > LUNAR_GRAIN && cpu_threads() > 1) \
    num_threads(cpu_threads())
    for (int64_t l = 0; l < lanes; l++) {
        int64_t base = (l / inner) * c * inner + l % inner;
        int64_t tc = t[l];
        if (tc == ignore) {
            for (int64_t k = 0; k < c; k++) gz[base + k * inner] = 0;
            continue;
        }
        double gl = g[l], wt = (1 - ls) * (w ? w[tc] : 1), a = wt + ls * wsum / (double)c;
        for (int64_t k = 0; k < c; k++) {
            int64_t j = base + k * inner;
            double v = exp((double)z[j] - lse[l]) * a - ls * (w ? w[k] : 1) / (double)c;
            if (k == tc) v -= wt;
            gz[j] = (T)(gl * v);
        }
    }
}

/* x: [A, C, B] -> mean, var (biased): [C]; two passes over each channel for accuracy */
static void NN(moments)(T *mean, T *var, const T *x, int64_t na, int64_t nc, int64_t nb) {
    double cnt = (double)(na * nb);
#pragma omp parallel for schedule(static) if (na * nc * nb > LUNAR_GRAIN && cpu_threads() > 1) \
    num_threads(cpu_threads())
    for (int64_t ch = 0; ch < nc; ch++) {
        double s = 0, q = 0;
        for (int64_t a = 0; a < na; a++) {
            const T *p = x + (a * nc + ch) * nb;
            for (int64_t b = 0; b < nb; b++) s += p[b];
        }
        double mu = s / cnt;
        for (int64_t a = 0; a < na; a++) {
            const T *p = x + (a * nc + ch) * nb;
            for (int64_t b = 0; b < nb; b++) q += (p[b] - mu) * (p[b] - mu);
        }
        mean[ch] = (T)mu;
        var[ch] = (T)(q / cnt);
    }
}

/* x, y: [A, C, B]; mean, rstd: [C]. y = (x - mean) rstd */
static void NN(normalize)(T *y, const T *x, const T *mean, const T *rstd, int64_t na,
                          int64_t nc, int64_t nb) {
#pragma omp parallel for schedule(static) if (na * nc * nb > LUNAR_GRAIN && cpu_threads() > 1) \
    num_threads(cpu_threads())
    for (int64_t r = 0; r < na * nc; r++) {
        int64_t ch = r % nc;
        double mu = mean[ch], rs = rstd[ch];
        for (int64_t b = 0; b < nb; b++) y[r * nb + b] = (T)((x[r * nb + b] - mu) * rs);
    }
}

/* g, xh (the normalised x), gx: [A, C, B]; rstd: [C]. The three-term rule of batch norm
 * (Ioffe & Szegedy 2015, sec. 3) for the normalisation alone:
 * gx = rstd (g - mean(g) - xh mean(g xh)), means over (A, B) per channel. */
static void NN(normalize_bwd)(T *gx, const T *g, const T *xh, const T *rstd, int64_t na,
                              int64_t nc, int64_t nb) {
    double cnt = (double)(na * nb);
#pragma omp parallel for schedule(static) if (na * nc * nb > LUNAR_GRAIN && cpu_threads() > 1) \
    num_threads(cpu_threads())
    for (int64_t ch = 0; ch < nc; ch++) {
        double sg = 0, sgx = 0;
        for (int64_t a = 0; a < na; a++) {
            int64_t o = (a * nc + ch) * nb;
            for (int64_t b = 0; b < nb; b++) {
                sg += g[o + b];
                sgx += (double)g[o + b] * xh[o + b];
            }
        }
        double mg = sg / cnt, mgx = sgx / cnt, rs = rstd[ch];
        for (int64_t a = 0; a < na; a++) {
            int64_t o = (a * nc + ch) * nb;
            for (int64_t b = 0; b < nb; b++)
                gx[o + b] = (T)(rs * (g[o + b] - mg - xh[o + b] * mgx));
        }
    }
}
