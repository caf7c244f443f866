/*
 * ops_pending.c - ops whose families have not landed yet; each fails loudly.
 */
#include "lunar-impl.h"

lunar_status lunar_max_dim(lunar_tensor **values, lunar_tensor **indices, lunar_tensor *x,
                           int dim, bool keepdim, bool is_min) {
    (void)values, (void)indices, (void)x, (void)dim, (void)keepdim, (void)is_min;
    return lunar_fail(LUNAR_ERR_UNSUPPORTED, "max/min along a dim: not written yet");
}
