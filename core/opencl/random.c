/*
 * random.c - the OpenCL random entry: Philox draws by kernels/random.cl, one work-item per
 * Philox block, written straight through the output's strides. The stream is the one of
 * core/philox.h, so a (seed, offset) draws here what it draws on the CPU.
 */
#include "opencl.h"
#include "philox.h"

#include <math.h>

static const char *random_k[] = OCL_NAMES(random);

/* out: any shape, dtype and strides; element i (row-major) gets the stream's element i */
lunar_status ocl_random(lunar_tensor *out, int dist, uint64_t seed, uint64_t offset, double a,
                        double b) {
    if (dist < LUNAR_RANDOM_UNIFORM || dist > LUNAR_RANDOM_BERNOULLI)
        return lunar_fail(LUNAR_ERR_ARG, "random: unknown distribution %d", dist);
    const lunar_tensor *ts[1] = {out};
    ocl_geom g;
    ocl_geom_init(&g, 1, ts);
    int per = philox_per_block(dist, out->dtype == LUNAR_F64);
    int64_t nb = (g.n + per - 1) / per;
    /* the integer draw's bounds as cpu/random.c takes them (the op layer keeps them within
     * +-2^53); bernoulli's u < p on a 53-bit u = k 2^-53 is k < ceil(p 2^53), exactly */
    cl_long lo = 0;
    cl_ulong range = 0, thresh = 0;
    if (dist == LUNAR_RANDOM_INTEGER) {
        lo = (int64_t)a;
        range = (uint64_t)((int64_t)b - lo);
    } else if (dist == LUNAR_RANDOM_BERNOULLI && a > 0) {
        thresh = a >= 1 ? (1ull << 53) : (cl_ulong)ceil(a * 0x1p53);
    }
    cl_mem o = OCL_MEM(out);
    cl_long oo = out->offset, n = g.n;
    cl_int nd = g.nd, cdist = dist;
    cl_ulong cseed = seed, coff = offset;
    ocl_scalar sa, sb;
    ocl_karg args[] = {A(o),     A(oo),    A(g.strides[0]), A(n), A(nd), A(g.shape), A(cdist),
                       A(cseed), A(coff),  ocl_acc_arg(&sa, out, a), ocl_acc_arg(&sb, out, b),
                       A(lo),    A(range), A(thresh)};
    return ocl_launch(ocl_dev(out), random_k[out->dtype], nb, 14, args);
}
