/*
 * device.c - devices as the core sees them: names ("cpu", "opencl", "opencl:N" with N
 * 1-based), moving tensors between devices (autograd-tracked), and the OpenCL device list.
 * Built with or without the OpenCL backend (LUNAR_OPENCL); without it, asking for an
 * OpenCL device fails with a message that says so.
 */
#include "lunar-impl.h"

#include <stdlib.h>
#include <string.h>

#ifdef LUNAR_OPENCL
#include "opencl/opencl.h"
#endif

int lunar_opencl_device_count(void) {
#ifdef LUNAR_OPENCL
    return ocl_device_count();
#else
    return 0;
#endif
}

void lunar_opencl_empty_cache(void) {
#ifdef LUNAR_OPENCL
    ocl_pool_clear();
#endif
}

lunar_status lunar_opencl_device_info(int i, lunar_device_info *info) {
#ifdef LUNAR_OPENCL
    const ocl_device *d = ocl_device_info(i);
    if (!d) return lunar_fail(LUNAR_ERR_DEVICE, "devices: no OpenCL device %d", i + 1);
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "%s", d->name);
    snprintf(info->platform, sizeof info->platform, "%s", d->platform_name);
    snprintf(info->driver, sizeof info->driver, "%s", d->driver);
    snprintf(info->type, sizeof info->type, "%s",
             d->type & CL_DEVICE_TYPE_GPU           ? "gpu"
             : d->type & CL_DEVICE_TYPE_CPU         ? "cpu"
             : d->type & CL_DEVICE_TYPE_ACCELERATOR ? "accelerator"
                                                    : "other");
    info->global_mem = (int64_t)d->global_mem;
    info->fp64 = d->fp64;
    return LUNAR_OK;
#else
    (void)info;
    return lunar_fail(LUNAR_ERR_DEVICE, "devices: lunar was built without OpenCL (OPENCL=0)");
#endif
}

lunar_status lunar_device_parse(const char *name, const lunar_backend **be, int *device) {
    if (strcmp(name, "cpu") == 0) {
        *be = &lunar_cpu_backend;
        *device = 0;
        return LUNAR_OK;
    }
    long n = 1;
    if (strncmp(name, "opencl", 6) == 0 && (name[6] == 0 || name[6] == ':')) {
        if (name[6] == ':') {
            char *end;
            n = strtol(name + 7, &end, 10);
            if (end == name + 7 || *end || n < 1)
                return lunar_fail(LUNAR_ERR_ARG, "device: bad device '%s' (opencl:N counts "
                                  "from 1)", name);
        }
#ifdef LUNAR_OPENCL
        ocl_device *d;
        LUNAR_CHECK(ocl_device_get((int)n - 1, &d));
        *be = &lunar_opencl_backend;
        *device = (int)n - 1;
        return LUNAR_OK;
#else
        return lunar_fail(LUNAR_ERR_DEVICE, "device: lunar was built without OpenCL "
                          "(OPENCL=0), so '%s' is not available", name);
#endif
    }
    return lunar_fail(LUNAR_ERR_ARG, "device: unknown device '%s' (cpu, opencl or opencl:N)",
                      name);
}

char *lunar_tensor_device_name(const lunar_tensor *t, char *buf, size_t n) {
    if (t->storage->backend == &lunar_cpu_backend) snprintf(buf, n, "cpu");
    else snprintf(buf, n, "%s:%d", t->storage->backend->name, t->storage->device + 1);
    return buf;
}

lunar_status lunar_raw_to(lunar_tensor **out, const lunar_tensor *x, const lunar_backend *be,
                          int device) {
    const lunar_backend *xb = x->storage->backend;
    lunar_tensor *c = NULL, *r = NULL;
    void *host = NULL;
    lunar_status st;
    LUNAR_GOTO(lunar_raw_contiguous(&c, x));
    LUNAR_GOTO(lunar_tensor_new_on(&r, x->ndim, x->shape, x->dtype, be, device));
    size_t es = lunar_dtype_size(x->dtype), n = (size_t)lunar_tensor_numel(x) * es;
    size_t off = (size_t)c->offset * es;
    if (xb == &lunar_cpu_backend) {
        LUNAR_GOTO(be->write(r->storage, 0, lunar_tensor_data(c), n));
    } else if (be == &lunar_cpu_backend) {
        LUNAR_GOTO(xb->read(r->storage->data, c->storage, off, n));
    } else { /* between two devices: through the host */
        host = malloc(n ? n : 1);
        if (!host) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "to: out of memory"));
        LUNAR_GOTO(xb->read(host, c->storage, off, n));
        LUNAR_GOTO(be->write(r->storage, 0, host, n));
    }
done:
    free(host);
    lunar_tensor_release(c);
    if (st != LUNAR_OK) lunar_tensor_release(r);
    else *out = r;
    return st;
}

/* the gradient goes back to where the input lives: i[0] 0 = cpu, 1 = opencl; i[1] device */
static lunar_status to_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    const lunar_backend *be = &lunar_cpu_backend;
#ifdef LUNAR_OPENCL
    if (n->i[0] == 1) be = &lunar_opencl_backend;
#endif
    return lunar_raw_to(&gi[0], g, be, (int)n->i[1]);
}

lunar_status lunar_to_device(lunar_tensor **out, lunar_tensor *x, const char *device) {
    const lunar_backend *be;
    int d;
    LUNAR_CHECK(lunar_device_parse(device, &be, &d));
    if (x->storage->backend == be && x->storage->device == d) {
        lunar_tensor_retain(x);
        *out = x;
        return LUNAR_OK;
    }
    LUNAR_CHECK(lunar_raw_to(out, x, be, d));
    lunar_node *n = lunar_node_begin("to", to_backward, 1, &x);
    if (n) {
        n->i[0] = x->storage->backend == &lunar_cpu_backend ? 0 : 1;
        n->i[1] = x->storage->device;
        lunar_node_finish(n, *out);
    }
    return LUNAR_OK;
}

lunar_status lunar_kernel_missing(const char *fn, const lunar_backend *be, const char *entry) {
    if (strncmp(fn, "lunar_", 6) == 0) fn += 6;
    return lunar_fail(LUNAR_ERR_UNSUPPORTED, "%s: the %s backend has no %s kernel", fn,
                      be->name, entry);
}
