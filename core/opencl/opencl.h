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
#define OCL_MAX_KERNELS 512

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

/* ---- launching (launch.c): shared by every op family's host code ---- */

/* Operand geometry: ts[0]'s shape with size-1 dims dropped and dims merged where every
 * operand is contiguous across them; strides in elements, one vector per operand. */
#define OCL_MAX_OPERANDS 4
typedef struct {
    int nd, nt;
    cl_long8 shape;
    cl_long8 strides[OCL_MAX_OPERANDS];
    int64_t n;
} ocl_geom;
void ocl_geom_init(ocl_geom *g, int nt, const lunar_tensor *const *ts);

/* One kernel argument: its size and a pointer to its value. */
typedef struct {
    size_t size;
    const void *p;
} ocl_karg;
#define A(x) {sizeof(x), &(x)}

/* Queues kernel `name` over n work-items (rounded up to 64; the kernel checks its range). */
lunar_status ocl_launch(int device, const char *name, int64_t n, int nargs,
                        const ocl_karg *args);
/* The same with an explicit global size and work-group size (local 0: the driver's pick;
 * global is rounded up to a multiple of local), for kernels that use local memory. */
lunar_status ocl_launch_wg(int device, const char *name, size_t global, size_t local, int nargs,
                           const ocl_karg *args);

static inline int ocl_dev(const lunar_tensor *t) { return t->storage->device; }
/* whether the tensor's device has cl_khr_fp64 (kernels' acc_t is then double) */
bool ocl_dev_fp64(const lunar_tensor *t);

/* A scalar in the element type of a dtype, for a kernel argument of that type. */
typedef union {
    uint8_t u8;
    int32_t i32;
    int64_t i64;
    float f32;
    double f64;
} ocl_scalar;
ocl_karg ocl_scalar_arg(ocl_scalar *s, lunar_dtype dt, double v);
/* a scalar of the kernels' acc_t on t's device */
ocl_karg ocl_acc_arg(ocl_scalar *s, const lunar_tensor *t, double v);

/* Kernel name tables: one literal per dtype, in lunar_dtype order (ocl_kernel keeps the
 * pointer, so names must be literals). */
#define OCL_NAMES(op)                                                                         \
    {#op "_bool", #op "_u8", #op "_i32", #op "_i64", #op "_f32", #op "_f64"}

/* ---- op families' backend entries (one block per file) ---- */

/* nn.c: softmax, cross-entropy, moments / normalisation (contracts in lunar-impl.h) */
lunar_status ocl_softmax(lunar_tensor *y, const lunar_tensor *x, bool log_);
lunar_status ocl_softmax_backward(lunar_tensor *gx, const lunar_tensor *g, const lunar_tensor *y,
                                  bool log_);
lunar_status ocl_cross_entropy(lunar_tensor *loss, lunar_tensor *lse, const lunar_tensor *z,
                               const lunar_tensor *t, const lunar_tensor *w, int64_t ignore,
                               double smoothing);
lunar_status ocl_cross_entropy_backward(lunar_tensor *gz, const lunar_tensor *g,
                                        const lunar_tensor *z, const lunar_tensor *lse,
                                        const lunar_tensor *t, const lunar_tensor *w,
                                        int64_t ignore, double smoothing);
lunar_status ocl_moments(lunar_tensor *mean, lunar_tensor *var, const lunar_tensor *x);
lunar_status ocl_normalize(lunar_tensor *y, const lunar_tensor *x, const lunar_tensor *mean,
                           const lunar_tensor *rstd);
lunar_status ocl_normalize_backward(lunar_tensor *gx, const lunar_tensor *g,
                                    const lunar_tensor *xh, const lunar_tensor *rstd);
/* random.c, optim.c: Philox draws and fused optimizer steps (kernels/random.cl, optim.cl) */
lunar_status ocl_random(lunar_tensor *out, int dist, uint64_t seed, uint64_t offset, double a,
                        double b);
lunar_status ocl_optim_step(lunar_optim_kind kind, lunar_tensor *param, const lunar_tensor *grad,
                            lunar_tensor *const *state, const lunar_optim_hyper *h);

/* conv.c: convolution's columns and the pools (contracts in lunar-impl.h) */
lunar_status ocl_im2col(lunar_tensor *col, const lunar_tensor *x, const lunar_conv_geom *g);
lunar_status ocl_col2im(lunar_tensor *x, const lunar_tensor *col, const lunar_conv_geom *g);
lunar_status ocl_max_pool2d(lunar_tensor *y, lunar_tensor *idx, const lunar_tensor *x,
                            const lunar_conv_geom *g);
lunar_status ocl_max_pool2d_backward(lunar_tensor *gx, const lunar_tensor *gy,
                                     const lunar_tensor *idx, const lunar_conv_geom *g);
lunar_status ocl_avg_pool2d(lunar_tensor *y, const lunar_tensor *x, const lunar_conv_geom *g);
lunar_status ocl_avg_pool2d_backward(lunar_tensor *gx, const lunar_tensor *gy,
                                     const lunar_conv_geom *g);
lunar_status ocl_adaptive_avg_pool2d(lunar_tensor *y, const lunar_tensor *x,
                                     const lunar_conv_geom *g);
lunar_status ocl_adaptive_avg_pool2d_backward(lunar_tensor *gx, const lunar_tensor *gy,
                                              const lunar_conv_geom *g);

/* index.c: kernels/index.cl */
lunar_status ocl_arg_reduce(lunar_tensor *values, lunar_tensor *indices, const lunar_tensor *x,
                            int dim, bool is_min);
lunar_status ocl_scan(lunar_tensor *out, const lunar_tensor *x, int dim, bool is_prod);
lunar_status ocl_gather(lunar_tensor *out, const lunar_tensor *x, int dim,
                        const lunar_tensor *index);
lunar_status ocl_scatter(lunar_tensor *dst, int dim, const lunar_tensor *index,
                         const lunar_tensor *src, bool accumulate);
lunar_status ocl_index_select(lunar_tensor *out, const lunar_tensor *x, int dim,
                              const lunar_tensor *index);
lunar_status ocl_index_add(lunar_tensor *dst, int dim, const lunar_tensor *index,
                           const lunar_tensor *src, double alpha);
lunar_status ocl_sort(lunar_tensor *values, lunar_tensor *indices, const lunar_tensor *x,
                      int dim, bool descending);
lunar_status ocl_count_nonzero(int64_t *count, const lunar_tensor *x);
lunar_status ocl_nonzero(lunar_tensor *out, const lunar_tensor *x);

extern const char lunar_opencl_source[];

#endif
