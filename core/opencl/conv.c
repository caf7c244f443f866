/*
 * conv.c - the OpenCL convolution and pooling entries: im2col / col2im (the convolution
 * itself is GEMM on CLBlast, done by the op layer) and max / average / adaptive average
 * pooling with their backward passes (kernels/conv.cl). Every tensor is contiguous from its
 * offset, float32 or float64; the geometry goes to the kernels as one long16.
 */
#include "opencl.h"

static const char *im2col_k[] = {"im2col_f32", "im2col_f64"},
                  *col2im_k[] = {"col2im_f32", "col2im_f64"},
                  *max_pool_k[] = {"max_pool2d_f32", "max_pool2d_f64"},
                  *max_back_k[] = {"max_pool2d_backward_f32", "max_pool2d_backward_f64"},
                  *avg_pool_k[] = {"avg_pool2d_f32", "avg_pool2d_f64"},
                  *avg_back_k[] = {"avg_pool2d_backward_f32", "avg_pool2d_backward_f64"};

/* The kernel table's slot for a float dtype, or a failure naming the op. */
static lunar_status float_slot(const char *op, lunar_dtype dt, int *slot) {
    if (dt != LUNAR_F32 && dt != LUNAR_F64)
        return lunar_fail(LUNAR_ERR_DTYPE, "%s: needs float32 or float64 (got %s)", op,
                          lunar_dtype_name(dt));
    *slot = dt == LUNAR_F64;
    return LUNAR_OK;
}

/* lunar_conv_geom's int64 fields in their order (conv_geom_of in kernels/conv.cl) */
static cl_long16 geom_vec(const lunar_conv_geom *g) {
    cl_long16 v;
    const int64_t f[16] = {g->n,  g->c,  g->h,  g->w,  g->kh, g->kw, g->sh, g->sw,
                           g->pt, g->pl, g->pb, g->pr, g->dh, g->dw, g->oh, g->ow};
    for (int i = 0; i < 16; i++)
        v.s[i] = f[i];
    return v;
}

/* x [n, c, h, w] -> col [n, c * kh * kw, oh * ow] */
lunar_status ocl_im2col(lunar_tensor *col, const lunar_tensor *x, const lunar_conv_geom *g) {
    int k = 0;
    LUNAR_CHECK(float_slot("im2col", x->dtype, &k));
    cl_mem cm = OCL_MEM(col), xm = OCL_MEM(x);
    cl_long co = col->offset, xo = x->offset;
    cl_long16 gv = geom_vec(g);
    ocl_karg args[] = {A(cm), A(co), A(xm), A(xo), A(gv)};
    /* one work-item per row of ow entries (conv.cl) */
    return ocl_launch(ocl_dev(col), im2col_k[k], g->n * g->c * g->kh * g->kw * g->oh, 5, args);
}

/* col [n, c * kh * kw, oh * ow] -> x [n, c, h, w] (overwritten) */
lunar_status ocl_col2im(lunar_tensor *x, const lunar_tensor *col, const lunar_conv_geom *g) {
    int k = 0;
    LUNAR_CHECK(float_slot("col2im", x->dtype, &k));
    cl_mem xm = OCL_MEM(x), cm = OCL_MEM(col);
    cl_long xo = x->offset, co = col->offset;
    cl_long16 gv = geom_vec(g);
    ocl_karg args[] = {A(xm), A(xo), A(cm), A(co), A(gv)};
    return ocl_launch(ocl_dev(x), col2im_k[k], g->n * g->c * g->h * g->w, 5, args);
}

/* x [n, c, h, w] -> y, idx int64 [n, c, oh, ow] */
lunar_status ocl_max_pool2d(lunar_tensor *y, lunar_tensor *idx, const lunar_tensor *x,
                            const lunar_conv_geom *g) {
    int k = 0;
    LUNAR_CHECK(float_slot("max_pool2d", x->dtype, &k));
    cl_mem ym = OCL_MEM(y), im = OCL_MEM(idx), xm = OCL_MEM(x);
    cl_long yo = y->offset, io = idx->offset, xo = x->offset;
    cl_long16 gv = geom_vec(g);
    ocl_karg args[] = {A(ym), A(yo), A(im), A(io), A(xm), A(xo), A(gv)};
    return ocl_launch(ocl_dev(y), max_pool_k[k], g->n * g->c * g->oh * g->ow, 7, args);
}

/* gy, idx [n, c, oh, ow] -> gx [n, c, h, w] (overwritten) */
lunar_status ocl_max_pool2d_backward(lunar_tensor *gx, const lunar_tensor *gy,
                                     const lunar_tensor *idx, const lunar_conv_geom *g) {
    int k = 0;
    LUNAR_CHECK(float_slot("max_pool2d_backward", gx->dtype, &k));
    cl_mem xm = OCL_MEM(gx), ym = OCL_MEM(gy), im = OCL_MEM(idx);
    cl_long xo = gx->offset, yo = gy->offset, io = idx->offset;
    cl_long16 gv = geom_vec(g);
    ocl_karg args[] = {A(xm), A(xo), A(ym), A(yo), A(im), A(io), A(gv)};
    return ocl_launch(ocl_dev(gx), max_back_k[k], g->n * g->c * g->h * g->w, 7, args);
}

/* y [n, c, oh, ow] = average pool of x [n, c, h, w], fixed or adaptive windows */
static lunar_status avg_pool(const char *op, lunar_tensor *y, const lunar_tensor *x,
                             const lunar_conv_geom *g, cl_int adaptive) {
    int k = 0;
    LUNAR_CHECK(float_slot(op, x->dtype, &k));
    cl_mem ym = OCL_MEM(y), xm = OCL_MEM(x);
    cl_long yo = y->offset, xo = x->offset;
    cl_long16 gv = geom_vec(g);
    cl_int include_pad = g->count_include_pad;
    ocl_karg args[] = {A(ym), A(yo), A(xm), A(xo), A(gv), A(include_pad), A(adaptive)};
    return ocl_launch(ocl_dev(y), avg_pool_k[k], g->n * g->c * g->oh * g->ow, 7, args);
}

/* gx [n, c, h, w] (overwritten) from gy [n, c, oh, ow], fixed or adaptive windows */
static lunar_status avg_back(const char *op, lunar_tensor *gx, const lunar_tensor *gy,
                             const lunar_conv_geom *g, cl_int adaptive) {
    int k = 0;
    LUNAR_CHECK(float_slot(op, gx->dtype, &k));
    cl_mem xm = OCL_MEM(gx), ym = OCL_MEM(gy);
    cl_long xo = gx->offset, yo = gy->offset;
    cl_long16 gv = geom_vec(g);
    cl_int include_pad = g->count_include_pad;
    ocl_karg args[] = {A(xm), A(xo), A(ym), A(yo), A(gv), A(include_pad), A(adaptive)};
    return ocl_launch(ocl_dev(gx), avg_back_k[k], g->n * g->c * g->h * g->w, 7, args);
}

lunar_status ocl_avg_pool2d(lunar_tensor *y, const lunar_tensor *x, const lunar_conv_geom *g) {
    return avg_pool("avg_pool2d", y, x, g, 0);
}

lunar_status ocl_avg_pool2d_backward(lunar_tensor *gx, const lunar_tensor *gy,
                                     const lunar_conv_geom *g) {
    return avg_back("avg_pool2d_backward", gx, gy, g, 0);
}

lunar_status ocl_adaptive_avg_pool2d(lunar_tensor *y, const lunar_tensor *x,
                                     const lunar_conv_geom *g) {
    return avg_pool("adaptive_avg_pool2d", y, x, g, 1);
}

lunar_status ocl_adaptive_avg_pool2d_backward(lunar_tensor *gx, const lunar_tensor *gy,
                                              const lunar_conv_geom *g) {
    return avg_back("adaptive_avg_pool2d_backward", gx, gy, g, 1);
}
