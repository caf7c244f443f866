/*
 * nn.c - the OpenCL nn entries: softmax and log-softmax (forward and backward), the fused
 * cross-entropy on integer targets, and the per-channel moments / normalisation of the norms
 * (kernels/nn.cl). The op layer hands every tensor over contiguous, shaped as each comment
 * says, so the kernels take a base offset per operand and no strides.
 */
#include "opencl.h"

/* float32 and float64 only, as the CPU; NULL for any other dtype */
static const char *float_kernel(const char *const names[2], lunar_dtype dt) {
    return dt == LUNAR_F32 ? names[0] : dt == LUNAR_F64 ? names[1] : NULL;
}

static lunar_status bad_dtype(const char *op, lunar_dtype dt) {
    return lunar_fail(LUNAR_ERR_UNSUPPORTED, "opencl: %s has no %s kernel", op,
                      lunar_dtype_name(dt));
}

/* The work-group size of a per-channel reduction over count elements: a power of two, at
 * most the kernels' NN_WG (256), no larger than the count needs. */
static size_t channel_wg(int64_t count) {
    size_t wg = 1;
    while (wg < 256 && (int64_t)wg < count) wg *= 2;
    return wg;
}

/* The work-group size for one work-group per lane of n elements (the _wg kernels), or 0
 * for one work-item per lane. Short rows stay one work-item each (the loop is short and a
 * group's work-items take neighbouring lanes); from ROW_WG_MIN elements a row gets a
 * work-group of about ROW_PER_ITEM elements a work-item, at most NN_WG (256) of them.
 * On PoCL (a CPU device) this took softmax over 256 x 1000 floats from 15 ms to 4 ms and
 * 4096 x 100 from 21 to 6 (1024 x 256: 15 -> 3.6); fewer elements a work-item (8, 16)
 * were slower, as more groups were for short rows (64 a work-item). */
#define ROW_WG_MIN 64
#define ROW_PER_ITEM 32
static size_t row_wg(int64_t n) {
    if (n < ROW_WG_MIN) return 0;
    size_t wg = 1;
    while (wg < 256 && (int64_t)wg * ROW_PER_ITEM < n) wg *= 2;
    return wg;
}

/* x, y: [outer, n, inner]; (log-)softmax along n */
lunar_status ocl_softmax(lunar_tensor *y, const lunar_tensor *x, bool log_) {
    static const char *const k[2] = {"softmax_f32", "softmax_f64"},
                             *kw[2] = {"softmax_wg_f32", "softmax_wg_f64"};
    const char *name = float_kernel(k, x->dtype);
    if (!name) return bad_dtype("softmax", x->dtype);
    cl_mem ym = OCL_MEM(y), xm = OCL_MEM(x);
    cl_long yo = y->offset, xo = x->offset, n = x->shape[1], inner = x->shape[2];
    cl_long lanes = x->shape[0] * inner;
    cl_int lg = log_;
    size_t wg = row_wg(n);
    if (wg) {
        ocl_karg args[] = {A(ym), A(yo), A(xm), A(xo), A(n), A(inner), A(lg)};
        return ocl_launch_wg(ocl_dev(x), float_kernel(kw, x->dtype), (size_t)lanes * wg, wg, 7,
                             args);
    }
    ocl_karg args[] = {A(ym), A(yo), A(xm), A(xo), A(lanes), A(n), A(inner), A(lg)};
    return ocl_launch(ocl_dev(x), name, lanes, 8, args);
}

/* gx, g, y (the forward output): [outer, n, inner] */
lunar_status ocl_softmax_backward(lunar_tensor *gx, const lunar_tensor *g, const lunar_tensor *y,
                                  bool log_) {
    static const char *const k[2] = {"softmax_bwd_f32", "softmax_bwd_f64"},
                             *kw[2] = {"softmax_bwd_wg_f32", "softmax_bwd_wg_f64"};
    const char *name = float_kernel(k, y->dtype);
    if (!name) return bad_dtype("softmax_backward", y->dtype);
    cl_mem om = OCL_MEM(gx), gm = OCL_MEM(g), ym = OCL_MEM(y);
    cl_long oo = gx->offset, go = g->offset, yo = y->offset, n = y->shape[1],
            inner = y->shape[2];
    cl_long lanes = y->shape[0] * inner;
    cl_int lg = log_;
    size_t wg = row_wg(n);
    if (wg) {
        ocl_karg args[] = {A(om), A(oo), A(gm), A(go), A(ym), A(yo), A(n), A(inner), A(lg)};
        return ocl_launch_wg(ocl_dev(y), float_kernel(kw, y->dtype), (size_t)lanes * wg, wg, 9,
                             args);
    }
    ocl_karg args[] = {A(om), A(oo), A(gm), A(go), A(ym), A(yo), A(lanes), A(n), A(inner), A(lg)};
    return ocl_launch(ocl_dev(y), name, lanes, 10, args);
}

/* z: [N, C, inner]; t: [N, inner] int64; w: [C] or NULL -> loss, lse: [N, inner] */
lunar_status ocl_cross_entropy(lunar_tensor *loss, lunar_tensor *lse, const lunar_tensor *z,
                               const lunar_tensor *t, const lunar_tensor *w, int64_t ignore,
                               double smoothing) {
    static const char *const k[2] = {"xent_f32", "xent_f64"},
                             *kw[2] = {"xent_wg_f32", "xent_wg_f64"};
    const char *name = float_kernel(k, z->dtype);
    if (!name) return bad_dtype("cross_entropy", z->dtype);
    /* without weights the kernel never reads w: z's buffer stands in for it */
    cl_mem lm = OCL_MEM(loss), sm = OCL_MEM(lse), zm = OCL_MEM(z), tm = OCL_MEM(t),
           wm = w ? OCL_MEM(w) : zm;
    cl_long lo = loss->offset, so = lse->offset, zo = z->offset, to = t->offset,
            wo = w ? w->offset : 0, c = z->shape[1], inner = z->shape[2], ig = ignore;
    cl_long lanes = z->shape[0] * inner;
    cl_int has_w = w != NULL;
    ocl_scalar ls;
    size_t wg = row_wg(c);
    if (wg) {
        ocl_karg args[] = {A(lm), A(lo), A(sm),    A(so),    A(zm),
                           A(zo), A(tm), A(to),    A(wm),    A(wo),
                           A(has_w), A(c), A(inner), A(ig), ocl_acc_arg(&ls, z, smoothing)};
        return ocl_launch_wg(ocl_dev(z), float_kernel(kw, z->dtype), (size_t)lanes * wg, wg, 15,
                             args);
    }
    ocl_karg args[] = {A(lm),    A(lo),    A(sm), A(so),    A(zm), A(zo),
                       A(tm),    A(to),    A(wm), A(wo),    A(has_w), A(lanes),
                       A(c),     A(inner), A(ig), ocl_acc_arg(&ls, z, smoothing)};
    return ocl_launch(ocl_dev(z), name, lanes, 16, args);
}

/* gz, z: [N, C, inner]; g, lse, t: [N, inner]; w: [C] or NULL */
lunar_status ocl_cross_entropy_backward(lunar_tensor *gz, const lunar_tensor *g,
                                        const lunar_tensor *z, const lunar_tensor *lse,
                                        const lunar_tensor *t, const lunar_tensor *w,
                                        int64_t ignore, double smoothing) {
    static const char *const k[2] = {"xent_bwd_f32", "xent_bwd_f64"},
                             *kw[2] = {"xent_bwd_wg_f32", "xent_bwd_wg_f64"};
    const char *name = float_kernel(k, z->dtype);
    if (!name) return bad_dtype("cross_entropy_backward", z->dtype);
    cl_mem om = OCL_MEM(gz), gm = OCL_MEM(g), zm = OCL_MEM(z), sm = OCL_MEM(lse),
           tm = OCL_MEM(t), wm = w ? OCL_MEM(w) : zm;
    cl_long oo = gz->offset, go = g->offset, zo = z->offset, so = lse->offset, to = t->offset,
            wo = w ? w->offset : 0, c = z->shape[1], inner = z->shape[2], ig = ignore;
    cl_long lanes = z->shape[0] * inner;
    cl_int has_w = w != NULL;
    ocl_scalar ls;
    size_t wg = row_wg(c);
    if (wg) {
        ocl_karg args[] = {A(om), A(oo), A(gm), A(go),    A(zm),    A(zo), A(sm),
                           A(so), A(tm), A(to), A(wm),    A(wo),    A(has_w), A(c),
                           A(inner), A(ig), ocl_acc_arg(&ls, z, smoothing)};
        return ocl_launch_wg(ocl_dev(z), float_kernel(kw, z->dtype), (size_t)lanes * wg, wg, 17,
                             args);
    }
    ocl_karg args[] = {A(om), A(oo),    A(gm),    A(go),    A(zm), A(zo),
                       A(sm), A(so),    A(tm),    A(to),    A(wm), A(wo),
                       A(has_w), A(lanes), A(c), A(inner), A(ig), ocl_acc_arg(&ls, z, smoothing)};
    return ocl_launch(ocl_dev(z), name, lanes, 18, args);
}

/* x: [A, C, B] -> mean, biased var: [C]; one work-group per channel */
lunar_status ocl_moments(lunar_tensor *mean, lunar_tensor *var, const lunar_tensor *x) {
    static const char *const k[2] = {"moments_f32", "moments_f64"};
    const char *name = float_kernel(k, x->dtype);
    if (!name) return bad_dtype("moments", x->dtype);
    cl_mem mm = OCL_MEM(mean), vm = OCL_MEM(var), xm = OCL_MEM(x);
    cl_long mo = mean->offset, vo = var->offset, xo = x->offset, na = x->shape[0],
            nc = x->shape[1], nb = x->shape[2];
    size_t wg = channel_wg(na * nb);
    ocl_karg args[] = {A(mm), A(mo), A(vm), A(vo), A(xm), A(xo), A(na), A(nc), A(nb)};
    return ocl_launch_wg(ocl_dev(x), name, (size_t)nc * wg, wg, 9, args);
}

/* y = (x - mean) * rstd; x, y: [A, C, B]; mean, rstd: [C] */
lunar_status ocl_normalize(lunar_tensor *y, const lunar_tensor *x, const lunar_tensor *mean,
                           const lunar_tensor *rstd) {
    static const char *const k[2] = {"normalize_f32", "normalize_f64"};
    const char *name = float_kernel(k, x->dtype);
    if (!name) return bad_dtype("normalize", x->dtype);
    cl_mem ym = OCL_MEM(y), xm = OCL_MEM(x), mm = OCL_MEM(mean), rm = OCL_MEM(rstd);
    cl_long yo = y->offset, xo = x->offset, mo = mean->offset, ro = rstd->offset,
            n = lunar_tensor_numel(x), nc = x->shape[1], nb = x->shape[2];
    ocl_karg args[] = {A(ym), A(yo), A(xm), A(xo), A(mm), A(mo), A(rm), A(ro), A(n), A(nc),
                       A(nb)};
    return ocl_launch(ocl_dev(x), name, n, 11, args);
}

/* gx = rstd (g - mean(g) - xh mean(g xh)) per channel; gx, g, xh: [A, C, B]; rstd: [C] */
lunar_status ocl_normalize_backward(lunar_tensor *gx, const lunar_tensor *g,
                                    const lunar_tensor *xh, const lunar_tensor *rstd) {
    static const char *const k[2] = {"normalize_bwd_f32", "normalize_bwd_f64"};
    const char *name = float_kernel(k, xh->dtype);
    if (!name) return bad_dtype("normalize_backward", xh->dtype);
    cl_mem om = OCL_MEM(gx), gm = OCL_MEM(g), xm = OCL_MEM(xh), rm = OCL_MEM(rstd);
    cl_long oo = gx->offset, go = g->offset, xo = xh->offset, ro = rstd->offset,
            na = xh->shape[0], nc = xh->shape[1], nb = xh->shape[2];
    size_t wg = channel_wg(na * nb);
    ocl_karg args[] = {A(om), A(oo), A(gm), A(go), A(xm), A(xo), A(rm), A(ro), A(na), A(nc),
                       A(nb)};
    return ocl_launch_wg(ocl_dev(xh), name, (size_t)nc * wg, wg, 11, args);
}
