/*
 * optim.cl - the optim_step entry: one fused in-place optimizer step, one work-item per
 * parameter element, formula for formula as core/cpu/optim.c: the generic kernel runs in
 * acc_t with the same roundings to T at the same places, and the two float32 fast paths
 * (SGD and Adam without amsgrad or maximize) run in float like the CPU's, so the CPU and a
 * device with cl_khr_fp64 step a parameter to the same bits. FP_CONTRACT OFF keeps fma out,
 * as -std=c11 does on the CPU; float divisions and square roots go through double, which
 * rounds them correctly (OpenCL lets float ones be off by up to 3 ulp). Without cl_khr_fp64
 * the generic kernel computes in float and agrees to rounding only.
 *
 * p, g, s0..s2: [n] contiguous at offsets po, go, so0..so2 (unused slots get p, untouched).
 * Kinds follow lunar_optim_kind in core/lunar.h; state slots as listed there.
 */
#pragma OPENCL FP_CONTRACT OFF

#define OPT_SGD 0
#define OPT_ADAGRAD 1
#define OPT_ADADELTA 2
#define OPT_RMSPROP 3
#define OPT_ADAM 4
#define OPT_ADAMAX 5
#define OPT_NADAM 6

/* the flags word */
#define OPT_MAXIMIZE 1
#define OPT_DECOUPLED 2
#define OPT_NESTEROV 4
#define OPT_CENTERED 8
#define OPT_AMSGRAD 16

#ifdef LUNAR_HAS_F64
inline float opt_div(float a, float b) { return (float)((double)a / (double)b); }
inline float opt_sqrt(float a) { return (float)sqrt((double)a); }
#else
inline float opt_div(float a, float b) { return a / b; }
inline float opt_sqrt(float a) { return sqrt(a); }
#endif

/* The generic step, any kind and options. Square roots take acc_t arguments: C's sqrt of
 * a float promotes it to double, OpenCL's would stay in float. */
#define DEF_OPTIM(N, T)                                                                       \
    __kernel void optim_##N(int kind, int flags, __global T *p, long po,                      \
                            __global const T *gr, long go, __global T *s0, long so0,          \
                            __global T *s1, long so1, __global T *s2, long so2, long n,       \
                            acc_t lr, acc_t wd, acc_t eps, acc_t b1, acc_t b2, acc_t mom,     \
                            acc_t dampening, acc_t c1, acc_t c2, acc_t c3) {                  \
        long i = get_global_id(0);                                                            \
        if (i >= n) return;                                                                   \
        p += po, gr += go, s0 += so0, s1 += so1, s2 += so2;                                   \
        acc_t g = flags & OPT_MAXIMIZE ? -(acc_t)gr[i] : (acc_t)gr[i];                        \
        acc_t x = p[i];                                                                       \
        if (flags & OPT_DECOUPLED) x = (T)(x * (1 - lr * wd));                                \
        else if (wd != 0) g = (T)(g + wd * x);                                                \
        switch (kind) {                                                                       \
        case OPT_SGD:                                                                         \
            if (mom != 0) {                                                                   \
                acc_t buf = c1 != 0 ? g : (T)(s0[i] * mom + (1 - dampening) * g);             \
                s0[i] = (T)buf;                                                               \
                g = flags & OPT_NESTEROV ? (T)(g + mom * (T)buf) : (T)buf;                    \
            }                                                                                 \
            x -= lr * g;                                                                      \
            break;                                                                            \
        case OPT_ADAGRAD: {                                                                   \
            acc_t sum = (T)(s0[i] + g * g);                                                   \
            s0[i] = (T)sum;                                                                   \
            x -= c1 * g / (acc_t)(T)(sqrt(sum) + eps);                                        \
            break;                                                                            \
        }                                                                                     \
        case OPT_ADADELTA: {                                                                  \
            acc_t sq = (T)(s0[i] * b1 + (1 - b1) * g * g);                                    \
            s0[i] = (T)sq;                                                                    \
            acc_t sd = (T)sqrt((acc_t)(T)(sq + eps));                                         \
            acc_t delta = (T)((T)((T)sqrt((acc_t)(T)(s1[i] + eps)) / sd) * g);                \
            s1[i] = (T)(s1[i] * b1 + (1 - b1) * delta * delta);                               \
            x -= lr * delta;                                                                  \
            break;                                                                            \
        }                                                                                     \
        case OPT_RMSPROP: {                                                                   \
            acc_t sq = (T)(s0[i] * b1 + (1 - b1) * g * g);                                    \
            s0[i] = (T)sq;                                                                    \
            acc_t avg;                                                                        \
            if (flags & OPT_CENTERED) {                                                       \
                acc_t ga = (T)(s2[i] * b1 + (1 - b1) * g);                                    \
                s2[i] = (T)ga;                                                                \
                avg = (T)sqrt((acc_t)(T)(sq - ga * ga));                                      \
            } else {                                                                          \
                avg = (T)sqrt(sq);                                                            \
            }                                                                                 \
            avg = (T)(avg + eps);                                                             \
            if (mom > 0) {                                                                    \
                acc_t buf = (T)(s1[i] * mom + g / avg);                                       \
                s1[i] = (T)buf;                                                               \
                x -= lr * buf;                                                                \
            } else {                                                                          \
                x -= lr * g / avg;                                                            \
            }                                                                                 \
            break;                                                                            \
        }                                                                                     \
        case OPT_ADAM: {                                                                      \
            acc_t m = (T)(s0[i] * b1 + (1 - b1) * g);                                         \
            acc_t v = (T)(s1[i] * b2 + (1 - b2) * g * g);                                     \
            s0[i] = (T)m;                                                                     \
            s1[i] = (T)v;                                                                     \
            if (flags & OPT_AMSGRAD) {                                                        \
                if (v > s2[i]) s2[i] = (T)v;                                                  \
                v = s2[i];                                                                    \
            }                                                                                 \
            acc_t denom = (T)((T)((T)sqrt(v) / c2) + eps);                                    \
            x -= c1 * m / denom;                                                              \
            break;                                                                            \
        }                                                                                     \
        case OPT_ADAMAX: {                                                                    \
            acc_t m = (T)(s0[i] * b1 + (1 - b1) * g);                                         \
            acc_t a = (T)(s1[i] * b2), b = (T)(fabs(g) + eps);                                \
            acc_t u = a > b ? a : b;                                                          \
            s0[i] = (T)m;                                                                     \
            s1[i] = (T)u;                                                                     \
            x -= c1 * m / u;                                                                  \
            break;                                                                            \
        }                                                                                     \
        case OPT_NADAM: {                                                                     \
            acc_t m = (T)(s0[i] * b1 + (1 - b1) * g);                                         \
            acc_t v = (T)(s1[i] * b2 + (1 - b2) * g * g);                                     \
            s0[i] = (T)m;                                                                     \
            s1[i] = (T)v;                                                                     \
            acc_t denom = (T)((T)sqrt((acc_t)(T)(v / c1)) + eps);                             \
            x = (T)(x + c2 * g / denom);                                                      \
            x += c3 * m / denom;                                                              \
            break;                                                                            \
        }                                                                                     \
        default: break;                                                                       \
        }                                                                                     \
        p[i] = (T)x;                                                                          \
    }
LUNAR_FLOAT_TYPES(DEF_OPTIM)

/* cpu/optim.c's float32 SGD: p, g, buf [n]; buf unused (given p) when momentum is 0.
 * damp = 1 - dampening, first: the buffer starts as the gradient. */
__kernel void optim_sgd_f32(__global float *p, long po, __global const float *g, long go,
                            __global float *buf, long bo, int use_buf, long n, float lr,
                            float wd, float mom, float damp, int first, int nesterov) {
    long i = get_global_id(0);
    if (i >= n) return;
    p += po, g += go, buf += bo;
    float gi = wd != 0 ? g[i] + wd * p[i] : g[i];
    if (use_buf) {
        float b = first ? gi : buf[i] * mom + damp * gi;
        buf[i] = b;
        gi = nesterov ? gi + mom * b : b;
    }
    p[i] -= lr * gi;
}

/* cpu/optim.c's float32 Adam (AdamW when decoupled): p, g, m, v [n] */
__kernel void optim_adam_f32(__global float *p, long po, __global const float *g, long go,
                             __global float *m, long mo, __global float *v, long vo, long n,
                             float lr, float wd, float eps, float b1, float b2, float c1,
                             float c2, int decoupled) {
    long i = get_global_id(0);
    if (i >= n) return;
    p += po, g += go, m += mo, v += vo;
    float x = p[i], gi = g[i];
    if (decoupled) x *= 1 - lr * wd;
    else if (wd != 0) gi += wd * x;
    float mi = m[i] * b1 + (1 - b1) * gi;
    float vi = v[i] * b2 + (1 - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = x - opt_div(c1 * mi, opt_div(opt_sqrt(vi), c2) + eps);
}

#pragma OPENCL FP_CONTRACT DEFAULT
