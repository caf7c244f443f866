/*
 * reduce.cl - reductions over a set of dims: one work-item per output element walks the
 * reduced elements (kept dims: shape/strides ks, xk, ok; reduced dims: rs, xr). Sums and
 * products of integers stay exact in long; everything else accumulates in acc_t.
 * Op codes follow lunar_reduce_op in core/lunar.h.
 */
#define R_SUM 0
#define R_MEAN 1
#define R_PROD 2
#define R_MAX 3
#define R_MIN 4
#define R_ALL 5
#define R_ANY 6
#define R_LOGSUMEXP 7
#define R_NORM 8
#define R_VAR 9

/* One element into a running reduction: s (acc_t), is (exact integer sum/product), nan
 * (a NaN seen by max/min/logsumexp/inf-norm); e is the element as long, for exact sums. A
 * macro over the caller's variables: an inline function taking their addresses kept PoCL
 * from vectorising the loop (a float sum ran at half the speed). */
#define REDUCE_STEP(op, param, v, e, s, is, nan)                                              \
    switch (op) {                                                                             \
    case R_SUM:                                                                               \
    case R_MEAN:                                                                              \
    case R_VAR: s += v; is += e; break;                                                       \
    case R_PROD: s *= v; is *= e; break;                                                      \
    case R_MAX:                                                                               \
    case R_LOGSUMEXP:                                                                         \
        if (v != v) nan = 1;                                                                  \
        else if (v > s) s = v;                                                                \
        break;                                                                                \
    case R_MIN:                                                                               \
        if (v != v) nan = 1;                                                                  \
        else if (v < s) s = v;                                                                \
        break;                                                                                \
    case R_ALL: s = s != 0 && v != 0; break;                                                  \
    case R_ANY: s = s != 0 || v != 0; break;                                                  \
    case R_NORM: {                                                                            \
        acc_t m_ = fabs(v);                                                                   \
        if (isinf(param)) {                                                                   \
            if (m_ != m_) nan = 1;                                                            \
            else if (m_ > s) s = m_;                                                          \
        } else if (param == 0) s += v != 0;                                                   \
        else if (param == 1) s += m_;                                                         \
        else if (param == 2) s += m_ * m_;                                                    \
        else s += pow(m_, param);                                                             \
        break;                                                                                \
    }                                                                                         \
    default: break;                                                                           \
    }

/* x [kept..., reduced...] (as strides) -> o [kept...] of dtype odt */
#define DEF_REDUCE(N, T)                                                                      \
    __kernel void reduce_##N(__global uchar *o, int odt, long oo, long8 ok,                   \
                             __global const T *x, long xo, long8 xk, long8 xr, long n_out,    \
                             int nk, long8 ks, long count, int nr, long8 rs, int op,          \
                             acc_t param, int exact) {                                        \
        long g = get_global_id(0);                                                            \
        if (g >= n_out) return;                                                               \
        long8 kc = lunar_coords(g, nk, ks);                                                   \
        long base = xo + lunar_dot(kc, xk);                                                   \
        acc_t s = 0, ref = 0;                                                                 \
        long is = op == R_PROD ? 1 : 0;                                                       \
        int nan = 0;                                                                          \
        if (op == R_PROD || op == R_ALL) s = 1;                                               \
        if (op == R_MAX || op == R_LOGSUMEXP) s = -INFINITY;                                  \
        if (op == R_MIN) s = INFINITY;                                                        \
        if (op == R_NORM && isinf(param)) s = 0;                                              \
        for (long j = 0; j < count; j++) {                                                    \
            T e = x[base + lunar_dot(lunar_coords(j, nr, rs), xr)];                           \
            acc_t v = (acc_t)e;                                                               \
            REDUCE_STEP(op, param, v, (long)e, s, is, nan);                                   \
        }                                                                                     \
        /* the second pass of the two-pass ops, around the max or the mean */                \
        if (op == R_LOGSUMEXP && !nan && !isinf(s)) {                                         \
            ref = s;                                                                          \
            s = 0;                                                                            \
            for (long j = 0; j < count; j++)                                                  \
                s += exp((acc_t)x[base + lunar_dot(lunar_coords(j, nr, rs), xr)] - ref);      \
            s = ref + log(s);                                                                 \
        } else if (op == R_VAR) {                                                             \
            ref = count ? s / (acc_t)count : NAN;                                             \
            s = 0;                                                                            \
            for (long j = 0; j < count; j++) {                                                \
                acc_t d = (acc_t)x[base + lunar_dot(lunar_coords(j, nr, rs), xr)] - ref;      \
                s += d * d;                                                                   \
            }                                                                                 \
            acc_t dof = (acc_t)count - param;                                                 \
            s = s / (dof > 0 ? dof : (acc_t)0);                                               \
        }                                                                                     \
        if (op == R_MEAN) s = count ? s / (acc_t)count : NAN;                                 \
        if (nan && (op == R_MAX || op == R_MIN || op == R_LOGSUMEXP)) s = NAN;                \
        if (op == R_NORM && !isinf(param) && param != 0 && param != 1)                        \
            s = param == 2 ? sqrt(s) : pow(s, (acc_t)1 / param);                              \
        if (op == R_NORM && isinf(param) && nan) s = NAN;                                     \
        lunar_store(o, odt, oo + lunar_dot(kc, ok), s, is, exact);                            \
    }
LUNAR_ALL_TYPES(DEF_REDUCE)

/* ---- two stages, for few outputs over many elements ----
 * One work-item per output walks every reduced element above, which leaves a device idle
 * when there are few outputs (a full sum is one work-item). Here stage one splits each
 * output's reduced elements into `parts` fixed chunks (work-item g = output * parts + part)
 * and writes a partial; stage two combines each output's partials in order and finishes
 * (mean's division, the norm's root). Only the ops whose partials combine are sent here
 * (sum, mean, prod, max, min, all, any, norm); the chunking is fixed, so results are
 * deterministic. Integer sums and products keep exact partials in `ip`. */
#define DEF_REDUCE_PARTIAL(N, T)                                                              \
    __kernel void reduce_partial_##N(__global acc_t *part, __global long *ip,                 \
                                     __global const T *x, long xo, long8 xk, long8 xr,       \
                                     long n_out, int nk, long8 ks, long count, int nr,       \
                                     long8 rs, int op, acc_t param, long parts) {            \
        long g = get_global_id(0);                                                            \
        if (g >= n_out * parts) return;                                                       \
        long o = g / parts, p = g % parts, chunk = (count + parts - 1) / parts;               \
        long j0 = p * chunk, j1 = min(count, j0 + chunk);                                     \
        long base = xo + lunar_dot(lunar_coords(o, nk, ks), xk);                              \
        acc_t s = 0;                                                                          \
        long is = op == R_PROD ? 1 : 0;                                                       \
        int nan = 0;                                                                          \
        if (op == R_PROD || op == R_ALL) s = 1;                                               \
        if (op == R_MAX) s = -INFINITY;                                                       \
        if (op == R_MIN) s = INFINITY;                                                        \
        for (long j = j0; j < j1; j++) {                                                      \
            T e = x[base + lunar_dot(lunar_coords(j, nr, rs), xr)];                           \
            acc_t v = (acc_t)e;                                                               \
            REDUCE_STEP(op, param, v, (long)e, s, is, nan);                                   \
        }                                                                                     \
        part[g] = nan ? NAN : s;                                                              \
        ip[g] = is;                                                                           \
    }
LUNAR_ALL_TYPES(DEF_REDUCE_PARTIAL)

/* partials [n_out, parts] -> o [kept...] of dtype odt */
__kernel void reduce_combine(__global uchar *o, int odt, long oo, long8 ok, int nk, long8 ks,
                             __global const acc_t *part, __global const long *ip, long n_out,
                             long parts, long count, int op, acc_t param, int exact) {
    long g = get_global_id(0);
    if (g >= n_out) return;
    __global const acc_t *pp = part + g * parts;
    __global const long *ipp = ip + g * parts;
    acc_t s = pp[0];
    long is = ipp[0];
    int nan = s != s;
    for (long p = 1; p < parts; p++) {
        acc_t v = pp[p];
        if (v != v) nan = 1;
        switch (op) {
        case R_SUM:
        case R_MEAN: s += v; is += ipp[p]; break;
        case R_PROD: s *= v; is *= ipp[p]; break;
        case R_MAX: s = v > s ? v : s; break;
        case R_MIN: s = v < s ? v : s; break;
        case R_ALL: s = s != 0 && v != 0; break;
        case R_ANY: s = s != 0 || v != 0; break;
        case R_NORM: s = isinf(param) ? (v > s ? v : s) : s + v; break;
        default: break;
        }
    }
    if (op == R_MEAN) s = count ? s / (acc_t)count : NAN;
    if (nan && (op == R_MAX || op == R_MIN || (op == R_NORM && isinf(param)))) s = NAN;
    if (op == R_NORM && !isinf(param) && param != 0 && param != 1)
        s = param == 2 ? sqrt(s) : pow(s, (acc_t)1 / param);
    lunar_store(o, odt, oo + lunar_dot(lunar_coords(g, nk, ks), ok), s, is, exact);
}
