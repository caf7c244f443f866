/*
 * optim.c - fused optimizer steps: one pass over a parameter, its gradient and its state
 * per step, element-wise, with PyTorch 1.13's single-tensor formulas. The arithmetic runs in
 * double and every tensor is stored back in its own dtype, as PyTorch stores its state.
 */
#include "cpu.h"

#include <math.h>

/* Elements from which a step is split over the threads: lower than the element-wise ops'
 * grain, because a weight that large (an MLP's 256 x 128) already has its GEMMs split, its
 * rows in the two cores' caches; one thread stepping all of it pulled every line across
 * (MLP at 2 threads: 39 us for that weight's step, against 7 us at 1 thread). */
#define OPTIM_GRAIN 8192

/* param, grad, state[k]: [n] contiguous, one dtype T. c1..c3 are the per-step scalars that
 * lunar_optim_step computed (see ops_optim.c). */
#define OPTIM_LOOP(T)                                                                         \
    static void optim_##T(lunar_optim_kind kind, T *p, const T *gr, T *s0, T *s1, T *s2,      \
                          int64_t n, const lunar_optim_hyper *h) {                            \
        const double lr = h->lr, wd = h->weight_decay, eps = h->eps;                          \
        const double b1 = h->beta1, b2 = h->beta2, mom = h->momentum;                         \
        const double c1 = h->c1, c2 = h->c2, c3 = h->c3;                                      \
        CPU_FOR(n > OPTIM_GRAIN && cpu_threads() > 1, cpu_threads(),                          \
                (int64_t i = 0; i < n; i++), {                                                \
            double g = h->maximize ? -(double)gr[i] : (double)gr[i];                          \
            double x = p[i];                                                                  \
            if (h->decoupled) x = (T)(x * (1 - lr * wd));                                     \
            else if (wd != 0) g = (T)(g + wd * x);                                            \
            switch (kind) {                                                                   \
            case LUNAR_OPTIM_SGD:                                                             \
                if (mom != 0) {                                                               \
                    double buf = c1 != 0 ? g : (T)(s0[i] * mom + (1 - h->dampening) * g);     \
                    s0[i] = (T)buf;                                                           \
                    g = h->nesterov ? (T)(g + mom * (T)buf) : (T)buf;                         \
                }                                                                             \
                x -= lr * g;                                                                  \
                break;                                                                        \
            case LUNAR_OPTIM_ADAGRAD: {                                                       \
                double sum = (T)(s0[i] + g * g);                                              \
                s0[i] = (T)sum;                                                               \
                x -= c1 * g / (double)(T)(sqrt(sum) + eps);                                   \
                break;                                                                        \
            }                                                                                 \
            case LUNAR_OPTIM_ADADELTA: {                                                      \
                double sq = (T)(s0[i] * b1 + (1 - b1) * g * g);                               \
                s0[i] = (T)sq;                                                                \
                double std = (T)sqrt((T)(sq + eps));                                          \
                double delta = (T)((T)((T)sqrt((T)(s1[i] + eps)) / std) * g);                 \
                s1[i] = (T)(s1[i] * b1 + (1 - b1) * delta * delta);                           \
                x -= lr * delta;                                                              \
                break;                                                                        \
            }                                                                                 \
            case LUNAR_OPTIM_RMSPROP: {                                                       \
                double sq = (T)(s0[i] * b1 + (1 - b1) * g * g);                               \
                s0[i] = (T)sq;                                                                \
                double avg;                                                                   \
                if (h->centered) {                                                            \
                    double ga = (T)(s2[i] * b1 + (1 - b1) * g);                               \
                    s2[i] = (T)ga;                                                            \
                    avg = (T)sqrt((T)(sq - ga * ga));                                         \
                } else {                                                                      \
                    avg = (T)sqrt(sq);                                                        \
                }                                                                             \
                avg = (T)(avg + eps);                                                         \
                if (mom > 0) {                                                                \
                    double buf = (T)(s1[i] * mom + g / avg);                                  \
                    s1[i] = (T)buf;                                                           \
                    x -= lr * buf;                                                            \
                } else {                                                                      \
                    x -= lr * g / avg;                                                        \
                }                                                                             \
                break;                                                                        \
            }                                                                                 \
            case LUNAR_OPTIM_ADAM: {                                                          \
                double m = (T)(s0[i] * b1 + (1 - b1) * g);                                    \
                double v = (T)(s1[i] * b2 + (1 - b2) * g * g);                                \
                s0[i] = (T)m;                                                                 \
                s1[i] = (T)v;                                                                 \
                if (h->amsgrad) {                                                             \
                    if (v > s2[i]) s2[i] = (T)v;                                              \
                    v = s2[i];                                                                \
                }                                                                             \
                double denom = (T)((T)((T)sqrt(v) / c2) + eps);                               \
                x -= c1 * m / denom;                                                          \
                break;                                                                        \
            }                                                                                 \
            case LUNAR_OPTIM_ADAMAX: {                                                        \
                double m = (T)(s0[i] * b1 + (1 - b1) * g);                                    \
                double a = (T)(s1[i] * b2), b = (T)(fabs(g) + eps);                           \
                double u = a > b ? a : b;                                                     \
                s0[i] = (T)m;                                                                 \
                s1[i] = (T)u;                                                                 \
                x -= c1 * m / u;                                                              \
                break;                                                                        \
            }                                                                                 \
            case LUNAR_OPTIM_NADAM: {                                                         \
                double m = (T)(s0[i] * b1 + (1 - b1) * g);                                    \
                double v = (T)(s1[i] * b2 + (1 - b2) * g * g);                                \
                s0[i] = (T)m;                                                                 \
                s1[i] = (T)v;                                                                 \
                double denom = (T)((T)sqrt((T)(v / c1)) + eps);                               \
                x = (T)(x + c2 * g / denom);                                                  \
                x += c3 * m / denom;                                                          \
                break;                                                                        \
            }                                                                                 \
            default: break;                                                                   \
            }                                                                                 \
            p[i] = (T)x;                                                                      \
        });                                                                                   \
    }

typedef float f32;
typedef double f64;
OPTIM_LOOP(f32)
OPTIM_LOOP(f64)

static void *data_or_null(lunar_tensor *t) { return t ? (void *)cpu_ptr(t) : NULL; }

/* float32 fast paths for the two optimizers nearly every model uses. The generic loop above
 * (a switch and option tests per element, double arithmetic) does not vectorise; these run
 * in float with the options hoisted, as PyTorch's float32 kernels do, and were 5x faster on
 * the MLP benchmark's 235k parameters. */
CPU_CLONES static void sgd_f32(float *restrict p, const float *restrict g, float *restrict buf,
                               int64_t n, const lunar_optim_hyper *h) {
    const float lr = (float)h->lr, wd = (float)h->weight_decay, mom = (float)h->momentum;
    const float damp = 1 - (float)h->dampening;
    const bool first = h->c1 != 0, nesterov = h->nesterov, use_wd = wd != 0;
    CPU_FOR(n > OPTIM_GRAIN && cpu_threads() > 1, cpu_threads(), (int64_t i = 0; i < n; i++), {
        float gi = use_wd ? g[i] + wd * p[i] : g[i];
        if (buf) {
            float b = first ? gi : buf[i] * mom + damp * gi;
            buf[i] = b;
            gi = nesterov ? gi + mom * b : b;
        }
        p[i] -= lr * gi;
    });
}

CPU_CLONES static void adam_f32(float *restrict p, const float *restrict g, float *restrict m,
                                float *restrict v, int64_t n, const lunar_optim_hyper *h) {
    const float lr = (float)h->lr, wd = (float)h->weight_decay, eps = (float)h->eps;
    const float b1 = (float)h->beta1, b2 = (float)h->beta2;
    const float c1 = (float)h->c1, c2 = (float)h->c2;
    const bool decoupled = h->decoupled, use_wd = wd != 0;
    CPU_FOR(n > OPTIM_GRAIN && cpu_threads() > 1, cpu_threads(), (int64_t i = 0; i < n; i++), {
        float x = p[i], gi = g[i];
        if (decoupled) x *= 1 - lr * wd;
        else if (use_wd) gi += wd * x;
        float mi = m[i] * b1 + (1 - b1) * gi;
        float vi = v[i] * b2 + (1 - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] = x - c1 * mi / (sqrtf(vi) / c2 + eps);
    });
}

lunar_status cpu_optim_step(lunar_optim_kind kind, lunar_tensor *param, const lunar_tensor *grad,
                            lunar_tensor *const *state, const lunar_optim_hyper *h) {
    int64_t n = lunar_tensor_numel(param);
    void *s0 = data_or_null(state[0]), *s1 = data_or_null(state[1]);
    void *s2 = data_or_null(state[2]);
    if (param->dtype == LUNAR_F32 && !h->maximize && kind == LUNAR_OPTIM_SGD)
        sgd_f32((f32 *)cpu_ptr(param), (const f32 *)cpu_ptr(grad), h->momentum != 0 ? s0 : NULL,
                n, h);
    else if (param->dtype == LUNAR_F32 && !h->maximize && kind == LUNAR_OPTIM_ADAM &&
             !h->amsgrad)
        adam_f32((f32 *)cpu_ptr(param), (const f32 *)cpu_ptr(grad), s0, s1, n, h);
    else if (param->dtype == LUNAR_F32)
        optim_f32(kind, (f32 *)cpu_ptr(param), (const f32 *)cpu_ptr(grad), s0, s1, s2, n, h);
    else if (param->dtype == LUNAR_F64)
        optim_f64(kind, (f64 *)cpu_ptr(param), (const f64 *)cpu_ptr(grad), s0, s1, s2, n, h);
    else
        return lunar_fail(LUNAR_ERR_DTYPE, "optim_step: cpu: no kernel for %s",
                          lunar_dtype_name(param->dtype));
    return LUNAR_OK;
}
