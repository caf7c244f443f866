/*
 * elementwise.cl - kernels that map elements one to one: copy (with a dtype cast), fill,
 * arange, the unary and binary op families, where. One work-item per output element;
 * every operand is strided (see common.cl). Op codes follow the enums in core/lunar.h.
 */

/* lunar_unary_op */
#define U_NEG 0
#define U_ABS 1
#define U_SIGN 2
#define U_EXP 3
#define U_EXPM1 4
#define U_LOG 5
#define U_LOG1P 6
#define U_SQRT 7
#define U_RSQRT 8
#define U_SQUARE 9
#define U_SIN 10
#define U_COS 11
#define U_TANH 12
#define U_SIGMOID 13
#define U_RELU 14
#define U_FLOOR 15
#define U_CEIL 16
#define U_ROUND 17
#define U_TRUNC 18
#define U_CLAMP 19
#define U_RECIPROCAL 20
#define U_ERF 21
#define U_LOGICAL_NOT 22

/* lunar_binary_op */
#define B_ADD 0
#define B_SUB 1
#define B_MUL 2
#define B_DIV 3
#define B_POW 4
#define B_ATAN2 5
#define B_MAXIMUM 6
#define B_MINIMUM 7
#define B_FMOD 8
#define B_REMAINDER 9
#define B_EQ 10
#define B_NE 11
#define B_LT 12
#define B_LE 13
#define B_GT 14
#define B_GE 15
#define B_LOGICAL_AND 16
#define B_LOGICAL_OR 17
#define B_LOGICAL_XOR 18

/* ---- copy: o [shape] (dtype N) = x [shape] (dtype xdt) ---- */
#define DEF_COPY(N, T)                                                                        \
    __kernel void copy_##N(__global T *o, long oo, long8 so, __global const uchar *x,        \
                           long xo, long8 sx, int xdt, long n, int nd, long8 shape) {        \
        long i = get_global_id(0);                                                            \
        if (i >= n) return;                                                                   \
        long8 c = lunar_coords(i, nd, shape);                                                 \
        o[oo + lunar_dotn(nd, c, so)] =                                                            \
            lunar_load_##N(x, xdt, xo + lunar_dotn(nd, c, sx));                                    \
    }
LUNAR_ALL_TYPES(DEF_COPY)

/* ---- fill: o [shape] = v ---- */
#define DEF_FILL(N, T)                                                                        \
    __kernel void fill_##N(__global T *o, long oo, long8 so, T v, long n, int nd,             \
                           long8 shape) {                                                     \
        long i = get_global_id(0);                                                            \
        if (i >= n) return;                                                                   \
        o[oo + lunar_dotn(nd, lunar_coords(i, nd, shape), so)] = v;                               \
    }
LUNAR_ALL_TYPES(DEF_FILL)

/* ---- arange: o [n] contiguous = start + i * step ---- */
#define DEF_ARANGE(N, T)                                                                      \
    __kernel void arange_##N(__global T *o, long oo, acc_t start, acc_t step, long n) {       \
        long i = get_global_id(0);                                                            \
        if (i >= n) return;                                                                   \
        o[oo + i] = (T)(start + (acc_t)i * step);                                             \
    }
LUNAR_ALL_TYPES(DEF_ARANGE)

/* ---- unary: o [shape] = op(x [shape]); lo/hi are clamp's bounds ---- */
#define UNARY_HEAD(N, T)                                                                      \
    __kernel void unary_##N(__global T *o, long oo, long8 so, __global const T *x, long xo,  \
                            long8 sx, long n, int nd, long8 shape, int op, T lo, T hi,        \
                            int has_lo, int has_hi) {                                         \
        long i = get_global_id(0);                                                            \
        if (i >= n) return;                                                                   \
        long8 c = lunar_coords(i, nd, shape);                                                 \
        T v = x[xo + lunar_dotn(nd, c, sx)], r;

#define DEF_UNARY_FLOAT(N, T)                                                                 \
    UNARY_HEAD(N, T)                                                                          \
    switch (op) {                                                                             \
    case U_NEG: r = -v; break;                                                                \
    case U_ABS: r = fabs(v); break;                                                           \
    case U_SIGN: r = (T)((v > 0) - (v < 0)); break; /* NaN: 0, as PyTorch */                  \
    case U_EXP: r = exp(v); break;                                                            \
    case U_EXPM1: r = expm1(v); break;                                                        \
    case U_LOG: r = log(v); break;                                                            \
    case U_LOG1P: r = log1p(v); break;                                                        \
    case U_SQRT: r = sqrt(v); break;                                                          \
    case U_RSQRT: r = (T)1 / sqrt(v); break;                                                  \
    case U_SQUARE: r = v * v; break;                                                          \
    case U_SIN: r = sin(v); break;                                                            \
    case U_COS: r = cos(v); break;                                                            \
    case U_TANH: r = tanh(v); break;                                                          \
    case U_SIGMOID: r = (T)1 / ((T)1 + exp(-v)); break;                                       \
    case U_RELU: r = v < 0 ? (T)0 : v; break;                                                 \
    case U_FLOOR: r = floor(v); break;                                                        \
    case U_CEIL: r = ceil(v); break;                                                          \
    case U_ROUND: r = rint(v); break; /* half to even, as nearbyint */                        \
    case U_TRUNC: r = trunc(v); break;                                                        \
    case U_CLAMP: r = has_lo && v < lo ? lo : (has_hi && v > hi ? hi : v); break;             \
    case U_RECIPROCAL: r = (T)1 / v; break;                                                   \
    case U_ERF: r = erf(v); break;                                                            \
    case U_LOGICAL_NOT: r = (T)(v == 0); break;                                               \
    default: r = v; break;                                                                    \
    }                                                                                         \
    o[oo + lunar_dotn(nd, c, so)] = r;                                                             \
    }

/* integers: the ops that keep integers integers (the op layer promotes the rest) */
#define DEF_UNARY_INT(N, T)                                                                   \
    UNARY_HEAD(N, T)                                                                          \
    switch (op) {                                                                             \
    case U_NEG: r = (T)(0 - v); break;                                                        \
    case U_ABS: r = v < 0 ? (T)(0 - v) : v; break;                                            \
    case U_SIGN: r = (T)((v > 0) - (v < 0)); break;                                           \
    case U_SQUARE: r = v * v; break;                                                          \
    case U_RELU: r = v < 0 ? (T)0 : v; break;                                                 \
    case U_CLAMP: r = has_lo && v < lo ? lo : (has_hi && v > hi ? hi : v); break;             \
    case U_LOGICAL_NOT: r = (T)(v == 0); break;                                               \
    default: r = v; break; /* floor, ceil, round, trunc */                                   \
    }                                                                                         \
    o[oo + lunar_dotn(nd, c, so)] = r;                                                             \
    }
LUNAR_FLOAT_TYPES(DEF_UNARY_FLOAT)
LUNAR_INT_TYPES(DEF_UNARY_INT)
DEF_UNARY_INT(bool, uchar)

/* ---- binary: o [shape] = a [shape] op b [shape] (broadcast as stride 0) ---- */
#define BINARY_HEAD(NAME, N, T, OT)                                                           \
    __kernel void NAME##_##N(__global OT *o, long oo, long8 so, __global const T *a,          \
                             long ao, long8 sa, __global const T *b, long bo, long8 sb,       \
                             long n, int nd, long8 shape, int op) {                           \
        long i = get_global_id(0);                                                            \
        if (i >= n) return;                                                                   \
        long8 c = lunar_coords(i, nd, shape);                                                 \
        T u = a[ao + lunar_dotn(nd, c, sa)], v = b[bo + lunar_dotn(nd, c, sb)];                    \
        OT r;

/* comparisons and logical ops: bool out */
#define DEF_COMPARE(N, T)                                                                     \
    BINARY_HEAD(compare, N, T, uchar)                                                         \
    switch (op) {                                                                             \
    case B_EQ: r = u == v; break;                                                             \
    case B_NE: r = u != v; break;                                                             \
    case B_LT: r = u < v; break;                                                              \
    case B_LE: r = u <= v; break;                                                             \
    case B_GT: r = u > v; break;                                                              \
    case B_GE: r = u >= v; break;                                                             \
    case B_LOGICAL_AND: r = u != 0 && v != 0; break;                                          \
    case B_LOGICAL_OR: r = u != 0 || v != 0; break;                                           \
    default: r = (u != 0) != (v != 0); break;                                                 \
    }                                                                                         \
    o[oo + lunar_dotn(nd, c, so)] = r;                                                             \
    }
LUNAR_ALL_TYPES(DEF_COMPARE)

#define DEF_BINARY_FLOAT(N, T)                                                                \
    BINARY_HEAD(binary, N, T, T)                                                              \
    switch (op) {                                                                             \
    case B_ADD: r = u + v; break;                                                             \
    case B_SUB: r = u - v; break;                                                             \
    case B_MUL: r = u * v; break;                                                             \
    case B_DIV: r = u / v; break;                                                             \
    case B_POW: r = pow(u, v); break;                                                         \
    case B_ATAN2: r = atan2(u, v); break;                                                     \
    case B_MAXIMUM: r = (u != u || u > v) ? u : v; break;                                     \
    case B_MINIMUM: r = (u != u || u < v) ? u : v; break;                                     \
    case B_FMOD: r = fmod(u, v); break;                                                       \
    case B_REMAINDER:                                                                         \
        r = fmod(u, v);                                                                       \
        if (r != 0 && ((r < 0) != (v < 0))) r += v;                                           \
        break;                                                                                \
    default: r = 0; break;                                                                    \
    }                                                                                         \
    o[oo + lunar_dotn(nd, c, so)] = r;                                                             \
    }
LUNAR_FLOAT_TYPES(DEF_BINARY_FLOAT)

/* integer division and remainder by zero give 0 here, as on the CPU, instead of trapping */
inline long lunar_ipow(long base, long e) {
    if (e < 0) return base == 1 ? 1 : (base == -1 ? (e % 2 ? -1 : 1) : 0);
    ulong r = 1, b = (ulong)base; /* unsigned: overflow wraps, as in PyTorch */
    while (e) {
        if (e & 1) r *= b;
        b *= b;
        e >>= 1;
    }
    return (long)r;
}
inline long lunar_imod(long u, long v, int floored) {
    if (v == 0 || v == -1) return 0;
    long r = u % v;
    return (floored && r != 0 && ((r < 0) != (v < 0))) ? r + v : r;
}
inline long lunar_idiv(long u, long v) {
    if (v == 0) return 0;
    if (v == -1) return (long)(0 - (ulong)u);
    return u / v;
}

#define DEF_BINARY_INT(N, T)                                                                  \
    BINARY_HEAD(binary, N, T, T)                                                              \
    switch (op) {                                                                             \
    case B_ADD: r = u + v; break;                                                             \
    case B_SUB: r = u - v; break;                                                             \
    case B_MUL: r = u * v; break;                                                             \
    case B_DIV: r = (T)lunar_idiv(u, v); break;                                               \
    case B_POW: r = (T)lunar_ipow(u, v); break;                                               \
    case B_MAXIMUM: r = u > v ? u : v; break;                                                 \
    case B_MINIMUM: r = u < v ? u : v; break;                                                 \
    case B_FMOD: r = (T)lunar_imod(u, v, 0); break;                                           \
    case B_REMAINDER: r = (T)lunar_imod(u, v, 1); break;                                      \
    default: r = 0; break;                                                                    \
    }                                                                                         \
    o[oo + lunar_dotn(nd, c, so)] = r;                                                             \
    }
LUNAR_INT_TYPES(DEF_BINARY_INT)

/* bools stay 0/1: add and maximum are "or", mul and minimum are "and" */
BINARY_HEAD(binary, bool, uchar, uchar)
switch (op) {
case B_ADD:
case B_MAXIMUM: r = u | v; break;
case B_MUL:
case B_MINIMUM: r = u & v; break;
default: r = 0; break;
}
o[oo + lunar_dotn(nd, c, so)] = r;
}

/* ---- where: o [shape] = cond ? a : b, all strided ---- */
#define DEF_WHERE(N, T)                                                                       \
    __kernel void where_##N(__global T *o, long oo, long8 so, __global const uchar *cond,    \
                            long co, long8 sc, __global const T *a, long ao, long8 sa,        \
                            __global const T *b, long bo, long8 sb, long n, int nd,           \
                            long8 shape) {                                                    \
        long i = get_global_id(0);                                                            \
        if (i >= n) return;                                                                   \
        long8 c = lunar_coords(i, nd, shape);                                                 \
        o[oo + lunar_dotn(nd, c, so)] =                                                            \
            cond[co + lunar_dotn(nd, c, sc)] ? a[ao + lunar_dotn(nd, c, sa)]                       \
                                             : b[bo + lunar_dotn(nd, c, sb)];                      \
    }
LUNAR_ALL_TYPES(DEF_WHERE)
