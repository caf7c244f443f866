/*
 * runtime.c - the OpenCL devices: enumeration (no platform is not an error until a device
 * is asked for), one context and one in-order queue per device made on first use, status
 * names for messages, the buffer pool, host<->device transfers and kernel lookup.
 */
#include "opencl.h"

#include <stdlib.h>
#include <string.h>

static ocl_device *devices;
static int n_devices = -1; /* -1: not enumerated yet */

const char *ocl_status_name(cl_int err) {
    switch (err) {
#define N(x) case x: return #x
    N(CL_SUCCESS); N(CL_DEVICE_NOT_FOUND); N(CL_DEVICE_NOT_AVAILABLE);
    N(CL_COMPILER_NOT_AVAILABLE); N(CL_MEM_OBJECT_ALLOCATION_FAILURE);
    N(CL_OUT_OF_RESOURCES); N(CL_OUT_OF_HOST_MEMORY); N(CL_PROFILING_INFO_NOT_AVAILABLE);
    N(CL_MEM_COPY_OVERLAP); N(CL_IMAGE_FORMAT_MISMATCH); N(CL_IMAGE_FORMAT_NOT_SUPPORTED);
    N(CL_BUILD_PROGRAM_FAILURE); N(CL_MAP_FAILURE); N(CL_MISALIGNED_SUB_BUFFER_OFFSET);
    N(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST); N(CL_COMPILE_PROGRAM_FAILURE);
    N(CL_LINKER_NOT_AVAILABLE); N(CL_LINK_PROGRAM_FAILURE); N(CL_DEVICE_PARTITION_FAILED);
    N(CL_KERNEL_ARG_INFO_NOT_AVAILABLE); N(CL_INVALID_VALUE); N(CL_INVALID_DEVICE_TYPE);
    N(CL_INVALID_PLATFORM); N(CL_INVALID_DEVICE); N(CL_INVALID_CONTEXT);
    N(CL_INVALID_QUEUE_PROPERTIES); N(CL_INVALID_COMMAND_QUEUE); N(CL_INVALID_HOST_PTR);
    N(CL_INVALID_MEM_OBJECT); N(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR);
    N(CL_INVALID_IMAGE_SIZE); N(CL_INVALID_SAMPLER); N(CL_INVALID_BINARY);
    N(CL_INVALID_BUILD_OPTIONS); N(CL_INVALID_PROGRAM); N(CL_INVALID_PROGRAM_EXECUTABLE);
    N(CL_INVALID_KERNEL_NAME); N(CL_INVALID_KERNEL_DEFINITION); N(CL_INVALID_KERNEL);
    N(CL_INVALID_ARG_INDEX); N(CL_INVALID_ARG_VALUE); N(CL_INVALID_ARG_SIZE);
    N(CL_INVALID_KERNEL_ARGS); N(CL_INVALID_WORK_DIMENSION); N(CL_INVALID_WORK_GROUP_SIZE);
    N(CL_INVALID_WORK_ITEM_SIZE); N(CL_INVALID_GLOBAL_OFFSET); N(CL_INVALID_EVENT_WAIT_LIST);
    N(CL_INVALID_EVENT); N(CL_INVALID_OPERATION); N(CL_INVALID_GL_OBJECT);
    N(CL_INVALID_BUFFER_SIZE); N(CL_INVALID_MIP_LEVEL); N(CL_INVALID_GLOBAL_WORK_SIZE);
    N(CL_INVALID_PROPERTY); N(CL_INVALID_IMAGE_DESCRIPTOR); N(CL_INVALID_COMPILER_OPTIONS);
    N(CL_INVALID_LINKER_OPTIONS); N(CL_INVALID_DEVICE_PARTITION_COUNT);
#undef N
    case -1001: return "CL_PLATFORM_NOT_FOUND_KHR";
    default: return "an unknown OpenCL status";
    }
}

lunar_status ocl_fail(const char *call, cl_int err) {
    lunar_status st = err == CL_OUT_OF_HOST_MEMORY || err == CL_MEM_OBJECT_ALLOCATION_FAILURE ||
                              err == CL_OUT_OF_RESOURCES
                          ? LUNAR_ERR_MEMORY
                          : LUNAR_ERR_DEVICE;
    return lunar_fail(st, "opencl: %s failed: %s (%d)", call, ocl_status_name(err), (int)err);
}

/* ---- enumeration ---- */

static void enumerate(void) {
    n_devices = 0;
    cl_uint np = 0;
    /* the ICD loader answers CL_PLATFORM_NOT_FOUND_KHR when no driver is installed */
    if (clGetPlatformIDs(0, NULL, &np) != CL_SUCCESS || np == 0) return;
    cl_platform_id *plats = calloc(np, sizeof *plats);
    if (!plats || clGetPlatformIDs(np, plats, NULL) != CL_SUCCESS) {
        free(plats);
        return;
    }
    int total = 0;
    for (cl_uint p = 0; p < np; p++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) == CL_SUCCESS)
            total += (int)nd;
    }
    devices = total ? calloc((size_t)total, sizeof *devices) : NULL;
    for (cl_uint p = 0; p < np && devices; p++) {
        cl_uint nd = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &nd) != CL_SUCCESS || !nd)
            continue;
        cl_device_id ids[64];
        if (nd > 64) nd = 64;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, nd, ids, NULL) != CL_SUCCESS) continue;
        for (cl_uint k = 0; k < nd && n_devices < total; k++) {
            ocl_device *d = &devices[n_devices++];
            d->platform = plats[p];
            d->id = ids[k];
            clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof d->platform_name,
                              d->platform_name, NULL);
            clGetDeviceInfo(ids[k], CL_DEVICE_NAME, sizeof d->name, d->name, NULL);
            clGetDeviceInfo(ids[k], CL_DRIVER_VERSION, sizeof d->driver, d->driver, NULL);
            clGetDeviceInfo(ids[k], CL_DEVICE_TYPE, sizeof d->type, &d->type, NULL);
            clGetDeviceInfo(ids[k], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof d->global_mem,
                            &d->global_mem, NULL);
            cl_device_fp_config fp = 0;
            clGetDeviceInfo(ids[k], CL_DEVICE_DOUBLE_FP_CONFIG, sizeof fp, &fp, NULL);
            d->fp64 = fp != 0;
        }
    }
    free(plats);
}

int ocl_device_count(void) {
    if (n_devices < 0) enumerate();
    return n_devices;
}

const ocl_device *ocl_device_info(int i) {
    return i >= 0 && i < ocl_device_count() ? &devices[i] : NULL;
}

lunar_status ocl_device_get(int i, ocl_device **out) {
    int n = ocl_device_count();
    if (n == 0)
        return lunar_fail(LUNAR_ERR_DEVICE,
                          "opencl: no OpenCL device found (no platform; on Debian install an "
                          "OpenCL driver, e.g. pocl-opencl-icd, and check `clinfo -l`)");
    if (i < 0 || i >= n)
        return lunar_fail(LUNAR_ERR_DEVICE, "opencl: no device opencl:%d (%d device%s found)",
                          i + 1, n, n == 1 ? "" : "s");
    ocl_device *d = &devices[i];
    if (!d->ctx) {
        cl_int err;
        cl_context_properties props[] = {CL_CONTEXT_PLATFORM, (cl_context_properties)d->platform,
                                         0};
        d->ctx = clCreateContext(props, 1, &d->id, NULL, NULL, &err);
        if (err != CL_SUCCESS) {
            d->ctx = NULL;
            return ocl_fail("clCreateContext", err);
        }
        d->queue = clCreateCommandQueue(d->ctx, d->id, 0, &err); /* in order */
        if (err != CL_SUCCESS) {
            clReleaseContext(d->ctx);
            d->ctx = NULL;
            return ocl_fail("clCreateCommandQueue", err);
        }
    }
    if (!d->program) LUNAR_CHECK(ocl_program_build(d));
    *out = d;
    return LUNAR_OK;
}

lunar_status ocl_kernel(ocl_device *d, const char *name, cl_kernel *out) {
    for (int k = 0; k < d->n_kernels; k++) /* names are literals: the pointer decides */
        if (d->kernels[k].name == name || strcmp(d->kernels[k].name, name) == 0) {
            *out = d->kernels[k].k;
            return LUNAR_OK;
        }
    cl_int err;
    cl_kernel k = clCreateKernel(d->program, name, &err);
    if (err == CL_INVALID_KERNEL_NAME)
        return lunar_fail(LUNAR_ERR_UNSUPPORTED, "opencl: no kernel %s on %s (a float64 kernel "
                          "needs cl_khr_fp64)", name, d->name);
    if (err != CL_SUCCESS) return ocl_fail("clCreateKernel", err);
    if (d->n_kernels < OCL_MAX_KERNELS) {
        /* names are string literals of the backend: no copy needed */
        d->kernels[d->n_kernels].name = name;
        d->kernels[d->n_kernels++].k = k;
    }
    *out = k;
    return LUNAR_OK;
}

/* ---- memory: a pool of buffers by power-of-two size class (256 bytes up) ---- */

#define POOL_LIMIT ((int64_t)1 << 30)

static int size_class(size_t n, size_t *rounded) {
    int c = 0;
    size_t s = 256;
    while (s < n) {
        s <<= 1;
        c++;
    }
    *rounded = s;
    return c;
}

void ocl_pool_clear(void) {
    for (int i = 0; i < n_devices; i++)
        for (int c = 0; c < OCL_POOL_CLASSES; c++) {
            while (devices[i].pool[c]) {
                ocl_pooled *p = devices[i].pool[c];
                devices[i].pool[c] = p->next;
                clReleaseMemObject(p->mem);
                free(p);
            }
            devices[i].pooled_bytes = 0;
        }
}

static cl_mem create_buffer(ocl_device *d, size_t n, cl_int *err) {
    cl_mem m = clCreateBuffer(d->ctx, CL_MEM_READ_WRITE, n, NULL, err);
    return *err == CL_SUCCESS ? m : NULL;
}

void *ocl_alloc(int device, size_t nbytes) {
    ocl_device *d;
    if (ocl_device_get(device, &d) != LUNAR_OK) return NULL;
    size_t rounded;
    int c = size_class(nbytes ? nbytes : 1, &rounded);
    cl_mem m = NULL;
    if (c < OCL_POOL_CLASSES && d->pool[c]) {
        ocl_pooled *p = d->pool[c];
        d->pool[c] = p->next;
        m = p->mem;
        free(p);
        d->pooled_bytes -= (int64_t)rounded;
    } else {
        cl_int err;
        m = create_buffer(d, rounded, &err);
        if (!m) { /* give back what the pool and Lua's garbage hold, then once more */
            ocl_pool_clear();
            if (lunar_oom_handler) lunar_oom_handler();
            m = create_buffer(d, rounded, &err);
        }
        if (!m) return NULL;
    }
    lunar_live_bytes_add((int64_t)rounded);
    return m;
}

void ocl_free(int device, void *p, size_t nbytes) {
    if (!p) return;
    size_t rounded;
    int c = size_class(nbytes ? nbytes : 1, &rounded);
    lunar_live_bytes_add(-(int64_t)rounded);
    ocl_device *d = &devices[device];
    ocl_pooled *e = c < OCL_POOL_CLASSES && d->pooled_bytes + (int64_t)rounded <= POOL_LIMIT
                        ? malloc(sizeof *e)
                        : NULL;
    if (!e) {
        clReleaseMemObject((cl_mem)p);
        return;
    }
    e->mem = (cl_mem)p;
    e->next = d->pool[c];
    d->pool[c] = e;
    d->pooled_bytes += (int64_t)rounded;
}

/* Blocking: the caller may reuse src as soon as this returns. */
lunar_status ocl_write(lunar_storage *dst, size_t offset, const void *src, size_t n) {
    if (n == 0) return LUNAR_OK;
    ocl_device *d;
    LUNAR_CHECK(ocl_device_get(dst->device, &d));
    OCL_CHECK("clEnqueueWriteBuffer", clEnqueueWriteBuffer(d->queue, (cl_mem)dst->data, CL_TRUE,
                                                           offset, n, src, 0, NULL, NULL));
    return LUNAR_OK;
}

/* The sync point: waits for every kernel queued before it. */
lunar_status ocl_read(void *dst, const lunar_storage *src, size_t offset, size_t n) {
    if (n == 0) return LUNAR_OK;
    ocl_device *d;
    LUNAR_CHECK(ocl_device_get(src->device, &d));
    OCL_CHECK("clEnqueueReadBuffer", clEnqueueReadBuffer(d->queue, (cl_mem)src->data, CL_TRUE,
                                                         offset, n, dst, 0, NULL, NULL));
    return LUNAR_OK;
}

