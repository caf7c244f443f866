/*
 * reduce.c - CPU reductions over a set of dims, arg-max/min along one dim, and scans
 * (cumsum, cumprod).
 *
 * x is seen as [kept dims..., reduced dims...] by relabelling strides, never copied. Each
 * output element walks its reduced sub-space with the strided iterator, so a reduction over
 * contiguous trailing dims is one tight loop. Accumulation is in double (int64 for integer
 * sums and products). A single output (a full reduction) is split across threads instead.
 */
#include "cpu.h"

#include <math.h>
#include <string.h>

typedef struct acc {
    lunar_reduce_op op;
    int pass;      /* two-pass ops: 0 finds max (logsumexp) or mean (var), 1 accumulates */
    double param;  /* p of a norm */
    double ref;    /* the max or the mean from pass 0 */
    double s;      /* the running value */
    int64_t is;    /* integer running value */
    bool integer;  /* integer sum/prod */
    bool seen_nan; /* max/min propagate NaN */
} acc;

static void acc_reset(acc *a) {
    switch (a->op) {
    case LUNAR_OP_PROD: a->s = 1; a->is = 1; break;
    case LUNAR_OP_MAX: a->s = a->pass == 0 ? -INFINITY : 0; break;
    case LUNAR_OP_MIN: a->s = INFINITY; break;
    case LUNAR_OP_ALL: a->s = 1; break;
    case LUNAR_OP_LOGSUMEXP: a->s = a->pass == 0 ? -INFINITY : 0; break;
    default: a->s = 0; a->is = 0; break;
    }
    a->seen_nan = false;
}

/* One element v into the accumulator. */
static inline void acc_add(acc *a, double v) {
    switch (a->op) {
    case LUNAR_OP_SUM:
    case LUNAR_OP_MEAN: a->s += v; break;
    case LUNAR_OP_PROD: a->s *= v; break;
    case LUNAR_OP_MAX:
        if (v != v) a->seen_nan = true;
        else if (v > a->s) a->s = v;
        break;
    case LUNAR_OP_MIN:
        if (v != v) a->seen_nan = true;
        else if (v < a->s) a->s = v;
        break;
    case LUNAR_OP_ALL: a->s = a->s != 0 && v != 0; break;
    case LUNAR_OP_ANY: a->s = a->s != 0 || v != 0; break;
    case LUNAR_OP_LOGSUMEXP:
        if (a->pass == 0) {
            if (v != v) a->seen_nan = true;
            else if (v > a->s) a->s = v;
        } else {
            a->s += exp(v - a->ref);
        }
        break;
    case LUNAR_OP_NORM: {
        double m = fabs(v), p = a->param;
        if (isinf(p)) {
            if (m != m) a->seen_nan = true;
            else if (m > a->s) a->s = m;
        } else if (p == 0) a->s += v != 0;
        else if (p == 1) a->s += m;
        else if (p == 2) a->s += m * m;
        else a->s += pow(m, p);
        break;
    }
    case LUNAR_OP_VAR:
        if (a->pass == 0) a->s += v;
        else a->s += (v - a->ref) * (v - a->ref);
        break;
    default: break;
    }
}

/* A unit-stride sum with 32 independent accumulators: one chain of dependent adds runs at
 * one add per FP latency; 32 doubles are eight AVX2 chains, enough to hide the add latency
 * behind the float-to-double conversions (eight accumulators, two chains, left a float sum
 * at ~25 GB/s on one core; 32 give ~38). */
#define SUM_UNIT(T)                                                                           \
    CPU_CLONES static double sum_unit_##T(const T *x, int64_t n) {                            \
        double acc[32] = {0};                                                                 \
        int64_t i = 0;                                                                        \
        for (; i + 32 <= n; i += 32)                                                          \
            for (int k = 0; k < 32; k++) acc[k] += (double)x[i + k];                          \
        for (; i < n; i++) acc[0] += (double)x[i];                                            \
        for (int k = 0; k < 16; k++) acc[k] += acc[k + 16];                                   \
        for (int k = 0; k < 8; k++) acc[k] += acc[k + 8];                                     \
        return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])); \
    }
SUM_UNIT(uint8_t)
SUM_UNIT(int32_t)
SUM_UNIT(int64_t)
SUM_UNIT(float)
SUM_UNIT(double)

/* Typed row loops: the switch on dtype happens once per run, not once per element. */
#define ROW(T)                                                                                \
    do {                                                                                      \
        const T *x = (const T *)p[0];                                                         \
        int64_t sx = s[0] / (int64_t)sizeof(T);                                               \
        if (a->integer) {                                                                     \
            if (a->op == LUNAR_OP_PROD)                                                       \
                for (int64_t i = 0; i < n; i++) a->is *= (int64_t)x[i * sx];                  \
            else                                                                              \
                for (int64_t i = 0; i < n; i++) a->is += (int64_t)x[i * sx];                  \
        } else if (a->op == LUNAR_OP_SUM || a->op == LUNAR_OP_MEAN) {                         \
            double t = 0;                                                                     \
            if (sx == 1)                                                                      \
                t = sum_unit_##T(x, n);                                                       \
            else                                                                              \
                for (int64_t i = 0; i < n; i++) t += (double)x[i * sx];                       \
            a->s += t;                                                                        \
        } else {                                                                              \
            for (int64_t i = 0; i < n; i++) acc_add(a, (double)x[i * sx]);                    \
        }                                                                                     \
    } while (0)

typedef struct row_ctx {
    lunar_dtype dt;
    acc *a;
} row_ctx;

static void reduce_row(char **p, const int64_t *s, int64_t n, void *ctx) {
    const row_ctx *c = ctx;
    acc *a = c->a;
    switch (c->dt) {
    case LUNAR_BOOL:
    case LUNAR_U8: ROW(uint8_t); break;
    case LUNAR_I32: ROW(int32_t); break;
    case LUNAR_I64: ROW(int64_t); break;
    case LUNAR_F32: ROW(float); break;
    case LUNAR_F64: ROW(double); break;
    default: break;
    }
}

static void acc_combine(acc *into, const acc *part) {
    into->seen_nan |= part->seen_nan;
    switch (into->op) {
    case LUNAR_OP_PROD: into->s *= part->s; into->is *= part->is; break;
    case LUNAR_OP_MAX: into->s = part->s > into->s ? part->s : into->s; break;
    case LUNAR_OP_MIN: into->s = part->s < into->s ? part->s : into->s; break;
    case LUNAR_OP_ALL: into->s = into->s != 0 && part->s != 0; break;
    case LUNAR_OP_ANY: into->s = into->s != 0 || part->s != 0; break;
    case LUNAR_OP_LOGSUMEXP:
        if (into->pass == 0) into->s = part->s > into->s ? part->s : into->s;
        else into->s += part->s;
        break;
    case LUNAR_OP_NORM:
        if (isinf(into->param)) into->s = part->s > into->s ? part->s : into->s;
        else into->s += part->s;
        break;
    default: into->s += part->s; into->is += part->is; break;
    }
}

/* Runs one pass of a over the sub-space `it`, split across threads when `parallel`. */
static void run_pass(acc *a, lunar_dtype dt, const cpu_iter *it, bool parallel) {
    acc_reset(a);
    if (it->numel == 0) return; /* an empty dim: the iterator must not divide by its size */
    int nth = cpu_threads();
    if (!parallel || nth <= 1 || it->numel < LUNAR_GRAIN) {
        row_ctx c = {dt, a};
        cpu_iter_range(it, 0, it->numel, reduce_row, &c);
        return;
    }
    int64_t chunks = it->numel / LUNAR_GRAIN;
    if (chunks > nth) chunks = nth;
    acc parts[64];
    if (chunks > 64) chunks = 64;
#pragma omp parallel for num_threads(chunks) schedule(static)
    for (int64_t k = 0; k < chunks; k++) {
        parts[k] = *a;
        row_ctx c = {dt, &parts[k]};
        cpu_iter_range(it, it->numel * k / chunks, it->numel * (k + 1) / chunks, reduce_row, &c);
    }
    for (int64_t k = 0; k < chunks; k++) acc_combine(a, &parts[k]);
}

/* The full result for one output element. */
static double reduce_one(acc *a, lunar_dtype dt, const cpu_iter *it, bool parallel,
                         int64_t count) {
    bool two_pass = a->op == LUNAR_OP_LOGSUMEXP || a->op == LUNAR_OP_VAR;
    a->pass = 0;
    run_pass(a, dt, it, parallel);
    if (two_pass) {
        if (a->op == LUNAR_OP_LOGSUMEXP) {
            if (a->seen_nan) return NAN;
            if (isinf(a->s)) return a->s; /* all -inf, or a +inf */
            a->ref = a->s;
        } else {
            a->ref = count ? a->s / (double)count : NAN;
        }
        a->pass = 1;
        run_pass(a, dt, it, parallel);
    }
    switch (a->op) {
    case LUNAR_OP_MEAN: return count ? a->s / (double)count : NAN;
    case LUNAR_OP_MAX:
    case LUNAR_OP_MIN: return a->seen_nan ? NAN : a->s;
    case LUNAR_OP_LOGSUMEXP: return a->ref + log(a->s);
    case LUNAR_OP_NORM: {
        double p = a->param;
        if (isinf(p)) return a->seen_nan ? NAN : a->s;
        if (p == 0 || p == 1) return a->s;
        if (p == 2) return sqrt(a->s);
        return pow(a->s, 1.0 / p);
    }
    case LUNAR_OP_VAR: {
        /* like PyTorch: max(0, N - correction), then IEEE division (0/0 = nan) */
        double dof = (double)count - a->param;
        return a->s / (dof > 0 ? dof : 0.0);
    }
    default: return a->s;
    }
}

lunar_status cpu_reduce(lunar_reduce_op op, lunar_tensor *out, const lunar_tensor *x,
                        uint32_t dims, double param) {
    /* split x's dims into kept and reduced */
    lunar_tensor kept = *x, red = *x;
    kept.ndim = red.ndim = 0;
    for (int d = 0; d < x->ndim; d++) {
        lunar_tensor *t = (dims >> d) & 1 ? &red : &kept;
        t->shape[t->ndim] = x->shape[d];
        t->strides[t->ndim] = x->strides[d];
        t->ndim++;
    }
    int64_t n_out = lunar_tensor_numel(&kept), count = lunar_tensor_numel(&red);
    bool integer = !lunar_dtype_is_float(x->dtype) &&
                   (op == LUNAR_OP_SUM || op == LUNAR_OP_PROD);
    /* out's element order follows kept's (out has x's dims with 1 where reduced) */
    lunar_tensor outk = *out;
    outk.ndim = 0;
    for (int d = 0; d < out->ndim; d++)
        if (!((dims >> d) & 1)) {
            outk.shape[outk.ndim] = out->shape[d];
            outk.strides[outk.ndim] = out->strides[d];
            outk.ndim++;
        }
    const lunar_tensor *pair[1] = {&red};
    cpu_iter sub;
    cpu_iter_init(&sub, 1, pair);
    char *xbase = cpu_ptr(x), *obase = cpu_ptr(out);
    size_t xes = lunar_dtype_size(x->dtype), oes = lunar_dtype_size(out->dtype);
    bool parallel_inside = n_out < cpu_threads();
    int64_t work = n_out * (count > 0 ? count : 1);
    CPU_FOR(!parallel_inside && work >= LUNAR_GRAIN && cpu_threads() > 1, cpu_threads(),
            (int64_t o = 0; o < n_out; o++), {
        /* locate output o in kept's and out's coordinates */
        int64_t rem = o, xoff = 0, ooff = 0;
        for (int d = kept.ndim - 1; d >= 0; d--) {
            int64_t i = rem % kept.shape[d];
            rem /= kept.shape[d];
            xoff += i * kept.strides[d];
            ooff += i * outk.strides[d];
        }
        cpu_iter it = sub;
        it.base[0] = xbase + xoff * (int64_t)xes;
        acc a = {.op = op, .param = param, .integer = integer};
        double v = reduce_one(&a, x->dtype, &it, parallel_inside, count);
        char *dst = obase + ooff * (int64_t)oes;
        if (integer && out->dtype == LUNAR_I64) *(int64_t *)dst = a.is;
        else if (integer) cpu_store(out->dtype, dst, (double)a.is);
        else cpu_store(out->dtype, dst, v);
    });
    return LUNAR_OK;
}

/* ---- arg-max/min and scans: one lane per position of the other dims ----
 * Both walk x along `dim` from lanes that the iterator enumerates: operands are viewed with
 * size 1 at dim, so the iterator skips that dim and hands each row function the start of a
 * run of lanes; ctx carries the length and the byte strides along dim. */

typedef struct lane_ctx {
    lunar_dtype dt;
    int64_t len;        /* x->shape[dim] */
    int64_t sx, so;     /* strides along dim in bytes: x, and out (scans) */
    bool flag;          /* is_min (arg_reduce) or is_prod (scan) */
} lane_ctx;

/* A view of t with size 1 at dim (same strides and offset). */
static lunar_tensor lane_view(const lunar_tensor *t, int dim) {
    lunar_tensor v = *t;
    v.shape[dim] = 1;
    return v;
}

/* The first extreme wins ties (strict comparison); the first NaN wins over everything,
 * as in PyTorch. Integers compare in their own type, so int64 beyond 2^53 stays exact. */
#define ARG_LANE(T, ISNAN)                                                                    \
    do {                                                                                      \
        const char *px = p[2];                                                                \
        T best = *(const T *)px;                                                              \
        int64_t bi = 0;                                                                       \
        if (!(ISNAN(best)))                                                                   \
            for (int64_t i = 1; i < c->len; i++) {                                            \
                T v = *(const T *)(px + i * c->sx);                                           \
                if (ISNAN(v)) {                                                               \
                    best = v;                                                                 \
                    bi = i;                                                                   \
                    break;                                                                    \
                }                                                                             \
                if (c->flag ? v < best : v > best) {                                          \
                    best = v;                                                                 \
                    bi = i;                                                                   \
                }                                                                             \
            }                                                                                 \
        *(T *)p[0] = best;                                                                    \
        *(int64_t *)p[1] = bi;                                                                \
    } while (0)
#define NO_NAN(v) 0
#define IS_NAN(v) ((v) != (v))

/* values, indices: [..., 1, ...] (1 at dim); x: [..., len, ...]; lanes given as runs */
static void arg_rows(char **ptrs, const int64_t *strides, int64_t n, void *ctx) {
    const lane_ctx *c = ctx;
    for (int64_t r = 0; r < n; r++) {
        char *p[3] = {ptrs[0] + r * strides[0], ptrs[1] + r * strides[1],
                      ptrs[2] + r * strides[2]};
        switch (c->dt) {
        case LUNAR_BOOL:
        case LUNAR_U8: ARG_LANE(uint8_t, NO_NAN); break;
        case LUNAR_I32: ARG_LANE(int32_t, NO_NAN); break;
        case LUNAR_I64: ARG_LANE(int64_t, NO_NAN); break;
        case LUNAR_F32: ARG_LANE(float, IS_NAN); break;
        case LUNAR_F64: ARG_LANE(double, IS_NAN); break;
        default: break;
        }
    }
}

/* x: [..., len, ...] (len >= 1) -> values (x's dtype), indices (int64, 0-based): [..., 1, ...] */
lunar_status cpu_arg_reduce(lunar_tensor *values, lunar_tensor *indices, const lunar_tensor *x,
                            int dim, bool is_min) {
    int64_t len = x->shape[dim];
    if (len == 0) /* the op layer refuses this; guard the kernel all the same */
        return lunar_fail(LUNAR_ERR_SHAPE, "cpu: arg_reduce over an empty dim");
    lunar_tensor xv = lane_view(x, dim);
    const lunar_tensor *ops[3] = {values, indices, &xv};
    lane_ctx c = {x->dtype, len, x->strides[dim] * (int64_t)lunar_dtype_size(x->dtype), 0,
                  is_min};
    cpu_iter it;
    cpu_iter_init(&it, 3, ops);
    cpu_iter_run(&it, arg_rows, &c, LUNAR_GRAIN / len + 1);
    return LUNAR_OK;
}

/* Floats accumulate in double (as PyTorch's CPU scans do), integers in int64. */
#define SCAN_LANE(T, ACC)                                                                     \
    do {                                                                                      \
        const char *px = p[1];                                                                \
        char *po = p[0];                                                                      \
        ACC s = c->flag ? 1 : 0;                                                              \
        for (int64_t i = 0; i < c->len; i++) {                                                \
            ACC v = (ACC) * (const T *)(px + i * c->sx);                                      \
            s = c->flag ? s * v : s + v;                                                      \
            *(T *)(po + i * c->so) = (T)s;                                                    \
        }                                                                                     \
    } while (0)

/* out, x: [..., len, ...], same dtype; lanes given as runs */
static void scan_rows(char **ptrs, const int64_t *strides, int64_t n, void *ctx) {
    const lane_ctx *c = ctx;
    for (int64_t r = 0; r < n; r++) {
        char *p[2] = {ptrs[0] + r * strides[0], ptrs[1] + r * strides[1]};
        switch (c->dt) {
        case LUNAR_BOOL:
        case LUNAR_U8: SCAN_LANE(uint8_t, int64_t); break;
        case LUNAR_I32: SCAN_LANE(int32_t, int64_t); break;
        case LUNAR_I64: SCAN_LANE(int64_t, int64_t); break;
        case LUNAR_F32: SCAN_LANE(float, double); break;
        case LUNAR_F64: SCAN_LANE(double, double); break;
        default: break;
        }
    }
}

/* out = cumsum or cumprod of x along dim; out, x: same shape and dtype, any strides */
lunar_status cpu_scan(lunar_tensor *out, const lunar_tensor *x, int dim, bool is_prod) {
    int64_t len = x->shape[dim];
    if (len == 0 || lunar_tensor_numel(x) == 0) return LUNAR_OK;
    lunar_tensor ov = lane_view(out, dim), xv = lane_view(x, dim);
    const lunar_tensor *ops[2] = {&ov, &xv};
    size_t es = lunar_dtype_size(x->dtype);
    lane_ctx c = {x->dtype, len, x->strides[dim] * (int64_t)es,
                  out->strides[dim] * (int64_t)lunar_dtype_size(out->dtype), is_prod};
    cpu_iter it;
    cpu_iter_init(&it, 2, ops);
    cpu_iter_run(&it, scan_rows, &c, LUNAR_GRAIN / len + 1);
    return LUNAR_OK;
}
