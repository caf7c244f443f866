/*
 * elementwise.c - CPU kernels that map elements one to one: copy/cast, fill, arange, the
 * unary and binary op families, where. Every loop has a unit-stride branch the compiler
 * can vectorise and a strided branch for views and broadcasts.
 */
#include "cpu.h"

#include <string.h>
#include <tgmath.h>

/* Calls M(T, ...) with the C type of dtype dt (bool is stored as uint8_t). */
#define DT_CASES(dt, M, ...)                                                                  \
    switch (dt) {                                                                             \
    case LUNAR_BOOL: M(uint8_t, __VA_ARGS__); break;                                          \
    case LUNAR_U8: M(uint8_t, __VA_ARGS__); break;                                            \
    case LUNAR_I32: M(int32_t, __VA_ARGS__); break;                                           \
    case LUNAR_I64: M(int64_t, __VA_ARGS__); break;                                           \
    case LUNAR_F32: M(float, __VA_ARGS__); break;                                             \
    case LUNAR_F64: M(double, __VA_ARGS__); break;                                            \
    default: break;                                                                           \
    }

/* The same, for use inside DT_CASES (a macro cannot expand inside itself). */
#define DT_CASES2(dt, M, ...)                                                                  \
    switch (dt) {                                                                             \
    case LUNAR_BOOL: M(uint8_t, __VA_ARGS__); break;                                          \
    case LUNAR_U8: M(uint8_t, __VA_ARGS__); break;                                            \
    case LUNAR_I32: M(int32_t, __VA_ARGS__); break;                                           \
    case LUNAR_I64: M(int64_t, __VA_ARGS__); break;                                           \
    case LUNAR_F32: M(float, __VA_ARGS__); break;                                             \
    case LUNAR_F64: M(double, __VA_ARGS__); break;                                            \
    default: break;                                                                           \
    }

/* ---- copy and cast ---- */

typedef struct {
    lunar_dtype to, from;
} cast_ctx;

#define CAST_LOOP(TO, FROM_T)                                                                 \
    do {                                                                                      \
        TO *o = (TO *)p[0];                                                                   \
        const FROM_T *x = (const FROM_T *)p[1];                                               \
        int64_t so = s[0] / (int64_t)sizeof(TO), sx = s[1] / (int64_t)sizeof(FROM_T);        \
        if (is_bool)                                                                          \
            for (int64_t i = 0; i < n; i++) o[i * so] = (TO)(x[i * sx] != 0);                 \
        else if (so == 1 && sx == 1)                                                          \
            for (int64_t i = 0; i < n; i++) o[i] = (TO)x[i];                                  \
        else                                                                                  \
            for (int64_t i = 0; i < n; i++) o[i * so] = (TO)x[i * sx];                        \
    } while (0)
#define CAST_FROM(FROM_T, TO) CAST_LOOP(TO, FROM_T)
#define CAST_TO(TO, c) DT_CASES2((c)->from, CAST_FROM, TO)

static void cast_row(char **p, const int64_t *s, int64_t n, void *ctx) {
    const cast_ctx *c = ctx;
    bool is_bool = c->to == LUNAR_BOOL;
    DT_CASES(c->to, CAST_TO, c);
}

/* Same dtype: move bytes, by element size. */
static void move_row(char **p, const int64_t *s, int64_t n, void *ctx) {
    size_t es = *(const size_t *)ctx;
    if (s[0] == (int64_t)es && s[1] == (int64_t)es) {
        memmove(p[0], p[1], (size_t)n * es);
        return;
    }
    switch (es) {
#define MOVE(T)                                                                               \
    for (int64_t i = 0; i < n; i++) *(T *)(p[0] + i * s[0]) = *(const T *)(p[1] + i * s[1]);  \
    break
    case 1: MOVE(uint8_t);
    case 4: MOVE(uint32_t);
    default: MOVE(uint64_t);
#undef MOVE
    }
}

lunar_status cpu_copy(lunar_tensor *dst, const lunar_tensor *src) {
    const lunar_tensor *ts[2] = {dst, src};
    if (dst->dtype == src->dtype) {
        size_t es = lunar_dtype_size(dst->dtype);
        cpu_foreach(2, ts, move_row, &es);
    } else {
        cast_ctx c = {dst->dtype, src->dtype};
        cpu_foreach(2, ts, cast_row, &c);
    }
    return LUNAR_OK;
}

/* ---- fill and arange ---- */

#define FILL_LOOP(T, v)                                                                       \
    do {                                                                                      \
        T *o = (T *)p[0];                                                                     \
        T val = (T)(v);                                                                       \
        int64_t so = s[0] / (int64_t)sizeof(T);                                               \
        if (so == 1)                                                                          \
            for (int64_t i = 0; i < n; i++) o[i] = val;                                       \
        else                                                                                  \
            for (int64_t i = 0; i < n; i++) o[i * so] = val;                                  \
    } while (0)

typedef struct {
    lunar_dtype dt;
    double v;
} fill_ctx;

static void fill_row(char **p, const int64_t *s, int64_t n, void *ctx) {
    const fill_ctx *c = ctx;
    double v = c->dt == LUNAR_BOOL ? (c->v != 0) : c->v;
    DT_CASES(c->dt, FILL_LOOP, v);
}

lunar_status cpu_fill(lunar_tensor *dst, double value) {
    fill_ctx c = {dst->dtype, value};
    const lunar_tensor *ts[1] = {dst};
    cpu_foreach(1, ts, fill_row, &c);
    return LUNAR_OK;
}

#define ARANGE_LOOP(T, start, step)                                                           \
    do {                                                                                      \
        T *o = (T *)cpu_ptr(out);                                                             \
        for (int64_t i = 0; i < n; i++) o[i] = (T)((start) + (double)i * (step));             \
    } while (0)

lunar_status cpu_arange(lunar_tensor *out, double start, double step) {
    int64_t n = lunar_tensor_numel(out);
    DT_CASES(out->dtype, ARANGE_LOOP, start, step);
    return LUNAR_OK;
}

/* ---- unary ---- */

typedef struct {
    lunar_unary_op op;
    lunar_dtype dt;
    double lo, hi;
} unary_ctx;

/* EXPR computes the result from v (the input element, of type T). */
#define UNARY_LOOP(T, EXPR)                                                                   \
    do {                                                                                      \
        T *o = (T *)p[0];                                                                     \
        const T *x = (const T *)p[1];                                                         \
        int64_t so = s[0] / (int64_t)sizeof(T), sx = s[1] / (int64_t)sizeof(T);               \
        if (so == 1 && sx == 1)                                                               \
            for (int64_t i = 0; i < n; i++) {                                                 \
                T v = x[i];                                                                   \
                o[i] = (T)(EXPR);                                                             \
            }                                                                                 \
        else                                                                                  \
            for (int64_t i = 0; i < n; i++) {                                                 \
                T v = x[i * sx];                                                              \
                o[i * so] = (T)(EXPR);                                                        \
            }                                                                                 \
    } while (0)

#define UNARY_FLOAT(T)                                                                        \
    do {                                                                                      \
        T lo = (T)c->lo, hi = (T)c->hi;                                                       \
        switch (c->op) {                                                                      \
        case LUNAR_OP_NEG: UNARY_LOOP(T, -v); break;                                          \
        case LUNAR_OP_ABS: UNARY_LOOP(T, fabs(v)); break;                                     \
        case LUNAR_OP_SIGN: UNARY_LOOP(T, (v > 0) - (v < 0)); break; /* NaN: 0, as PyTorch */ \
        case LUNAR_OP_EXP: UNARY_LOOP(T, exp(v)); break;                                      \
        case LUNAR_OP_EXPM1: UNARY_LOOP(T, expm1(v)); break;                                  \
        case LUNAR_OP_LOG: UNARY_LOOP(T, log(v)); break;                                      \
        case LUNAR_OP_LOG1P: UNARY_LOOP(T, log1p(v)); break;                                  \
        case LUNAR_OP_SQRT: UNARY_LOOP(T, sqrt(v)); break;                                    \
        case LUNAR_OP_RSQRT: UNARY_LOOP(T, (T)1 / sqrt(v)); break;                            \
        case LUNAR_OP_SQUARE: UNARY_LOOP(T, v * v); break;                                    \
        case LUNAR_OP_SIN: UNARY_LOOP(T, sin(v)); break;                                      \
        case LUNAR_OP_COS: UNARY_LOOP(T, cos(v)); break;                                      \
        case LUNAR_OP_TANH: UNARY_LOOP(T, tanh(v)); break;                                    \
        case LUNAR_OP_SIGMOID: UNARY_LOOP(T, (T)1 / ((T)1 + exp(-v))); break;                 \
        case LUNAR_OP_RELU: UNARY_LOOP(T, v < 0 ? (T)0 : v); break;                           \
        case LUNAR_OP_FLOOR: UNARY_LOOP(T, floor(v)); break;                                  \
        case LUNAR_OP_CEIL: UNARY_LOOP(T, ceil(v)); break;                                    \
        case LUNAR_OP_ROUND: UNARY_LOOP(T, nearbyint(v)); break;                              \
        case LUNAR_OP_TRUNC: UNARY_LOOP(T, trunc(v)); break;                                  \
        case LUNAR_OP_CLAMP: UNARY_LOOP(T, v < lo ? lo : (v > hi ? hi : v)); break;           \
        case LUNAR_OP_RECIPROCAL: UNARY_LOOP(T, (T)1 / v); break;                             \
        case LUNAR_OP_ERF: UNARY_LOOP(T, erf(v)); break;                                      \
        default: break;                                                                       \
        }                                                                                     \
    } while (0)

/* Integer types: the ops that keep integers integers (the op layer promotes the rest). */
#define UNARY_INT(T)                                                                          \
    do {                                                                                      \
        T lo = c->lo < -9.2e18 ? (T)0 : (T)c->lo, hi = c->hi > 9.2e18 ? (T)0 : (T)c->hi;      \
        bool has_lo = c->lo >= -9.2e18, has_hi = c->hi <= 9.2e18;                              \
        switch (c->op) {                                                                      \
        case LUNAR_OP_NEG: UNARY_LOOP(T, (T)(0 - v)); break;                                  \
        case LUNAR_OP_ABS: UNARY_LOOP(T, v < 0 ? (T)(0 - v) : v); break;                      \
        case LUNAR_OP_SIGN: UNARY_LOOP(T, (v > 0) - (v < 0)); break;                          \
        case LUNAR_OP_SQUARE: UNARY_LOOP(T, v * v); break;                                    \
        case LUNAR_OP_RELU: UNARY_LOOP(T, v < 0 ? (T)0 : v); break;                           \
        case LUNAR_OP_FLOOR:                                                                  \
        case LUNAR_OP_CEIL:                                                                   \
        case LUNAR_OP_ROUND:                                                                  \
        case LUNAR_OP_TRUNC: UNARY_LOOP(T, v); break;                                         \
        case LUNAR_OP_CLAMP:                                                                  \
            UNARY_LOOP(T, has_lo && v < lo ? lo : (has_hi && v > hi ? hi : v));               \
            break;                                                                            \
        default: break;                                                                       \
        }                                                                                     \
    } while (0)

CPU_CLONES static void unary_row(char **p, const int64_t *s, int64_t n, void *ctx) {
    const unary_ctx *c = ctx;
    if (c->op == LUNAR_OP_LOGICAL_NOT) { /* bool in, bool out */
        uint8_t *o = (uint8_t *)p[0];
        const uint8_t *x = (const uint8_t *)p[1];
        for (int64_t i = 0; i < n; i++) o[i * s[0]] = !x[i * s[1]];
        return;
    }
    switch (c->dt) {
    case LUNAR_F32: UNARY_FLOAT(float); break;
    case LUNAR_F64: UNARY_FLOAT(double); break;
    case LUNAR_I32: UNARY_INT(int32_t); break;
    case LUNAR_I64: UNARY_INT(int64_t); break;
    case LUNAR_U8:
    case LUNAR_BOOL: UNARY_INT(uint8_t); break;
    default: break;
    }
}

lunar_status cpu_unary(lunar_unary_op op, lunar_tensor *out, const lunar_tensor *x,
                       const double *params) {
    unary_ctx c = {op, x->dtype, params ? params[0] : -INFINITY, params ? params[1] : INFINITY};
    const lunar_tensor *ts[2] = {out, x};
    cpu_foreach(2, ts, unary_row, &c);
    return LUNAR_OK;
}

/* ---- binary ---- */

typedef struct {
    lunar_binary_op op;
    lunar_dtype dt;
} binary_ctx;

/* EXPR computes the result from u and v; OT is the output type. */
#define BINARY_LOOP(T, OT, EXPR)                                                              \
    do {                                                                                      \
        OT *o = (OT *)p[0];                                                                   \
        const T *a = (const T *)p[1], *b = (const T *)p[2];                                   \
        int64_t so = s[0] / (int64_t)sizeof(OT), sa = s[1] / (int64_t)sizeof(T),              \
                sb = s[2] / (int64_t)sizeof(T);                                               \
        if (so == 1 && sa == 1 && sb == 1)                                                    \
            for (int64_t i = 0; i < n; i++) {                                                 \
                T u = a[i], v = b[i];                                                         \
                o[i] = (OT)(EXPR);                                                            \
            }                                                                                 \
        else if (so == 1 && sa == 1 && sb == 0) {                                             \
            T v = b[0];                                                                       \
            for (int64_t i = 0; i < n; i++) {                                                 \
                T u = a[i];                                                                   \
                o[i] = (OT)(EXPR);                                                            \
            }                                                                                 \
        } else                                                                                \
            for (int64_t i = 0; i < n; i++) {                                                 \
                T u = a[i * sa], v = b[i * sb];                                               \
                o[i * so] = (OT)(EXPR);                                                       \
            }                                                                                 \
    } while (0)

#define BINARY_COMPARE(T)                                                                     \
    case LUNAR_OP_EQ: BINARY_LOOP(T, uint8_t, u == v); break;                                 \
    case LUNAR_OP_NE: BINARY_LOOP(T, uint8_t, u != v); break;                                 \
    case LUNAR_OP_LT: BINARY_LOOP(T, uint8_t, u < v); break;                                  \
    case LUNAR_OP_LE: BINARY_LOOP(T, uint8_t, u <= v); break;                                 \
    case LUNAR_OP_GT: BINARY_LOOP(T, uint8_t, u > v); break;                                  \
    case LUNAR_OP_GE: BINARY_LOOP(T, uint8_t, u >= v); break;                                 \
    case LUNAR_OP_LOGICAL_AND: BINARY_LOOP(T, uint8_t, u != 0 && v != 0); break;              \
    case LUNAR_OP_LOGICAL_OR: BINARY_LOOP(T, uint8_t, u != 0 || v != 0); break;               \
    case LUNAR_OP_LOGICAL_XOR: BINARY_LOOP(T, uint8_t, (u != 0) != (v != 0)); break;

static inline double remainder_f64(double u, double v) {
    double r = fmod(u, v);
    return (r != 0 && ((r < 0) != (v < 0))) ? r + v : r;
}

#define BINARY_FLOAT(T)                                                                       \
    switch (c->op) {                                                                          \
    case LUNAR_OP_ADD: BINARY_LOOP(T, T, u + v); break;                                       \
    case LUNAR_OP_SUB: BINARY_LOOP(T, T, u - v); break;                                       \
    case LUNAR_OP_MUL: BINARY_LOOP(T, T, u * v); break;                                       \
    case LUNAR_OP_DIV: BINARY_LOOP(T, T, u / v); break;                                       \
    case LUNAR_OP_POW: BINARY_LOOP(T, T, pow(u, v)); break;                                   \
    case LUNAR_OP_ATAN2: BINARY_LOOP(T, T, atan2(u, v)); break;                               \
    case LUNAR_OP_MAXIMUM: BINARY_LOOP(T, T, (u != u || u > v) ? u : v); break;               \
    case LUNAR_OP_MINIMUM: BINARY_LOOP(T, T, (u != u || u < v) ? u : v); break;               \
    case LUNAR_OP_FMOD: BINARY_LOOP(T, T, fmod(u, v)); break;                                 \
    case LUNAR_OP_REMAINDER: BINARY_LOOP(T, T, remainder_f64(u, v)); break;                   \
        BINARY_COMPARE(T)                                                                     \
    default: break;                                                                           \
    }

static inline int64_t ipow(int64_t base, int64_t e) {
    if (e < 0) return base == 1 ? 1 : (base == -1 ? (e % 2 ? -1 : 1) : 0);
    uint64_t r = 1, b = (uint64_t)base; /* unsigned: overflow wraps, as in PyTorch */
    while (e) {
        if (e & 1) r *= b;
        b *= b;
        e >>= 1;
    }
    return (int64_t)r;
}

/* Integer division by zero is defined here (0) rather than trapping the process. */
static inline int64_t imod(int64_t u, int64_t v, bool floored) {
    if (v == 0 || v == -1) return 0;
    int64_t r = u % v;
    return (floored && r != 0 && ((r < 0) != (v < 0))) ? r + v : r;
}
static inline int64_t idiv(int64_t u, int64_t v) {
    if (v == 0) return 0;
    if (v == -1) return (int64_t)(0 - (uint64_t)u);
    return u / v;
}

#define BINARY_INT(T)                                                                         \
    switch (c->op) {                                                                          \
    case LUNAR_OP_ADD: BINARY_LOOP(T, T, u + v); break;                                       \
    case LUNAR_OP_SUB: BINARY_LOOP(T, T, u - v); break;                                       \
    case LUNAR_OP_MUL: BINARY_LOOP(T, T, u * v); break;                                       \
    case LUNAR_OP_DIV: BINARY_LOOP(T, T, idiv(u, v)); break;                                  \
    case LUNAR_OP_POW: BINARY_LOOP(T, T, ipow(u, v)); break;                                  \
    case LUNAR_OP_MAXIMUM: BINARY_LOOP(T, T, u > v ? u : v); break;                           \
    case LUNAR_OP_MINIMUM: BINARY_LOOP(T, T, u < v ? u : v); break;                           \
    case LUNAR_OP_FMOD: BINARY_LOOP(T, T, imod(u, v, false)); break;                          \
    case LUNAR_OP_REMAINDER: BINARY_LOOP(T, T, imod(u, v, true)); break;                      \
        BINARY_COMPARE(T)                                                                     \
    default: break;                                                                           \
    }

/* Bools stay 0/1: add is "or", mul and minimum are "and", maximum is "or". */
#define BINARY_BOOL                                                                           \
    switch (c->op) {                                                                          \
    case LUNAR_OP_ADD:                                                                        \
    case LUNAR_OP_MAXIMUM: BINARY_LOOP(uint8_t, uint8_t, u | v); break;                       \
    case LUNAR_OP_MUL:                                                                        \
    case LUNAR_OP_MINIMUM: BINARY_LOOP(uint8_t, uint8_t, u & v); break;                       \
        BINARY_COMPARE(uint8_t)                                                               \
    default: break;                                                                           \
    }

CPU_CLONES static void binary_row(char **p, const int64_t *s, int64_t n, void *ctx) {
    const binary_ctx *c = ctx;
    switch (c->dt) {
    case LUNAR_F32: BINARY_FLOAT(float); break;
    case LUNAR_F64: BINARY_FLOAT(double); break;
    case LUNAR_I32: BINARY_INT(int32_t); break;
    case LUNAR_I64: BINARY_INT(int64_t); break;
    case LUNAR_U8: BINARY_INT(uint8_t); break;
    case LUNAR_BOOL: BINARY_BOOL; break;
    default: break;
    }
}

lunar_status cpu_binary(lunar_binary_op op, lunar_tensor *out, const lunar_tensor *a,
                        const lunar_tensor *b) {
    binary_ctx c = {op, a->dtype};
    const lunar_tensor *ts[3] = {out, a, b};
    /* contiguous operands of one layout: one run, no iterator set-up (tiny tensors) */
    if (lunar_tensor_is_contiguous(out) && lunar_tensor_is_contiguous(a) &&
        lunar_tensor_is_contiguous(b) && lunar_tensor_numel(out) < LUNAR_GRAIN &&
        lunar_shape_equal(a->ndim, a->shape, b->ndim, b->shape)) {
        char *p[3] = {cpu_ptr(out), cpu_ptr(a), cpu_ptr(b)};
        int64_t s[3] = {(int64_t)lunar_dtype_size(out->dtype), (int64_t)lunar_dtype_size(a->dtype),
                        (int64_t)lunar_dtype_size(b->dtype)};
        binary_row(p, s, lunar_tensor_numel(out), &c);
        return LUNAR_OK;
    }
    cpu_foreach(3, ts, binary_row, &c);
    return LUNAR_OK;
}

/* ---- where ---- */

static void where_row(char **p, const int64_t *s, int64_t n, void *ctx) {
    size_t es = *(const size_t *)ctx;
    const uint8_t *cond = (const uint8_t *)p[1];
    switch (es) {
#define SELECT(T)                                                                             \
    for (int64_t i = 0; i < n; i++)                                                           \
        *(T *)(p[0] + i * s[0]) =                                                             \
            cond[i * s[1]] ? *(const T *)(p[2] + i * s[2]) : *(const T *)(p[3] + i * s[3]);   \
    break
    case 1: SELECT(uint8_t);
    case 4: SELECT(uint32_t);
    default: SELECT(uint64_t);
#undef SELECT
    }
}

/* float32 out = cond ? a : b, all contiguous, b one value when sb = 0 (a ReLU's backward:
 * where(x > 0, g, 0)); loads before the select so that it vectorises as a blend. */
CPU_CLONES static void where_f32_unit(float *restrict o, const uint8_t *restrict c,
                                      const float *restrict a, const float *restrict b,
                                      int64_t sb, int64_t n) {
    if (sb == 0) {
        float bv = b[0];
        for (int64_t i = 0; i < n; i++) {
            float av = a[i];
            o[i] = c[i] ? av : bv;
        }
    } else {
        for (int64_t i = 0; i < n; i++) {
            float av = a[i], bv = b[i];
            o[i] = c[i] ? av : bv;
        }
    }
}

static bool all_zero_strides(const lunar_tensor *t) {
    for (int d = 0; d < t->ndim; d++)
        if (t->strides[d] != 0 && t->shape[d] != 1) return false;
    return true;
}

lunar_status cpu_where(lunar_tensor *out, const lunar_tensor *cond, const lunar_tensor *a,
                       const lunar_tensor *b) {
    size_t es = lunar_dtype_size(out->dtype);
    if (out->dtype == LUNAR_F32 && a->dtype == LUNAR_F32 && b->dtype == LUNAR_F32 &&
        lunar_tensor_is_contiguous(out) && lunar_tensor_is_contiguous(cond) &&
        lunar_tensor_is_contiguous(a) &&
        (all_zero_strides(b) || lunar_tensor_is_contiguous(b))) {
        where_f32_unit((float *)cpu_ptr(out), (const uint8_t *)cpu_ptr(cond),
                       (const float *)cpu_ptr(a), (const float *)cpu_ptr(b),
                       all_zero_strides(b) ? 0 : 1, lunar_tensor_numel(out));
        return LUNAR_OK;
    }
    const lunar_tensor *ts[4] = {out, cond, a, b};
    cpu_foreach(4, ts, where_row, &es);
    return LUNAR_OK;
}
