/*
 * common.cl - what every lunar kernel shares: the dtype list, the accumulator type, and the
 * strided index helpers. Programs are built from common.cl followed by the op families.
 *
 * Geometry travels as long8 vectors (LUNAR_MAX_DIMS = 8): shape and one stride vector per
 * operand, in elements, plus nd, the number of dims in use. The host merges dims that are
 * contiguous for every operand first, so a contiguous op runs with nd = 1.
 */
#ifdef cl_khr_fp64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#define LUNAR_HAS_F64 1
typedef double acc_t; /* reductions and arange accumulate in double when the device can */
#else
typedef float acc_t;
#endif

/* the lunar_dtype codes */
#define DT_BOOL 0
#define DT_U8 1
#define DT_I32 2
#define DT_I64 3
#define DT_F32 4
#define DT_F64 5

/* M(name, type) for every dtype the device supports */
#ifdef LUNAR_HAS_F64
#define LUNAR_FLOAT_TYPES(M) M(f32, float) M(f64, double)
#else
#define LUNAR_FLOAT_TYPES(M) M(f32, float)
#endif
#define LUNAR_INT_TYPES(M) M(u8, uchar) M(i32, int) M(i64, long)
#define LUNAR_ALL_TYPES(M) M(bool, uchar) LUNAR_INT_TYPES(M) LUNAR_FLOAT_TYPES(M)

typedef union {
    long8 v;
    long a[8];
} lunar_dims;

/* The coordinates of row-major element i of shape (nd dims used). */
inline long8 lunar_coords(long i, int nd, long8 shape) {
    if (nd == 1) return (long8)(i, 0, 0, 0, 0, 0, 0, 0); /* merged contiguous: no division */
    lunar_dims sh, c;
    sh.v = shape;
    c.v = (long8)(0);
    for (int d = nd - 1; d >= 0; d--) {
        long n = sh.a[d];
        c.a[d] = i % n;
        i /= n;
    }
    return c.v;
}

inline long lunar_dot(long8 c, long8 s) {
    long8 p = c * s;
    long4 q = p.lo + p.hi;
    long2 r = q.lo + q.hi;
    return r.x + r.y;
}

/* lunar_dot for coordinates from lunar_coords(i, nd, ...): with nd = 1 (operands the host
 * merged into one contiguous run) the offset is one product, not eight. nd is a kernel
 * argument, so the branch is the same for every work-item. */
inline long lunar_dotn(int nd, long8 c, long8 s) {
    return nd == 1 ? c.s0 * s.s0 : lunar_dot(c, s);
}

/* Element i of a buffer of dtype dt, converted to T. */
#ifdef LUNAR_HAS_F64
#define LUNAR_LOAD_F64(T, p, i) case DT_F64: return (T)((__global const double *)(p))[i];
#else
#define LUNAR_LOAD_F64(T, p, i)
#endif
#define LUNAR_DEF_LOAD(N, T)                                                                  \
    inline T lunar_load_##N(__global const uchar *p, int dt, long i) {                         \
        switch (dt) {                                                                         \
        case DT_BOOL: return (T)(p[i] != 0);                                                  \
        case DT_U8: return (T)p[i];                                                           \
        case DT_I32: return (T)((__global const int *)p)[i];                                  \
        case DT_I64: return (T)((__global const long *)p)[i];                                 \
        case DT_F32: return (T)((__global const float *)p)[i];                                \
        LUNAR_LOAD_F64(T, p, i)                                                               \
        default: return (T)0;                                                                 \
        }                                                                                     \
    }
LUNAR_INT_TYPES(LUNAR_DEF_LOAD)
LUNAR_FLOAT_TYPES(LUNAR_DEF_LOAD)
LUNAR_DEF_LOAD(acc, acc_t)
/* a cast to bool is a test against zero (NaN is true), not a truncation */
inline uchar lunar_load_bool(__global const uchar *p, int dt, long i) {
    return dt <= DT_U8 ? p[i] != 0 : lunar_load_acc(p, dt, i) != 0;
}

/* Stores v (or iv, for exact integer sums) as dtype dt at element i. */
inline void lunar_store(__global uchar *p, int dt, long i, acc_t v, long iv, int exact) {
    switch (dt) {
    case DT_BOOL: p[i] = exact ? iv != 0 : v != 0; break;
    case DT_U8: p[i] = exact ? (uchar)iv : (uchar)(long)v; break;
    case DT_I32: ((__global int *)p)[i] = exact ? (int)iv : (int)v; break;
    case DT_I64: ((__global long *)p)[i] = exact ? iv : (long)v; break;
    case DT_F32: ((__global float *)p)[i] = (float)v; break;
#ifdef LUNAR_HAS_F64
    case DT_F64: ((__global double *)p)[i] = (double)v; break;
#endif
    default: break;
    }
}
