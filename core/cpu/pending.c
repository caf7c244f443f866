/*
 * pending.c - kernels not written yet; each one is removed from here when its family's
 * file lands. Everything here fails loudly with LUNAR_ERR_UNSUPPORTED.
 */
#include "cpu.h"

#define PENDING(name) lunar_fail(LUNAR_ERR_UNSUPPORTED, "cpu: no %s kernel yet", name)

lunar_status cpu_gather(lunar_tensor *out, const lunar_tensor *x, int dim,
                        const lunar_tensor *index) {
    (void)out, (void)x, (void)dim, (void)index;
    return PENDING("gather");
}
lunar_status cpu_scatter(lunar_tensor *dst, int dim, const lunar_tensor *index,
                         const lunar_tensor *src, bool accumulate) {
    (void)dst, (void)dim, (void)index, (void)src, (void)accumulate;
    return PENDING("scatter");
}
lunar_status cpu_index_select(lunar_tensor *out, const lunar_tensor *x, int dim,
                              const lunar_tensor *index) {
    (void)out, (void)x, (void)dim, (void)index;
    return PENDING("index_select");
}
lunar_status cpu_index_add(lunar_tensor *dst, int dim, const lunar_tensor *index,
                           const lunar_tensor *src, double alpha) {
    (void)dst, (void)dim, (void)index, (void)src, (void)alpha;
    return PENDING("index_add");
}
lunar_status cpu_sort(lunar_tensor *values, lunar_tensor *indices, const lunar_tensor *x,
                      int dim, bool descending) {
    (void)values, (void)indices, (void)x, (void)dim, (void)descending;
    return PENDING("sort");
}
lunar_status cpu_count_nonzero(int64_t *count, const lunar_tensor *x) {
    (void)count, (void)x;
    return PENDING("count_nonzero");
}
lunar_status cpu_nonzero(lunar_tensor *out, const lunar_tensor *x) {
    (void)out, (void)x;
    return PENDING("nonzero");
}
