/*
 * nn.c - CPU kernels of the nn ops: softmax and log-softmax (forward and backward), the fused
 * cross-entropy on integer targets, and the per-channel moments / normalisation used by
 * batch, layer and group norm. The op layer (core/ops_nn.c) hands every tensor over
 * contiguous and shaped 3-d as each comment says; the typed loops live in nn_t.h.
 */
#include "cpu.h"

#include <math.h>

#define NN(name) name##_f32
#define T float
#include "nn_t.h"
#undef T
#undef NN
#define NN(name) name##_f64
#define T double
#include "nn_t.h"
#undef T
#undef NN

#define F32(t) ((float *)cpu_ptr(t))
#define F64(t) ((double *)cpu_ptr(t))
#define OPT32(t) ((t) ? F32(t) : NULL)
#define OPT64(t) ((t) ? F64(t) : NULL)

static lunar_status bad_dtype(const char *op, lunar_dtype dt) {
    return lunar_fail(LUNAR_ERR_UNSUPPORTED, "cpu: %s has no %s kernel", op,
                      lunar_dtype_name(dt));
}

/* x, y: [outer, n, inner] */
lunar_status cpu_softmax(lunar_tensor *y, const lunar_tensor *x, bool log_) {
    const int64_t *s = x->shape;
    if (x->dtype == LUNAR_F32) softmax_f32(F32(y), F32(x), s[0], s[1], s[2], log_);
    else if (x->dtype == LUNAR_F64) softmax_f64(F64(y), F64(x), s[0], s[1], s[2], log_);
    else return bad_dtype("softmax", x->dtype);
    return LUNAR_OK;
}

/* gx, g, y: [outer, n, inner] */
lunar_status cpu_softmax_backward(lunar_tensor *gx, const lunar_tensor *g, const lunar_tensor *y,
                                  bool log_) {
    const int64_t *s = y->shape;
    if (y->dtype == LUNAR_F32)
        softmax_bwd_f32(F32(gx), F32(g), F32(y), s[0], s[1], s[2], log_);
    else if (y->dtype == LUNAR_F64)
        softmax_bwd_f64(F64(gx), F64(g), F64(y), s[0], s[1], s[2], log_);
    else return bad_dtype("softmax_backward", y->dtype);
    return LUNAR_OK;
}

/* z: [N, C, inner]; t: [N, inner] int64; w: [C] or NULL -> loss, lse: [N, inner] */
lunar_status cpu_cross_entropy(lunar_tensor *loss, lunar_tensor *lse, const lunar_tensor *z,
                               const lunar_tensor *t, const lunar_tensor *w, int64_t ignore,
                               double smoothing) {
    const int64_t *s = z->shape;
    const int64_t *pt = (const int64_t *)cpu_ptr(t);
    if (z->dtype == LUNAR_F32)
        xent_f32(F32(loss), F32(lse), F32(z), pt, OPT32(w), s[0], s[1], s[2], ignore, smoothing);
    else if (z->dtype == LUNAR_F64)
        xent_f64(F64(loss), F64(lse), F64(z), pt, OPT64(w), s[0], s[1], s[2], ignore, smoothing);
    else return bad_dtype("cross_entropy", z->dtype);
    return LUNAR_OK;
}

/* gz, z: [N, C, inner]; g, lse, t: [N, inner]; w: [C] or NULL */
lunar_status cpu_cross_entropy_backward(lunar_tensor *gz, const lunar_tensor *g,
                                        const lunar_tensor *z, const lunar_tensor *lse,
                                        const lunar_tensor *t, const lunar_tensor *w,
                                        int64_t ignore, double smoothing) {
    const int64_t *s = z->shape;
    const int64_t *pt = (const int64_t *)cpu_ptr(t);
    if (z->dtype == LUNAR_F32)
        xent_bwd_f32(F32(gz), F32(g), F32(z), F32(lse), pt, OPT32(w), s[0], s[1], s[2], ignore,
                     smoothing);
    else if (z->dtype == LUNAR_F64)
        xent_bwd_f64(F64(gz), F64(g), F64(z), F64(lse), pt, OPT64(w), s[0], s[1], s[2], ignore,
                     smoothing);
    else return bad_dtype("cross_entropy_backward", z->dtype);
    return LUNAR_OK;
}

/* x: [A, C, B] -> mean, var: [C] */
lunar_status cpu_moments(lunar_tensor *mean, lunar_tensor *var, const lunar_tensor *x) {
    const int64_t *s = x->shape;
    if (x->dtype == LUNAR_F32) moments_f32(F32(mean), F32(var), F32(x), s[0], s[1], s[2]);
    else if (x->dtype == LUNAR_F64) moments_f64(F64(mean), F64(var), F64(x), s[0], s[1], s[2]);
    else return bad_dtype("moments", x->dtype);
    return LUNAR_OK;
}

/* y, x: [A, C, B]; mean, rstd: [C] */
lunar_status cpu_normalize(lunar_tensor *y, const lunar_tensor *x, const lunar_tensor *mean,
                           const lunar_tensor *rstd) {
    const int64_t *s = x->shape;
    if (x->dtype == LUNAR_F32)
        normalize_f32(F32(y), F32(x), F32(mean), F32(rstd), s[0], s[1], s[2]);
    else if (x->dtype == LUNAR_F64)
        normalize_f64(F64(y), F64(x), F64(mean), F64(rstd), s[0], s[1], s[2]);
    else return bad_dtype("normalize", x->dtype);
    return LUNAR_OK;
}

/* gx, g, xh: [A, C, B]; rstd: [C] */
lunar_status cpu_normalize_backward(lunar_tensor *gx, const lunar_tensor *g,
                                    const lunar_tensor *xh, const lunar_tensor *rstd) {
    const int64_t *s = xh->shape;
    if (xh->dtype == LUNAR_F32)
        normalize_bwd_f32(F32(gx), F32(g), F32(xh), F32(rstd), s[0], s[1], s[2]);
    else if (xh->dtype == LUNAR_F64)
        normalize_bwd_f64(F64(gx), F64(g), F64(xh), F64(rstd), s[0], s[1], s[2]);
    else return bad_dtype("normalize_backward", xh->dtype);
    return LUNAR_OK;
}
