/*
 * opencl.h - what the OpenCL backend's files share: the device table (one context, one
 * in-order queue and one program per device, made on first use), error reporting with the
 * status name, the buffer pool, and kernel lookup.
 */
#ifndef LUNAR_OPENCL_H
#define LUNAR_OPENCL_H

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include "../lunar-impl.h"

#define OCL_POOL_CLASSES 48
#define OCL_MAX_KERNELS 64

typedef struct ocl_pooled {
    cl_mem mem;
    struct ocl_pooled *next;
} ocl_pooled;

typedef struct ocl_device {
    cl_platform_id platform;
    cl_device_id id;
    char name[256], platform_name[256], driver[128];
    cl_device_type type;
    cl_ulong global_mem;
    bool fp64;
    /* made on first use */
    cl_context ctx;
    cl_command_queue queue;
    cl_program program;
    struct {
        const char *name;
        cl_kernel k;
    } kernels[OCL_MAX_KERNELS];
    int n_kernels;
    ocl_pooled *pool[OCL_POOL_CLASSES]; /* free buffers by size class */
    int64_t pooled_bytes;
} ocl_device;

/* The number of OpenCL devices over all platforms (0 when there is no platform). */
int ocl_device_count(void);
/* Device i (0-based) with its context, queue and program ready. */
lunar_status ocl_device_get(int i, ocl_device **out);
/* Device i's description only (no context). */
const ocl_device *ocl_device_info(int i);
/* "CL_OUT_OF_RESOURCES", ... */
const char *ocl_status_name(cl_int err);
/* Fails with a message naming the call and the status. */
lunar_status ocl_fail(const char *call, cl_int err);
#define OCL_CHECK(call, expr)                                                                 \
    do {                                                                                      \
        cl_int e_ = (expr);                                                                   \
        if (e_ != CL_SUCCESS) return ocl_fail(call, e_);                                      \
    } while (0)
/* The kernel of that name in the device's program (made once, then reused). */
lunar_status ocl_kernel(ocl_device *d, const char *name, cl_kernel *out);
/* Builds (or loads from the on-disk cache) the device's program. */
lunar_status ocl_program_build(ocl_device *d);
/* Releases the pooled buffers of every device. */
void ocl_pool_clear(void);
/* the backend's memory entries */
void *ocl_alloc(int device, size_t nbytes);
void ocl_free(int device, void *p, size_t nbytes);
lunar_status ocl_write(lunar_storage *dst, size_t offset, const void *src, size_t n);
lunar_status ocl_read(void *dst, const lunar_storage *src, size_t offset, size_t n);
/* The cl_mem of a tensor's storage. */
#define OCL_MEM(t) ((cl_mem)(t)->storage->data)

extern const char lunar_opencl_source[];

#endif
