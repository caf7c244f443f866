/*
 * backend.c - the OpenCL filling of struct lunar_backend: kernel launches for copy, fill,
 * arange, unary, binary, where and reduce (the kernels/.cl files), and GEMM on CLBlast.
 * Nothing here waits: kernels queue in order, and a host read (ocl_read) is the only sync
 * point.
 */
#include "opencl.h"

#include <clblast_c.h>
#include <math.h>
#include <string.h>

static const char *copy_k[] = OCL_NAMES(copy), *fill_k[] = OCL_NAMES(fill),
                  *arange_k[] = OCL_NAMES(arange), *unary_k[] = OCL_NAMES(unary),
                  *binary_k[] = OCL_NAMES(binary), *compare_k[] = OCL_NAMES(compare),
                  *where_k[] = OCL_NAMES(where), *reduce_k[] = OCL_NAMES(reduce);

/* ---- the element-wise families ---- */

/* dst [shape] = (dst dtype) src [shape] */
static lunar_status ocl_copy(lunar_tensor *dst, const lunar_tensor *src) {
    const lunar_tensor *ts[2] = {dst, src};
    ocl_geom g;
    ocl_geom_init(&g, 2, ts);
    cl_mem o = OCL_MEM(dst), x = OCL_MEM(src);
    cl_long oo = dst->offset, xo = src->offset, n = g.n;
    cl_int xdt = src->dtype, nd = g.nd;
    ocl_karg args[] = {A(o), A(oo), A(g.strides[0]), A(x), A(xo), A(g.strides[1]), A(xdt),
                       A(n), A(nd), A(g.shape)};
    return ocl_launch(ocl_dev(dst), copy_k[dst->dtype], g.n, 10, args);
}

/* dst [shape] = value */
static lunar_status ocl_fill(lunar_tensor *dst, double value) {
    const lunar_tensor *ts[1] = {dst};
    ocl_geom g;
    ocl_geom_init(&g, 1, ts);
    cl_mem o = OCL_MEM(dst);
    cl_long oo = dst->offset, n = g.n;
    cl_int nd = g.nd;
    ocl_scalar v;
    ocl_karg args[] = {A(o), A(oo), A(g.strides[0]), ocl_scalar_arg(&v, dst->dtype, value),
                       A(n), A(nd), A(g.shape)};
    return ocl_launch(ocl_dev(dst), fill_k[dst->dtype], g.n, 7, args);
}

/* out [n] contiguous = start + i * step */
static lunar_status ocl_arange(lunar_tensor *out, double start, double step) {
    cl_mem o = OCL_MEM(out);
    cl_long oo = out->offset, n = lunar_tensor_numel(out);
    ocl_scalar a, b;
    ocl_karg args[] = {A(o), A(oo), ocl_acc_arg(&a, out, start), ocl_acc_arg(&b, out, step), A(n)};
    return ocl_launch(ocl_dev(out), arange_k[out->dtype], n, 5, args);
}

/* out [shape] = op(x [shape]); out may be x */
static lunar_status ocl_unary(lunar_unary_op op, lunar_tensor *out, const lunar_tensor *x,
                              const double *params) {
    const lunar_tensor *ts[2] = {out, x};
    ocl_geom g;
    ocl_geom_init(&g, 2, ts);
    cl_mem o = OCL_MEM(out), xm = OCL_MEM(x);
    cl_long oo = out->offset, xo = x->offset, n = g.n;
    double lo = params ? params[0] : -INFINITY, hi = params ? params[1] : INFINITY;
    /* integer clamps: an infinite bound means none (the CPU's rule) */
    cl_int nd = g.nd, cop = op, has_lo = !(lo < -9.2e18), has_hi = !(hi > 9.2e18);
    if (lunar_dtype_is_float(x->dtype)) has_lo = has_hi = 1;
    ocl_scalar l, h;
    ocl_karg args[] = {A(o),  A(oo), A(g.strides[0]), A(xm), A(xo), A(g.strides[1]), A(n),
                       A(nd), A(g.shape), A(cop), ocl_scalar_arg(&l, x->dtype, has_lo ? lo : 0),
                       ocl_scalar_arg(&h, x->dtype, has_hi ? hi : 0), A(has_lo), A(has_hi)};
    return ocl_launch(ocl_dev(out), unary_k[x->dtype], g.n, 14, args);
}

/* out [shape] = a op b, a and b broadcast views of out's shape */
static lunar_status ocl_binary(lunar_binary_op op, lunar_tensor *out, const lunar_tensor *a,
                               const lunar_tensor *b) {
    const lunar_tensor *ts[3] = {out, a, b};
    ocl_geom g;
    ocl_geom_init(&g, 3, ts);
    cl_mem o = OCL_MEM(out), am = OCL_MEM(a), bm = OCL_MEM(b);
    cl_long oo = out->offset, ao = a->offset, bo = b->offset, n = g.n;
    cl_int nd = g.nd, cop = op;
    ocl_karg args[] = {A(o),  A(oo), A(g.strides[0]), A(am), A(ao),      A(g.strides[1]), A(bm),
                       A(bo), A(g.strides[2]), A(n),  A(nd), A(g.shape), A(cop)};
    bool cmp = op >= LUNAR_OP_EQ;
    return ocl_launch(ocl_dev(out), (cmp ? compare_k : binary_k)[a->dtype], g.n, 13, args);
}

/* out [shape] = cond ? a : b */
static lunar_status ocl_where(lunar_tensor *out, const lunar_tensor *cond, const lunar_tensor *a,
                              const lunar_tensor *b) {
    const lunar_tensor *ts[4] = {out, cond, a, b};
    ocl_geom g;
    ocl_geom_init(&g, 4, ts);
    cl_mem o = OCL_MEM(out), cm = OCL_MEM(cond), am = OCL_MEM(a), bm = OCL_MEM(b);
    cl_long oo = out->offset, co = cond->offset, ao = a->offset, bo = b->offset, n = g.n;
    cl_int nd = g.nd;
    ocl_karg args[] = {A(o),  A(oo), A(g.strides[0]), A(cm), A(co),          A(g.strides[1]),
                       A(am), A(ao), A(g.strides[2]), A(bm), A(bo),          A(g.strides[3]),
                       A(n),  A(nd), A(g.shape)};
    return ocl_launch(ocl_dev(out), where_k[out->dtype], g.n, 15, args);
}

/* ---- reductions: x [...] -> out [...] with 1 in the dims of the mask ---- */

static const char *reduce_partial_k[] = OCL_NAMES(reduce_partial);

/* gk: kept dims (x's strides, out's strides), gr: reduced dims (x's strides) */
static lunar_status reduce_two_stage(lunar_reduce_op op, lunar_tensor *out,
                                     const lunar_tensor *x, const ocl_geom *gk,
                                     const ocl_geom *gr, cl_long parts, double param,
                                     cl_int exact) {
    int dev = ocl_dev(x);
    size_t acc_size = ocl_dev_fp64(x) ? 8 : 4, n = (size_t)(gk->n * parts);
    cl_mem part = ocl_alloc(dev, n * acc_size), ip = ocl_alloc(dev, n * 8);
    lunar_status st = LUNAR_OK;
    if (!part || !ip) {
        st = lunar_fail(LUNAR_ERR_MEMORY, "reduce: out of device memory for %zu partials", n);
    } else {
        cl_mem xm = OCL_MEM(x), o = OCL_MEM(out);
        cl_int nk = gk->nd, nr = gr->nd, cop = op, odt = out->dtype;
        cl_long xo = x->offset, oo = out->offset, n_out = gk->n, count = gr->n;
        ocl_scalar p1, p2;
        ocl_karg a1[] = {A(part), A(ip),  A(xm),           A(xo),        A(gk->strides[0]),
                         A(gr->strides[0]), A(n_out), A(nk), A(gk->shape), A(count),
                         A(nr), A(gr->shape), A(cop), ocl_acc_arg(&p1, x, param), A(parts)};
        st = ocl_launch(dev, reduce_partial_k[x->dtype], n_out * parts, 15, a1);
        ocl_karg a2[] = {A(o),     A(odt),  A(oo),    A(gk->strides[1]), A(nk), A(gk->shape),
                         A(part),  A(ip),   A(n_out), A(parts),          A(count), A(cop),
                         ocl_acc_arg(&p2, x, param), A(exact)};
        if (st == LUNAR_OK) st = ocl_launch(dev, "reduce_combine", n_out, 14, a2);
    }
    /* the queue is in order: a buffer handed back here is reused only by later kernels */
    ocl_free(dev, part, n * acc_size);
    ocl_free(dev, ip, n * 8);
    return st;
}

static lunar_status ocl_reduce(lunar_reduce_op op, lunar_tensor *out, const lunar_tensor *x,
                               uint32_t dims, double param) {
    /* kept dims: shape, x's strides, out's strides; reduced dims: shape, x's strides */
    lunar_tensor kept = {0}, outk = {0}, red = {0};
    for (int d = 0; d < x->ndim; d++) {
        lunar_tensor *t = (dims >> d) & 1 ? &red : &kept;
        t->shape[t->ndim] = x->shape[d];
        t->strides[t->ndim] = x->strides[d];
        t->ndim++;
        if (!((dims >> d) & 1)) {
            outk.shape[outk.ndim] = out->shape[d];
            outk.strides[outk.ndim++] = out->strides[d];
        }
    }
    outk.storage = out->storage;
    kept.storage = red.storage = x->storage;
    const lunar_tensor *kt[2] = {&kept, &outk}, *rt[1] = {&red};
    ocl_geom gk, gr;
    ocl_geom_init(&gk, 2, kt);
    ocl_geom_init(&gr, 1, rt);
    cl_mem o = OCL_MEM(out), xm = OCL_MEM(x);
    cl_int odt = out->dtype, nk = gk.nd, nr = gr.nd, cop = op;
    cl_int exact = !lunar_dtype_is_float(x->dtype) &&
                   (op == LUNAR_OP_SUM || op == LUNAR_OP_PROD);
    cl_long oo = out->offset, xo = x->offset, n_out = gk.n, count = gr.n;
    if (n_out == 0) return LUNAR_OK; /* e.g. a [0, 4] summed over dim 2 */
    /* few long reductions: split each into parts (see reduce.cl), about 4096 work-items
     * in all and at least 512 elements a part */
    cl_long parts = n_out < 4096 ? 4096 / n_out : 1;
    if (parts > count / 512) parts = count / 512;
    if (parts >= 2 && op != LUNAR_OP_LOGSUMEXP && op != LUNAR_OP_VAR)
        return reduce_two_stage(op, out, x, &gk, &gr, parts, param, exact);
    ocl_scalar p;
    ocl_karg args[] = {A(o),     A(odt), A(oo),       A(gk.strides[1]), A(xm),       A(xo),
                       A(gk.strides[0]), A(gr.strides[0]), A(n_out), A(nk), A(gk.shape), A(count),
                       A(nr),    A(gr.shape), A(cop), ocl_acc_arg(&p, x, param), A(exact)};
    return ocl_launch(ocl_dev(out), reduce_k[x->dtype], n_out, 17, args);
}

/* ---- GEMM on CLBlast ---- */

static const char *clblast_status(CLBlastStatusCode s) {
    return s > -1000 ? ocl_status_name((cl_int)s) : "a CLBlast status";
}

/* The row-major BLAS view of t's last two dims (t: [B, R, C]). */
static bool blas_layout(const lunar_tensor *t, CLBlastTranspose *trans, size_t *ld) {
    int64_t rows = t->shape[1], cols = t->shape[2], rs = t->strides[1], cs = t->strides[2];
    if (rows == 0 || cols == 0) { /* nothing is read or written: an empty [M, 0] has rs 0 */
        *trans = CLBlastTransposeNo;
        *ld = (size_t)(cols > 1 ? cols : 1);
        return true;
    }
    if ((cs == 1 || cols == 1) && (rs >= (cols > 1 ? cols : 1) || rows == 1)) {
        *trans = CLBlastTransposeNo;
        *ld = (size_t)(rows == 1 ? (cols > 1 ? cols : 1) : rs);
        return true;
    }
    if ((rs == 1 || rows == 1) && (cs >= (rows > 1 ? rows : 1) || cols == 1)) {
        *trans = CLBlastTransposeYes;
        *ld = (size_t)(cols == 1 ? (rows > 1 ? rows : 1) : cs);
        return true;
    }
    return false;
}

/* c [B, M, N] = alpha * a [B, M, K] @ b [B, K, N] + beta * c; batch strides may be 0 */
static lunar_status ocl_gemm(lunar_tensor *c, const lunar_tensor *a, const lunar_tensor *b,
                             double alpha, double beta) {
    CLBlastTranspose ta, tb, tc;
    size_t lda, ldb, ldc;
    if (!blas_layout(a, &ta, &lda) || !blas_layout(b, &tb, &ldb) || !blas_layout(c, &tc, &ldc) ||
        tc != CLBlastTransposeNo)
        return lunar_fail(LUNAR_ERR_ARG, "gemm: operands need one unit stride in their last two "
                                         "dims");
    if (c->dtype != LUNAR_F32 && c->dtype != LUNAR_F64)
        return lunar_fail(LUNAR_ERR_DTYPE, "gemm: %s is not a float type",
                          lunar_dtype_name(c->dtype));
    size_t B = (size_t)c->shape[0], M = (size_t)c->shape[1], N = (size_t)c->shape[2],
           K = (size_t)a->shape[2];
    if (M == 0 || N == 0 || B == 0) return LUNAR_OK;
    if (K == 0) { /* BLAS libraries differ on k = 0: c = beta * c by hand */
        if (beta == 0) return ocl_fill(c, 0);
        lunar_tensor *s;
        LUNAR_CHECK(lunar_tensor_new(&s, 0, NULL, c->dtype, c));
        lunar_status st = ocl_fill(s, beta);
        if (st == LUNAR_OK) {
            lunar_tensor *v = lunar_broadcast_view(s, c->ndim, c->shape);
            st = v ? ocl_binary(LUNAR_OP_MUL, c, c, v) : LUNAR_ERR_MEMORY;
            lunar_tensor_release(v);
        }
        lunar_tensor_release(s);
        return st;
    }
    ocl_device *d;
    LUNAR_CHECK(ocl_device_get(ocl_dev(c), &d));
    cl_mem am = OCL_MEM(a), bm = OCL_MEM(b), cm = OCL_MEM(c);
    size_t ao = (size_t)a->offset, bo = (size_t)b->offset, co = (size_t)c->offset;
    size_t sa = (size_t)a->strides[0], sb = (size_t)b->strides[0], sc = (size_t)c->strides[0];
    CLBlastStatusCode s;
    const char *call;
    if (B == 1 && c->dtype == LUNAR_F32) {
        call = "CLBlastSgemm";
        s = CLBlastSgemm(CLBlastLayoutRowMajor, ta, tb, M, N, K, (float)alpha, am, ao, lda, bm,
                         bo, ldb, (float)beta, cm, co, ldc, &d->queue, NULL);
    } else if (B == 1) {
        call = "CLBlastDgemm";
        s = CLBlastDgemm(CLBlastLayoutRowMajor, ta, tb, M, N, K, alpha, am, ao, lda, bm, bo, ldb,
                         beta, cm, co, ldc, &d->queue, NULL);
    } else if (c->dtype == LUNAR_F32) {
        call = "CLBlastSgemmStridedBatched";
        s = CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, ta, tb, M, N, K, (float)alpha, am,
                                       ao, lda, sa, bm, bo, ldb, sb, (float)beta, cm, co, ldc, sc,
                                       B, &d->queue, NULL);
    } else {
        call = "CLBlastDgemmStridedBatched";
        s = CLBlastDgemmStridedBatched(CLBlastLayoutRowMajor, ta, tb, M, N, K, alpha, am, ao,
                                       lda, sa, bm, bo, ldb, sb, beta, cm, co, ldc, sc, B,
                                       &d->queue, NULL);
    }
    if (s != CLBlastSuccess)
        return lunar_fail(s == CLBlastOpenCLOutOfResources || s == CLBlastOpenCLOutOfHostMemory ||
                                  s == -4 /* CL_MEM_OBJECT_ALLOCATION_FAILURE */
                              ? LUNAR_ERR_MEMORY
                              : LUNAR_ERR_DEVICE,
                          "opencl: %s failed: %s (%d)", call, clblast_status(s), (int)s);
    return LUNAR_OK;
}

/* Entries left out (NULL) fail with LUNAR_ERR_UNSUPPORTED in the op layer (LUNAR_KERNEL);
 * tests/opencl_spec.lua lists them, so adding a kernel means updating that list. Each op
 * family's host code is a file of its own (index.c, conv.c, ...) declaring its entries in
 * opencl.h. */
const lunar_backend lunar_opencl_backend = {
    .name = "opencl",
    .alloc = ocl_alloc,
    .free = ocl_free,
    .write = ocl_write,
    .read = ocl_read,
    .copy = ocl_copy,
    .fill = ocl_fill,
    .arange = ocl_arange,
    .unary = ocl_unary,
    .binary = ocl_binary,
    .where = ocl_where,
    .reduce = ocl_reduce,
    .gemm = ocl_gemm,

    /* index.c: arg_reduce, scan, gather, scatter, index_select, index_add, sort,
     * count_nonzero, nonzero */
    .arg_reduce = ocl_arg_reduce,
    .scan = ocl_scan,
    .gather = ocl_gather,
    .scatter = ocl_scatter,
    .index_select = ocl_index_select,
    .index_add = ocl_index_add,
    .sort = ocl_sort,
    .count_nonzero = ocl_count_nonzero,
    .nonzero = ocl_nonzero,


    /* conv.c: im2col, col2im, the pools and their backward */
    .im2col = ocl_im2col,
    .col2im = ocl_col2im,
    .max_pool2d = ocl_max_pool2d,
    .max_pool2d_backward = ocl_max_pool2d_backward,
    .avg_pool2d = ocl_avg_pool2d,
    .avg_pool2d_backward = ocl_avg_pool2d_backward,
    .adaptive_avg_pool2d = ocl_adaptive_avg_pool2d,
    .adaptive_avg_pool2d_backward = ocl_adaptive_avg_pool2d_backward,


    /* nn.c: softmax, cross_entropy, moments, normalize and their backward */
    .softmax = ocl_softmax,
    .softmax_backward = ocl_softmax_backward,
    .cross_entropy = ocl_cross_entropy,
    .cross_entropy_backward = ocl_cross_entropy_backward,
    .moments = ocl_moments,
    .normalize = ocl_normalize,
    .normalize_backward = ocl_normalize_backward,


    /* random.c, optim.c */
    .random = ocl_random,
    .optim_step = ocl_optim_step,

};
