/*
 * pending.c - kernels not written yet; each one is removed from here when its family's
 * file lands. Everything here fails loudly with LUNAR_ERR_UNSUPPORTED.
 */
#include "cpu.h"

#define PENDING(name) lunar_fail(LUNAR_ERR_UNSUPPORTED, "cpu: no %s kernel yet", name)

lunar_status cpu_arg_reduce(lunar_tensor *values, lunar_tensor *indices, const lunar_tensor *x,
                            int dim, bool is_min) {
    (void)values, (void)indices, (void)x, (void)dim, (void)is_min;
    return PENDING("arg_reduce");
}
lunar_status cpu_scan(lunar_tensor *out, const lunar_tensor *x, int dim, bool is_prod) {
    (void)out, (void)x, (void)dim, (void)is_prod;
    return PENDING("scan");
}
lunar_status cpu_random(lunar_tensor *out, int dist, uint64_t seed, uint64_t offset, double a,
                        double b) {
    (void)out, (void)dist, (void)seed, (void)offset, (void)a, (void)b;
    return PENDING("random");
}
