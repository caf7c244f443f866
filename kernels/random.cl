/*
 * random.cl - the random entry: fills a tensor from the Philox 4x32-10 stream under the
 * contract of core/philox.h (read its header comment), so a seed draws the same numbers here
 * as core/cpu/random.c draws on the CPU. One work-item per Philox block: block j gives the
 * per (4 or 2) row-major elements j * per ... j * per + per - 1, written through out's
 * strides (views need no scratch copy).
 *
 * What matches the CPU, on a device with cl_khr_fp64 (acc_t = double):
 * - uniform (float32 and float64), integer and bernoulli: bit for bit. The uniform's
 *   a + (b - a) u runs in double with + and * (correctly rounded in OpenCL as in C) and no
 *   contraction into fma (FP_CONTRACT OFF below; the CPU builds with -std=c11, which keeps
 *   gcc from contracting too); integers are exact 64-bit arithmetic (mul_hi is philox.h's
 *   philox_mulhi64); bernoulli compares the 53-bit draw with an integer threshold the host
 *   works out exactly, which equals the CPU's double comparison.
 * - normal: log, cos and sin in double may differ from glibc's by an ulp or so (OpenCL
 *   allows up to 4 ulp). Measured on PoCL (x86-64), 10^6 draws of seed 5: float32 normals
 *   bit for bit equal (rounding to float hides the ulp); float64 ones differ in 8.7% of the
 *   draws, by at most 4.7e-16 relative (8.9e-16 absolute). Another device may also move an
 *   occasional float32 normal by one float ulp (6e-8 relative); the tests allow 1e-6.
 * Without cl_khr_fp64 the uniform and normal arithmetic runs in float: the same draws, but
 * non-default bounds and the normals may round differently from the CPU's.
 */
#pragma OPENCL FP_CONTRACT OFF

/* ---- Philox: a word-for-word copy of core/philox.h (keep the two in step) ---- */

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* the distributions (philox.h's LUNAR_RANDOM_*) */
#define RND_UNIFORM 0
#define RND_NORMAL 1
#define RND_INTEGER 2
#define RND_BERNOULLI 3

/* Philox4x32-10 of counter {c, 0, 0} (c = offset + j, two words) under key {seed lo, hi}. */
inline uint4 philox_block(ulong seed, ulong offset, ulong j) {
    ulong c = offset + j;
    uint c0 = (uint)c, c1 = (uint)(c >> 32), c2 = 0, c3 = 0;
    uint k0 = (uint)seed, k1 = (uint)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        if (r > 0) { /* the key schedule bumps the key before every round but the first */
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint hi0 = mul_hi(PHILOX_M0, c0), lo0 = PHILOX_M0 * c0;
        uint hi1 = mul_hi(PHILOX_M1, c2), lo1 = PHILOX_M1 * c2;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    return (uint4)(c0, c1, c2, c3);
}

/* the 64-bit draw k (0 or 1) of a block: lanes (0, 1) or (2, 3), low word first */
inline ulong philox_u64(uint4 x, int k) {
    return k == 0 ? (ulong)x.s0 | (ulong)x.s1 << 32 : (ulong)x.s2 | (ulong)x.s3 << 32;
}

inline uint philox_lane(uint4 x, int k) {
    return k == 0 ? x.s0 : k == 1 ? x.s1 : k == 2 ? x.s2 : x.s3;
}

/* uniforms in [0, 1): multiples of 2^-24 (float) or 2^-53 (double) */
inline acc_t philox_unit24(uint x) { return (acc_t)(x >> 8) * (acc_t)0x1p-24; }
inline acc_t philox_unit53(ulong x) { return (acc_t)(x >> 11) * (acc_t)0x1p-53; }

#define RND_TWO_PI ((acc_t)6.283185307179586)

/* The per values of block j as acc_t for the uniform and normal draws (cpu/random.c's
 * block_values; is_double: the output is float64, 64-bit draws), or as exact longs (iv) for
 * the integer and bernoulli ones. */
inline void rnd_block_values(int dist, int is_double, uint4 x, acc_t a, acc_t b, long lo,
                             ulong range, ulong thresh, acc_t v[4], long iv[4]) {
    switch (dist) {
    case RND_UNIFORM:
        for (int k = 0; k < (is_double ? 2 : 4); k++) {
            acc_t u = is_double ? philox_unit53(philox_u64(x, k))
                                : philox_unit24(philox_lane(x, k));
            v[k] = a + (b - a) * u;
        }
        break;
    case RND_NORMAL:
        /* Box-Muller on pairs of draws; u1 in (0, 1] keeps the log finite */
        if (is_double) {
            acc_t u1 = (acc_t)((philox_u64(x, 0) >> 11) + 1) * (acc_t)0x1p-53;
            acc_t u2 = philox_unit53(philox_u64(x, 1));
            acc_t r = sqrt((acc_t)-2 * log(u1));
            v[0] = a + b * r * cos(RND_TWO_PI * u2);
            v[1] = a + b * r * sin(RND_TWO_PI * u2);
        } else {
            for (int k = 0; k < 4; k += 2) {
                acc_t u1 = ((acc_t)philox_lane(x, k) + (acc_t)1) * (acc_t)0x1p-32;
                acc_t u2 = (acc_t)philox_lane(x, k + 1) * (acc_t)0x1p-32;
                acc_t r = sqrt((acc_t)-2 * log(u1));
                v[k] = a + b * r * cos(RND_TWO_PI * u2);
                v[k + 1] = a + b * r * sin(RND_TWO_PI * u2);
            }
        }
        break;
    case RND_INTEGER:
        /* multiply-shift into [0, range) (philox.h's philox_mulhi64) */
        for (int k = 0; k < 2; k++) iv[k] = lo + (long)mul_hi(philox_u64(x, k), range);
        break;
    default: /* bernoulli: unit53 < p  <=>  (draw >> 11) < ceil(p 2^53) = thresh */
        for (int k = 0; k < 2; k++) iv[k] = (philox_u64(x, k) >> 11) < thresh;
        break;
    }
}

/* cpu/random.c's conversions: uniform draws that round onto b move just below it */
inline float rnd_below_f32(acc_t v, acc_t a, acc_t b, int dist) {
    float f = (float)v, fb = (float)b;
    if (dist == RND_UNIFORM && f >= fb && a < b) {
        f = nextafter(fb, -INFINITY);
        if (f < (float)a) f = (float)a;
    }
    return f;
}
#define RND_CONV_bool(v, a, b, dist) ((uchar)((v) != 0))
#define RND_CONV_u8(v, a, b, dist) ((uchar)(v))
#define RND_CONV_i32(v, a, b, dist) ((int)(v))
#define RND_CONV_i64(v, a, b, dist) ((long)(v))
#define RND_CONV_f32(v, a, b, dist) rnd_below_f32(v, a, b, dist)
#ifdef LUNAR_HAS_F64
inline double rnd_below_f64(double v, double a, double b, int dist) {
    if (dist == RND_UNIFORM && v >= b && a < b) v = nextafter(b, -(double)INFINITY);
    return v;
}
#define RND_CONV_f64(v, a, b, dist) rnd_below_f64(v, a, b, dist)
#endif
/* exact integers (integer and bernoulli draws): integer dtypes take them as they are */
#define RND_ICONV_bool(iv) ((uchar)((iv) != 0))
#define RND_ICONV_u8(iv) ((uchar)(iv))
#define RND_ICONV_i32(iv) ((int)(iv))
#define RND_ICONV_i64(iv) ((long)(iv))
#define RND_ICONV_f32(iv) ((float)(iv))
#define RND_ICONV_f64(iv) ((double)(iv))

/* whether dtype N is float64, whose uniforms and normals take 64-bit draws */
#define RND_F64_bool 0
#define RND_F64_u8 0
#define RND_F64_i32 0
#define RND_F64_i64 0
#define RND_F64_f32 0
#define RND_F64_f64 1

/* o [shape] (strided, n elements, nd merged dims): element i (row-major) gets the stream's
 * element i; nb = ceil(n / per) work-items. lo, range: the integer draw's bounds (cpu:
 * (int64)a and (uint64)((int64)b - lo)); thresh: bernoulli's ceil(a 2^53). */
#define DEF_RANDOM(N, T)                                                                      \
    __kernel void random_##N(__global T *o, long oo, long8 so, long n, int nd, long8 shape,   \
                             int dist, ulong seed, ulong offset, acc_t a, acc_t b, long lo,   \
                             ulong range, ulong thresh) {                                     \
        long j = get_global_id(0);                                                            \
        const int is_double = RND_F64_##N;                                                    \
        const int per = (dist == RND_UNIFORM || dist == RND_NORMAL) && !is_double ? 4 : 2;    \
        if (j * per >= n) return;                                                             \
        acc_t v[4];                                                                           \
        long iv[4];                                                                           \
        uint4 x = philox_block(seed, offset, (ulong)j);                                       \
        rnd_block_values(dist, is_double, x, a, b, lo, range, thresh, v, iv);                 \
        long i0 = j * per, m = n - i0 < per ? n - i0 : per;                                   \
        for (int k = 0; k < m; k++) {                                                         \
            long at = oo + lunar_dot(lunar_coords(i0 + k, nd, shape), so);                    \
            if (dist >= RND_INTEGER) o[at] = RND_ICONV_##N(iv[k]);                            \
            else o[at] = RND_CONV_##N(v[k], a, b, dist);                                      \
        }                                                                                     \
    }
LUNAR_ALL_TYPES(DEF_RANDOM)

#pragma OPENCL FP_CONTRACT DEFAULT
