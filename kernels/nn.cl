/*
 * nn.cl - the nn kernels: softmax and log-softmax (forward and backward), the fused
 * cross-entropy on integer targets, and the per-channel moments / normalisation of batch,
 * layer and group norm. The op layer hands every tensor over contiguous (an offset aside),
 * seen through the 3-d geometry in each comment; sums run in acc_t, in the CPU's order where
 * one work-item owns a lane, so results match core/cpu/nn_t.h to rounding.
 *
 * Softmax, its backward and cross-entropy come in two forms: one work-item per lane (short
 * rows, many of them: a work-group's work-items take neighbouring lanes) and, with the
 * suffix _wg, one work-group per lane, each work-item taking every ln-th element of the
 * row and the shares joined in local memory (long rows: the host picks, see nn.c). The
 * work-group forms add in another order than the CPU, so they match it to rounding only.
 */

#define NN_WG 256 /* the largest work-group the _wg kernels and the channel kernels take */

/* the sum over the work-group of v (every work-item gets it); buf: NN_WG acc_t */
inline acc_t nn_wg_sum(__local acc_t *buf, acc_t v) {
    int li = get_local_id(0), ln = get_local_size(0);
    barrier(CLK_LOCAL_MEM_FENCE); /* buf may still be read from the last call */
    buf[li] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = ln / 2; h > 0; h /= 2) {
        if (li < h) buf[li] += buf[li + h];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return buf[0];
}

/* One step of the one-pass max and sum: v joins (m, s), s the sum of exp(x - m) so far
 * (rescaled when the max grows), as the CPU. A -inf adds exp(-inf) = 0 and is skipped: with
 * m still -inf, exp(-inf - -inf) would be NaN. */
inline void nn_lse_step(acc_t *m, acc_t *s, acc_t v) {
    if (v > *m) {
        *s = *s * exp(*m - v) + 1;
        *m = v;
    } else if (v != -INFINITY) {
        *s += exp(v - *m);
    }
}

/* (m, s) joined by another share (m2, s2); s = 0 is a share without elements (a NaN or
 * infinite one propagates as in nn_lse_step) */
inline void nn_lse_merge(acc_t *m, acc_t *s, acc_t m2, acc_t s2) {
    if (s2 == 0) return;
    if (*s == 0) {
        *m = m2;
        *s = s2;
    } else if (m2 > *m) {
        *s = *s * exp(*m - m2) + s2;
        *m = m2;
    } else {
        *s += s2 * exp(m2 - *m);
    }
}

/* (m, s) over the work-group from each work-item's share (every work-item gets it); bm, bs:
 * NN_WG acc_t each, free again once it returns */
inline void nn_wg_lse(__local acc_t *bm, __local acc_t *bs, acc_t *m, acc_t *s) {
    int li = get_local_id(0), ln = get_local_size(0);
    barrier(CLK_LOCAL_MEM_FENCE);
    bm[li] = *m;
    bs[li] = *s;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int h = ln / 2; h > 0; h /= 2) {
        if (li < h) {
            acc_t a = bm[li], b = bs[li];
            nn_lse_merge(&a, &b, bm[li + h], bs[li + h]);
            bm[li] = a;
            bs[li] = b;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    *m = bm[0];
    *s = bs[0];
    barrier(CLK_LOCAL_MEM_FENCE); /* every work-item has read them before they are reused */
}

/* y, x: [outer, n, inner] at offsets yo, xo; one work-item per lane (outer * inner lanes).
 * One pass finds max and sum together, a second writes y. */
#define DEF_SOFTMAX(N, T)                                                                     \
    __kernel void softmax_##N(__global T *y, long yo, __global const T *x, long xo,          \
                              long lanes, long n, long inner, int log_) {                     \
        long l = get_global_id(0);                                                            \
        if (l >= lanes) return;                                                               \
        long base = (l / inner) * n * inner + l % inner;                                      \
        __global const T *px = x + xo + base;                                                 \
        __global T *py = y + yo + base;                                                       \
        acc_t m = -INFINITY, s = 0;                                                           \
        for (long k = 0; k < n; k++) nn_lse_step(&m, &s, px[k * inner]);                      \
        if (log_) {                                                                           \
            acc_t lse = m + log(s);                                                           \
            for (long k = 0; k < n; k++) py[k * inner] = (T)((acc_t)px[k * inner] - lse);     \
        } else {                                                                              \
            acc_t r = 1 / s;                                                                  \
            for (long k = 0; k < n; k++)                                                      \
                py[k * inner] = (T)(exp((acc_t)px[k * inner] - m) * r);                       \
        }                                                                                     \
    }                                                                                         \
    /* the same, one work-group per lane */                                                   \
    __kernel void softmax_wg_##N(__global T *y, long yo, __global const T *x, long xo,       \
                                 long n, long inner, int log_) {                              \
        __local acc_t bm[NN_WG], bs[NN_WG];                                                   \
        long l = get_group_id(0), li = get_local_id(0), ln = get_local_size(0);               \
        long base = (l / inner) * n * inner + l % inner;                                      \
        __global const T *px = x + xo + base;                                                 \
        __global T *py = y + yo + base;                                                       \
        acc_t m = -INFINITY, s = 0;                                                           \
        for (long k = li; k < n; k += ln) nn_lse_step(&m, &s, px[k * inner]);                 \
        nn_wg_lse(bm, bs, &m, &s);                                                            \
        if (log_) {                                                                           \
            acc_t lse = m + log(s);                                                           \
            for (long k = li; k < n; k += ln) py[k * inner] = (T)((acc_t)px[k * inner] - lse); \
        } else {                                                                              \
            acc_t r = 1 / s;                                                                  \
            for (long k = li; k < n; k += ln)                                                 \
                py[k * inner] = (T)(exp((acc_t)px[k * inner] - m) * r);                       \
        }                                                                                     \
    }
LUNAR_FLOAT_TYPES(DEF_SOFTMAX)

/* gx, g, y: [outer, n, inner]; one work-item per lane (softmax_bwd) or one work-group per
 * lane (softmax_bwd_wg). softmax: gx = y (g - sum(g y)); log-softmax: gx = g - exp(y) sum(g) */
#define DEF_SOFTMAX_BWD(N, T)                                                                 \
    __kernel void softmax_bwd_##N(__global T *gx, long gxo, __global const T *g, long go,    \
                                  __global const T *y, long yo, long lanes, long n,           \
                                  long inner, int log_) {                                     \
        long l = get_global_id(0);                                                            \
        if (l >= lanes) return;                                                               \
        long base = (l / inner) * n * inner + l % inner;                                      \
        __global const T *pg = g + go + base, *py = y + yo + base;                            \
        __global T *po = gx + gxo + base;                                                     \
        acc_t s = 0;                                                                          \
        for (long k = 0; k < n; k++)                                                          \
            s += log_ ? (acc_t)pg[k * inner] : (acc_t)pg[k * inner] * py[k * inner];          \
        for (long k = 0; k < n; k++) {                                                        \
            acc_t gv = pg[k * inner], yv = py[k * inner];                                     \
            po[k * inner] = (T)(log_ ? gv - exp(yv) * s : yv * (gv - s));                     \
        }                                                                                     \
    }                                                                                         \
    __kernel void softmax_bwd_wg_##N(__global T *gx, long gxo, __global const T *g, long go, \
                                     __global const T *y, long yo, long n, long inner,        \
                                     int log_) {                                              \
        __local acc_t buf[NN_WG];                                                             \
        long l = get_group_id(0), li = get_local_id(0), ln = get_local_size(0);               \
        long base = (l / inner) * n * inner + l % inner;                                      \
        __global const T *pg = g + go + base, *py = y + yo + base;                            \
        __global T *po = gx + gxo + base;                                                     \
        acc_t s = 0;                                                                          \
        for (long k = li; k < n; k += ln)                                                     \
            s += log_ ? (acc_t)pg[k * inner] : (acc_t)pg[k * inner] * py[k * inner];          \
        s = nn_wg_sum(buf, s);                                                                \
        for (long k = li; k < n; k += ln) {                                                   \
            acc_t gv = pg[k * inner], yv = py[k * inner];                                     \
            po[k * inner] = (T)(log_ ? gv - exp(yv) * s : yv * (gv - s));                     \
        }                                                                                     \
    }
LUNAR_FLOAT_TYPES(DEF_SOFTMAX_BWD)

/* z: [N, C, inner] logits; t: [N, inner] long, 0-based; w: [C] (read only when has_w);
 * loss, lse: [N, inner]; one work-item per (n, inner) lane (xent) or one work-group per
 * lane (xent_wg).
 * loss = (1 - ls) w[t] (lse - z[t]) + ls / C sum_c w[c] (lse - z[c]), 0 where t == ignore. */
#define NN_W(k) (has_w ? (acc_t)w[wo + (k)] : 1)
#define DEF_XENT(N, T)                                                                        \
    __kernel void xent_##N(__global T *loss, long lo, __global T *lse_out, long so,          \
                           __global const T *z, long zo, __global const long *t, long to,     \
                           __global const T *w, long wo, int has_w, long lanes, long c,       \
                           long inner, long ignore, acc_t ls) {                               \
        long l = get_global_id(0);                                                            \
        if (l >= lanes) return;                                                               \
        __global const T *pz = z + zo + (l / inner) * c * inner + l % inner;                  \
        acc_t m = -INFINITY, s = 0;                                                           \
        for (long k = 0; k < c; k++) nn_lse_step(&m, &s, pz[k * inner]);                      \
        acc_t lse = s > 0 ? m + log(s) : -INFINITY; /* no classes: log of an empty sum */    \
        lse_out[so + l] = (T)lse;                                                             \
        long tc = t[to + l];                                                                  \
        if (tc == ignore) {                                                                   \
            loss[lo + l] = 0;                                                                 \
            return;                                                                           \
        }                                                                                     \
        acc_t r = (1 - ls) * NN_W(tc) * (lse - (acc_t)pz[tc * inner]);                        \
        if (ls != 0) {                                                                        \
            acc_t sm = 0;                                                                     \
            for (long k = 0; k < c; k++) sm += NN_W(k) * (lse - (acc_t)pz[k * inner]);        \
            r += ls / (acc_t)c * sm;                                                          \
        }                                                                                     \
        loss[lo + l] = (T)r;                                                                  \
    }                                                                                         \
    __kernel void xent_wg_##N(__global T *loss, long lo, __global T *lse_out, long so,       \
                              __global const T *z, long zo, __global const long *t, long to,  \
                              __global const T *w, long wo, int has_w, long c, long inner,    \
                              long ignore, acc_t ls) {                                        \
        __local acc_t bm[NN_WG], bs[NN_WG];                                                   \
        long l = get_group_id(0), li = get_local_id(0), ln = get_local_size(0);               \
        __global const T *pz = z + zo + (l / inner) * c * inner + l % inner;                  \
        acc_t m = -INFINITY, s = 0;                                                           \
        for (long k = li; k < c; k += ln) nn_lse_step(&m, &s, pz[k * inner]);                 \
        nn_wg_lse(bm, bs, &m, &s);                                                            \
        acc_t lse = s > 0 ? m + log(s) : -INFINITY;                                           \
        long tc = t[to + l];                                                                  \
        acc_t sm = 0; /* the smoothing term, reduced by every group so that no barrier is     \
                         conditional */                                                       \
        if (ls != 0 && tc != ignore)                                                          \
            for (long k = li; k < c; k += ln) sm += NN_W(k) * (lse - (acc_t)pz[k * inner]);   \
        sm = nn_wg_sum(bm, sm);                                                               \
        if (li != 0) return;                                                                  \
        lse_out[so + l] = (T)lse;                                                             \
        if (tc == ignore) {                                                                   \
            loss[lo + l] = 0;                                                                 \
            return;                                                                           \
        }                                                                                     \
        acc_t r = (1 - ls) * NN_W(tc) * (lse - (acc_t)pz[tc * inner]);                        \
        if (ls != 0) r += ls / (acc_t)c * sm;                                                 \
        loss[lo + l] = (T)r;                                                                  \
    }
LUNAR_FLOAT_TYPES(DEF_XENT)

/* gz, z: [N, C, inner]; g, lse, t: [N, inner]; w: [C] (when has_w); one work-item per lane
 * (xent_bwd) or one work-group per lane (xent_bwd_wg).
 * gz[c] = g (p_c ((1 - ls) w[t] + ls W / C) - (1 - ls) w[t] [c == t] - ls w[c] / C), W the
 * summed weights (each lane sums them itself: C more reads beside its C logits). */
#define DEF_XENT_BWD(N, T)                                                                    \
    __kernel void xent_bwd_##N(__global T *gz, long gzo, __global const T *g, long go,       \
                               __global const T *z, long zo, __global const T *lse, long so,  \
                               __global const long *t, long to, __global const T *w, long wo, \
                               int has_w, long lanes, long c, long inner, long ignore,        \
                               acc_t ls) {                                                    \
        long l = get_global_id(0);                                                            \
        if (l >= lanes) return;                                                               \
        long base = (l / inner) * c * inner + l % inner;                                      \
        __global const T *pz = z + zo + base;                                                 \
        __global T *po = gz + gzo + base;                                                     \
        long tc = t[to + l];                                                                  \
        if (tc == ignore) {                                                                   \
            for (long k = 0; k < c; k++) po[k * inner] = 0;                                   \
            return;                                                                           \
        }                                                                                     \
        acc_t wsum = 0;                                                                       \
        for (long k = 0; k < c; k++) wsum += NN_W(k);                                         \
        acc_t gl = g[go + l], lv = lse[so + l];                                               \
        acc_t wt = (1 - ls) * NN_W(tc), a = wt + ls * wsum / (acc_t)c;                        \
        for (long k = 0; k < c; k++) {                                                        \
            acc_t v = exp((acc_t)pz[k * inner] - lv) * a - ls * NN_W(k) / (acc_t)c;           \
            if (k == tc) v -= wt;                                                             \
            po[k * inner] = (T)(gl * v);                                                      \
        }                                                                                     \
    }                                                                                         \
    __kernel void xent_bwd_wg_##N(__global T *gz, long gzo, __global const T *g, long go,    \
                                  __global const T *z, long zo, __global const T *lse,        \
                                  long so, __global const long *t, long to,                   \
                                  __global const T *w, long wo, int has_w, long c,            \
                                  long inner, long ignore, acc_t ls) {                        \
        __local acc_t buf[NN_WG];                                                             \
        long l = get_group_id(0), li = get_local_id(0), ln = get_local_size(0);               \
        long base = (l / inner) * c * inner + l % inner;                                      \
        __global const T *pz = z + zo + base;                                                 \
        __global T *po = gz + gzo + base;                                                     \
        acc_t wsum = 0;                                                                       \
        for (long k = li; k < c; k += ln) wsum += NN_W(k);                                    \
        wsum = nn_wg_sum(buf, wsum);                                                          \
        long tc = t[to + l];                                                                  \
        if (tc == ignore) {                                                                   \
            for (long k = li; k < c; k += ln) po[k * inner] = 0;                              \
            return;                                                                           \
        }                                                                                     \
        acc_t gl = g[go + l], lv = lse[so + l];                                               \
        acc_t wt = (1 - ls) * NN_W(tc), a = wt + ls * wsum / (acc_t)c;                        \
        for (long k = li; k < c; k += ln) {                                                   \
            acc_t v = exp((acc_t)pz[k * inner] - lv) * a - ls * NN_W(k) / (acc_t)c;           \
            if (k == tc) v -= wt;                                                             \
            po[k * inner] = (T)(gl * v);                                                      \
        }                                                                                     \
    }
LUNAR_FLOAT_TYPES(DEF_XENT_BWD)

/* ---- per-channel statistics: one work-group per channel ----
 * x seen as [A, C, B]; channel ch's elements are j in [0, A * B) at (j / B * C + ch) * B +
 * j % B. Each work-item sums a strided share, then a tree in local memory adds the shares;
 * the local size is a power of two <= NN_WG (the host picks it). */

/* x: [A, C, B] -> mean, var (biased): [C]; two passes (the mean, then squared deviations
 * around it) for accuracy, as the CPU */
#define DEF_MOMENTS(N, T)                                                                     \
    __kernel void moments_##N(__global T *mean, long mo, __global T *var, long vo,           \
                              __global const T *x, long xo, long na, long nc, long nb) {      \
        __local acc_t buf[NN_WG];                                                             \
        long ch = get_group_id(0);                                                            \
        long cnt = na * nb, li = get_local_id(0), ln = get_local_size(0);                     \
        __global const T *px = x + xo + ch * nb;                                              \
        acc_t s = 0;                                                                          \
        for (long j = li; j < cnt; j += ln) s += px[j / nb * nc * nb + j % nb];               \
        acc_t mu = nn_wg_sum(buf, s) / (acc_t)cnt;                                            \
        acc_t q = 0;                                                                          \
        for (long j = li; j < cnt; j += ln) {                                                 \
            acc_t d = (acc_t)px[j / nb * nc * nb + j % nb] - mu;                              \
            q += d * d;                                                                       \
        }                                                                                     \
        q = nn_wg_sum(buf, q);                                                                \
        if (li == 0) {                                                                        \
            mean[mo + ch] = (T)mu;                                                            \
            var[vo + ch] = (T)(q / (acc_t)cnt);                                               \
        }                                                                                     \
    }
LUNAR_FLOAT_TYPES(DEF_MOMENTS)

/* y, x: [A, C, B]; mean, rstd: [C]; y = (x - mean) rstd, one work-item per element */
#define DEF_NORMALIZE(N, T)                                                                   \
    __kernel void normalize_##N(__global T *y, long yo, __global const T *x, long xo,        \
                                __global const T *mean, long mo, __global const T *rstd,      \
                                long ro, long n, long nc, long nb) {                          \
        long i = get_global_id(0);                                                            \
        if (i >= n) return;                                                                   \
        long ch = i / nb % nc;                                                                \
        y[yo + i] = (T)(((acc_t)x[xo + i] - (acc_t)mean[mo + ch]) * (acc_t)rstd[ro + ch]);    \
    }
LUNAR_FLOAT_TYPES(DEF_NORMALIZE)

/* gx, g, xh: [A, C, B]; rstd: [C]; one work-group per channel.
 * gx = rstd (g - mean(g) - xh mean(g xh)), the means over A and B */
#define DEF_NORMALIZE_BWD(N, T)                                                               \
    __kernel void normalize_bwd_##N(__global T *gx, long gxo, __global const T *g, long go,  \
                                    __global const T *xh, long xo, __global const T *rstd,    \
                                    long ro, long na, long nc, long nb) {                     \
        __local acc_t buf[NN_WG];                                                             \
        long ch = get_group_id(0);                                                            \
        long cnt = na * nb, li = get_local_id(0), ln = get_local_size(0);                     \
        long base = ch * nb;                                                                  \
        acc_t sg = 0, sgx = 0;                                                                \
        for (long j = li; j < cnt; j += ln) {                                                 \
            long e = base + j / nb * nc * nb + j % nb;                                        \
            acc_t gv = g[go + e];                                                             \
            sg += gv;                                                                         \
            sgx += gv * (acc_t)xh[xo + e];                                                    \
        }                                                                                     \
        acc_t mg = nn_wg_sum(buf, sg) / (acc_t)cnt;                                           \
        acc_t mgx = nn_wg_sum(buf, sgx) / (acc_t)cnt, rs = rstd[ro + ch];                     \
        for (long j = li; j < cnt; j += ln) {                                                 \
            long e = base + j / nb * nc * nb + j % nb;                                        \
            gx[gxo + e] = (T)(rs * ((acc_t)g[go + e] - mg - (acc_t)xh[xo + e] * mgx));        \
        }                                                                                     \
    }
LUNAR_FLOAT_TYPES(DEF_NORMALIZE_BWD)
