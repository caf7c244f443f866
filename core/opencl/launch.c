/*
 * launch.c - what every OpenCL op family's host code shares: operand geometry (shape plus
 * one stride vector per operand, dims merged where every operand allows), kernel argument
 * lists, scalars in a kernel's element type, and the launch itself.
 */
#include "opencl.h"

#include <string.h>

/* The operands share ts[0]'s shape. Size-1 dims go; a dim folds into the next inner one
 * when every operand steps over it as over one long row, so contiguous ops get nd = 1. */
void ocl_geom_init(ocl_geom *g, int nt, const lunar_tensor *const *ts) {
    const lunar_tensor *t0 = ts[0];
    memset(g, 0, sizeof *g);
    g->nt = nt;
    g->n = lunar_tensor_numel(t0);
    int64_t sh[LUNAR_MAX_DIMS], st[OCL_MAX_OPERANDS][LUNAR_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < t0->ndim; d++) {
        if (t0->shape[d] == 1) continue;
        sh[nd] = t0->shape[d];
        for (int k = 0; k < nt; k++)
            st[k][nd] = ts[k]->strides[d];
        nd++;
    }
    /* merge from the inside out */
    int m = 0;
    for (int d = 0; d < nd; d++) {
        if (m > 0) {
            bool fold = true;
            for (int k = 0; k < nt; k++)
                if (st[k][m - 1] != st[k][d] * sh[d]) fold = false;
            if (fold) {
                sh[m - 1] *= sh[d];
                for (int k = 0; k < nt; k++)
                    st[k][m - 1] = st[k][d];
                continue;
            }
        }
        sh[m] = sh[d];
        for (int k = 0; k < nt; k++)
            st[k][m] = st[k][d];
        m++;
    }
    if (m == 0) {
        m = 1;
        sh[0] = 1;
        for (int k = 0; k < nt; k++)
            st[k][0] = 0;
    }
    g->nd = m;
    for (int d = 0; d < LUNAR_MAX_DIMS; d++) {
        g->shape.s[d] = d < m ? sh[d] : 1;
        for (int k = 0; k < nt; k++)
            g->strides[k].s[d] = d < m ? st[k][d] : 0;
    }
}

lunar_status ocl_launch_wg(int device, const char *name, size_t global, size_t local, int nargs,
                           const ocl_karg *args) {
    if (global == 0) return LUNAR_OK;
    ocl_device *d;
    cl_kernel k;
    LUNAR_CHECK(ocl_device_get(device, &d));
    LUNAR_CHECK(ocl_kernel(d, name, &k));
    for (int i = 0; i < nargs; i++)
        OCL_CHECK(name, clSetKernelArg(k, (cl_uint)i, args[i].size, args[i].p));
    if (local) global = (global + local - 1) / local * local;
    OCL_CHECK("clEnqueueNDRangeKernel",
              clEnqueueNDRangeKernel(d->queue, k, 1, NULL, &global, local ? &local : NULL, 0, NULL,
                                     NULL));
    return LUNAR_OK;
}

lunar_status ocl_launch(int device, const char *name, int64_t n, int nargs, const ocl_karg *args) {
    if (n <= 0) return LUNAR_OK;
    return ocl_launch_wg(device, name, ((size_t)n + 63) / 64 * 64, 0, nargs, args);
}

bool ocl_dev_fp64(const lunar_tensor *t) {
    const ocl_device *d = ocl_device_info(ocl_dev(t));
    return d && d->fp64;
}

ocl_karg ocl_scalar_arg(ocl_scalar *s, lunar_dtype dt, double v) {
    switch (dt) {
    case LUNAR_BOOL:
        s->u8 = v != 0;
        return (ocl_karg){1, s};
    case LUNAR_U8:
        s->u8 = (uint8_t)(int64_t)v;
        return (ocl_karg){1, s};
    case LUNAR_I32:
        s->i32 = (int32_t)v;
        return (ocl_karg){4, s};
    case LUNAR_I64:
        s->i64 = (int64_t)v;
        return (ocl_karg){8, s};
    case LUNAR_F32:
        s->f32 = (float)v;
        return (ocl_karg){4, s};
    default:
        s->f64 = v;
        return (ocl_karg){8, s};
    }
}

ocl_karg ocl_acc_arg(ocl_scalar *s, const lunar_tensor *t, double v) {
    return ocl_scalar_arg(s, ocl_dev_fp64(t) ? LUNAR_F64 : LUNAR_F32, v);
}
