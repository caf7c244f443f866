/*
 * lunar-impl.h - internals shared by the core files: the tensor and storage structs, the
 * backend interface (a struct of function pointers that each backend fills), autograd
 * nodes, and the error helpers. Nothing here is public API.
 */
#ifndef LUNAR_IMPL_H
#define LUNAR_IMPL_H

#include "lunar.h"

#include <stdarg.h>
#include <stdio.h>

typedef struct lunar_backend lunar_backend;
typedef struct lunar_node lunar_node;

/* Refcounted memory on one device. version counts in-place writes, so autograd can tell
 * that a tensor it saved was modified before backward. */
typedef struct lunar_storage {
    int refcount;
    void *data;
    size_t nbytes;
    const lunar_backend *backend;
    int device;
    uint32_t version;
} lunar_storage;

/* A hook on a tensor's gradient: may replace it (*replacement, owned by the caller) or
 * leave it (*replacement = NULL). drop releases ud when the hook goes away. */
typedef struct lunar_hook {
    lunar_status (*fn)(void *ud, lunar_tensor *grad, lunar_tensor **replacement);
    void (*drop)(void *ud);
    void *ud;
    struct lunar_hook *next;
} lunar_hook;

struct lunar_tensor {
    int refcount;
    int ndim;
    lunar_dtype dtype;
    bool requires_grad;
    int64_t offset; /* in elements */
    int64_t shape[LUNAR_MAX_DIMS];
    int64_t strides[LUNAR_MAX_DIMS]; /* in elements; may be 0 (expanded) */
    lunar_storage *storage;
    lunar_tensor *grad;  /* accumulated gradient of a leaf */
    lunar_node *grad_fn; /* the node that made it; NULL for leaves */
    lunar_hook *hooks;   /* leaves only; non-leaf hooks live on grad_fn */
};

/* ---- errors ---- */
/* Records the message for lunar_last_error() and returns status, so code can say
 * `return lunar_fail(LUNAR_ERR_SHAPE, "add: %s vs %s", ...)`. */
lunar_status lunar_fail(lunar_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
#define LUNAR_CHECK(expr)                                                                     \
    do {                                                                                      \
        lunar_status s_ = (expr);                                                             \
        if (s_ != LUNAR_OK) return s_;                                                        \
    } while (0)
/* For functions with cleanup: `LUNAR_GOTO(expr)` sets st and jumps to `done`. */
#define LUNAR_GOTO(expr)                                                                      \
    do {                                                                                      \
        st = (expr);                                                                          \
        if (st != LUNAR_OK) goto done;                                                        \
    } while (0)

/* ---- allocation (alloc.c) ---- */
void *lunar_host_alloc(size_t nbytes); /* 64-byte aligned, cached; NULL on failure */
void lunar_host_free(void *p, size_t nbytes);
void lunar_live_bytes_add(int64_t delta);
/* Called when an allocation fails: the binding registers a function that runs a full Lua
 * collection, after which the allocation is retried once. */
extern void (*lunar_oom_handler)(void);

/* ---- tensors (tensor.c) ---- */
lunar_status lunar_storage_new(lunar_storage **out, const lunar_backend *be, int device,
                               size_t nbytes);
void lunar_storage_release(lunar_storage *s);
/* A fresh contiguous tensor on the same device as like (or the CPU when like is NULL). */
lunar_status lunar_tensor_new(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt,
                              const lunar_tensor *like);
/* A fresh tensor filled with value on like's device (constants inside an op or a backward
 * rule must live where the op runs, not on the CPU). */
lunar_status lunar_full_like(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt,
                             double value, const lunar_tensor *like);
/* A new tensor struct over x's storage with the given geometry and no autograd state. */
lunar_tensor *lunar_tensor_alias(const lunar_tensor *x, int ndim, const int64_t *shape,
                                 const int64_t *strides, int64_t offset);
void lunar_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides);
int64_t lunar_shape_numel(int ndim, const int64_t *shape);
bool lunar_shape_equal(int na, const int64_t *a, int nb, const int64_t *b);
/* Broadcast shapes a and b into out (NumPy rules); fails with a message naming op. */
lunar_status lunar_broadcast_shape(const char *op, int na, const int64_t *a, int nb,
                                   const int64_t *b, int *nout, int64_t *out);
/* A stride-0 view of x expanded to shape (no autograd). */
lunar_tensor *lunar_broadcast_view(const lunar_tensor *x, int ndim, const int64_t *shape);
lunar_dtype lunar_promote(lunar_dtype a, lunar_dtype b);
const lunar_backend *lunar_tensor_backend(const lunar_tensor *t);
/* Fails naming op and both devices when a and b live on different devices. */
lunar_status lunar_same_device(const char *op, const lunar_tensor *a, const lunar_tensor *b);
/* Bumps the storage version after an in-place write. */
void lunar_tensor_bump_version(lunar_tensor *t);
/* Raw data-only ops that never record autograd (used by kernels' callers and backward). */
lunar_status lunar_raw_copy(lunar_tensor *dst, const lunar_tensor *src);
lunar_status lunar_raw_cast(lunar_tensor **out, const lunar_tensor *x, lunar_dtype dt);
lunar_status lunar_raw_contiguous(lunar_tensor **out, const lunar_tensor *x);
/* Sums g (shape broadcast from `shape`) back down to `shape`. */
lunar_status lunar_sum_to(lunar_tensor **out, lunar_tensor *g, int ndim, const int64_t *shape);
/* Converts a (possibly negative) 0-based dim to [0, ndim); fails naming op. */
lunar_status lunar_wrap_dim(const char *op, int *dim, int ndim);

/* ---- convolution and pooling geometry (ops_conv.c, cpu/conv.c) ----
 * One 2-d sliding window over an [n, c, h, w] input giving [oh, ow] positions; the padding
 * pt (top) / pl (left) is where window position 0 starts, so asymmetric padding ("same")
 * and ceil_mode only change oh / ow. Pool kernels also read count_include_pad and the
 * padded extent h + pt + pb (w + pl + pr) that bounds an average's divisor. */
typedef struct lunar_conv_geom {
    int64_t n, c, h, w;
    int64_t kh, kw, sh, sw, pt, pl, pb, pr, dh, dw;
    int64_t oh, ow;
    bool count_include_pad;
} lunar_conv_geom;

/* ---- the backend interface ---- */
/* Every kernel receives tensors that already live on this backend, with the dtypes the op
 * layer settled on, and views as strided tensors. A NULL entry means "no kernel": the op
 * fails with LUNAR_ERR_UNSUPPORTED, never falls back silently. */
struct lunar_backend {
    const char *name;
    /* memory */
    void *(*alloc)(int device, size_t nbytes);
    void (*free)(int device, void *p, size_t nbytes);
    lunar_status (*write)(lunar_storage *dst, size_t offset, const void *src, size_t n);
    lunar_status (*read)(void *dst, const lunar_storage *src, size_t offset, size_t n);
    /* dst[i] = (dst dtype) src[i]; same shape, any strides, any dtypes */
    lunar_status (*copy)(lunar_tensor *dst, const lunar_tensor *src);
    lunar_status (*fill)(lunar_tensor *dst, double value);
    /* out = start + i * step, contiguous */
    lunar_status (*arange)(lunar_tensor *out, double start, double step);
    /* element-wise; out may alias x / a exactly (in-place ops) */
    lunar_status (*unary)(lunar_unary_op op, lunar_tensor *out, const lunar_tensor *x,
                          const double *params);
    /* a, b: same shape as out (broadcast views), same dtype; out bool for comparisons */
    lunar_status (*binary)(lunar_binary_op op, lunar_tensor *out, const lunar_tensor *a,
                           const lunar_tensor *b);
    /* cond bool; a, b, out same dtype, all of out's shape */
    lunar_status (*where)(lunar_tensor *out, const lunar_tensor *cond, const lunar_tensor *a,
                          const lunar_tensor *b);
    /* out has x's ndim with 1 in the reduced dims (mask `dims`, never 0 here) */
    lunar_status (*reduce)(lunar_reduce_op op, lunar_tensor *out, const lunar_tensor *x,
                           uint32_t dims, double param);
    /* values/indices (int64) have x's ndim with 1 at dim */
    lunar_status (*arg_reduce)(lunar_tensor *values, lunar_tensor *indices,
                               const lunar_tensor *x, int dim, bool is_min);
    /* cumulative sum (is_prod false) or product along dim; same shape */
    lunar_status (*scan)(lunar_tensor *out, const lunar_tensor *x, int dim, bool is_prod);
    /* c[b] = alpha * a[b] @ b[b] + beta * c[b]; a [B,M,K], b [B,K,N], c [B,M,N]; any batch
     * strides (0 = broadcast); the last two dims of a and b have one unit stride */
    lunar_status (*gemm)(lunar_tensor *c, const lunar_tensor *a, const lunar_tensor *b,
                         double alpha, double beta);
    /* Philox draws: dist 0 uniform [a, b), 1 normal (mean a, std b), 2 integer [a, b),
     * 3 bernoulli with probability a; element i (row-major) uses counter offset + i / per,
     * per = 4 or 2 elements a counter as core/philox.h spells out */
    lunar_status (*random)(lunar_tensor *out, int dist, uint64_t seed, uint64_t offset,
                           double a, double b);
    /* out[..i..] = x[..index[..i..]..] along dim; index int64, out's shape */
    lunar_status (*gather)(lunar_tensor *out, const lunar_tensor *x, int dim,
                           const lunar_tensor *index);
    /* dst[..index[..i..]..] (=|+=) src[..i..] along dim; accumulate selects += */
    lunar_status (*scatter)(lunar_tensor *dst, int dim, const lunar_tensor *index,
                            const lunar_tensor *src, bool accumulate);
    /* out = x.index_select(dim, index); index 1-D int64 */
    lunar_status (*index_select)(lunar_tensor *out, const lunar_tensor *x, int dim,
                                 const lunar_tensor *index);
    /* dst.index_select(dim, index) += alpha * src */
    lunar_status (*index_add)(lunar_tensor *dst, int dim, const lunar_tensor *index,
                              const lunar_tensor *src, double alpha);
    /* sort along dim; values same dtype, indices int64 */
    lunar_status (*sort)(lunar_tensor *values, lunar_tensor *indices, const lunar_tensor *x,
                         int dim, bool descending);
    /* number of non-zero elements of x */
    lunar_status (*count_nonzero)(int64_t *count, const lunar_tensor *x);
    /* out [count, ndim] int64: the 0-based coordinates of the non-zeros, in row-major order */
    lunar_status (*nonzero)(lunar_tensor *out, const lunar_tensor *x);
    /* ---- convolution and pooling (all tensors contiguous, float32 or float64) ---- */
    /* x [n, c, h, w] -> col [n, c * kh * kw, oh * ow]; zeros where the window is padding */
    lunar_status (*im2col)(lunar_tensor *col, const lunar_tensor *x, const lunar_conv_geom *g);
    /* col [n, c * kh * kw, oh * ow] -> x [n, c, h, w] (overwritten): sums the overlaps */
    lunar_status (*col2im)(lunar_tensor *x, const lunar_tensor *col, const lunar_conv_geom *g);
    /* x [n, c, h, w] -> y [n, c, oh, ow], idx int64 [n, c, oh, ow] (0-based h * w + w in
     * the plane; -inf padding never wins) */
    lunar_status (*max_pool2d)(lunar_tensor *y, lunar_tensor *idx, const lunar_tensor *x,
                               const lunar_conv_geom *g);
    /* gy, idx [n, c, oh, ow] -> gx [n, c, h, w] (overwritten) */
    lunar_status (*max_pool2d_backward)(lunar_tensor *gx, const lunar_tensor *gy,
                                        const lunar_tensor *idx, const lunar_conv_geom *g);
    /* x [n, c, h, w] -> y [n, c, oh, ow]; divisor per g->count_include_pad */
    lunar_status (*avg_pool2d)(lunar_tensor *y, const lunar_tensor *x, const lunar_conv_geom *g);
    /* gy [n, c, oh, ow] -> gx [n, c, h, w] (overwritten) */
    lunar_status (*avg_pool2d_backward)(lunar_tensor *gx, const lunar_tensor *gy,
                                        const lunar_conv_geom *g);
    /* x [n, c, h, w] -> y [n, c, oh, ow], PyTorch's windows [floor(i h / oh), ceil((i + 1) h /
     * oh)); only n, c, h, w, oh, ow of g are used */
    lunar_status (*adaptive_avg_pool2d)(lunar_tensor *y, const lunar_tensor *x,
                                        const lunar_conv_geom *g);
    /* gy [n, c, oh, ow] -> gx [n, c, h, w] (overwritten) */
    lunar_status (*adaptive_avg_pool2d_backward)(lunar_tensor *gx, const lunar_tensor *gy,
                                                 const lunar_conv_geom *g);
    /* optimizers: one fused in-place step of param (contiguous, float32/float64) from grad
     * (same shape, contiguous) and up to 3 state tensors (slots per kind in lunar.h, NULL
     * where unused); h holds the options and the per-step scalars c1..c3 */
    lunar_status (*optim_step)(lunar_optim_kind kind, lunar_tensor *param,
                               const lunar_tensor *grad, lunar_tensor *const *state,
                               const lunar_optim_hyper *h);
    /* ---- nn (core/ops_nn.c): every tensor contiguous, shaped 3-d as said ---- */
    /* x, y: [outer, n, inner]; (log-)softmax along n */
    lunar_status (*softmax)(lunar_tensor *y, const lunar_tensor *x, bool log);
    /* gx, g, y (the forward output): [outer, n, inner] */
    lunar_status (*softmax_backward)(lunar_tensor *gx, const lunar_tensor *g,
                                     const lunar_tensor *y, bool log);
    /* z: [N, C, inner] logits; t: [N, inner] int64 0-based, in range or == ignore; w: [C] or
     * NULL -> loss (per element: weighted, label-smoothed, 0 where ignored), lse: [N, inner] */
    lunar_status (*cross_entropy)(lunar_tensor *loss, lunar_tensor *lse, const lunar_tensor *z,
                                  const lunar_tensor *t, const lunar_tensor *w, int64_t ignore,
                                  double smoothing);
    /* gz, z: [N, C, inner]; g (per-element upstream gradient), lse, t: [N, inner] */
    lunar_status (*cross_entropy_backward)(lunar_tensor *gz, const lunar_tensor *g,
                                           const lunar_tensor *z, const lunar_tensor *lse,
                                           const lunar_tensor *t, const lunar_tensor *w,
                                           int64_t ignore, double smoothing);
    /* x: [A, C, B] -> mean, biased var: [C] (over A and B) */
    lunar_status (*moments)(lunar_tensor *mean, lunar_tensor *var, const lunar_tensor *x);
    /* y = (x - mean) * rstd; x, y: [A, C, B]; mean, rstd: [C] */
    lunar_status (*normalize)(lunar_tensor *y, const lunar_tensor *x, const lunar_tensor *mean,
                              const lunar_tensor *rstd);
    /* gx = rstd (g - mean(g) - xh mean(g xh)) per channel; gx, g, xh: [A, C, B]; rstd: [C] */
    lunar_status (*normalize_backward)(lunar_tensor *gx, const lunar_tensor *g,
                                       const lunar_tensor *xh, const lunar_tensor *rstd);
};

extern const lunar_backend lunar_cpu_backend;

/* ---- autograd (autograd.c) ---- */
typedef lunar_status (*lunar_backward_fn)(lunar_node *n, lunar_tensor *grad,
                                          lunar_tensor **grad_inputs);

typedef struct lunar_edge {
    lunar_node *fn;     /* the producer's node, or NULL */
    lunar_tensor *leaf; /* a leaf that requires grad, or NULL */
    int ndim;           /* the input's shape and dtype: gradients are summed down to it */
    int64_t shape[LUNAR_MAX_DIMS];
    lunar_dtype dtype;
} lunar_edge;

#define LUNAR_NODE_SAVED 4
struct lunar_node {
    int refcount;
    const char *name;
    lunar_backward_fn backward;
    int n_inputs;
    lunar_edge *next;                         /* n_inputs edges */
    lunar_tensor *saved[LUNAR_NODE_SAVED];    /* data-only aliases */
    uint32_t saved_version[LUNAR_NODE_SAVED];
    double f[4];                              /* op parameters */
    int64_t i[2 * LUNAR_MAX_DIMS];
    void *ctx;                                /* extra state, freed with ctx_free */
    void (*ctx_free)(void *ctx);
    lunar_hook *hooks;                        /* hooks on the output's gradient */
    bool released;                            /* saved tensors freed by a backward */
    /* engine scratch */
    lunar_tensor *acc;
    int deps;
    bool visited;
};

/* Starts a node for an op with n inputs when grad mode is on and any input requires grad;
 * returns NULL otherwise (then the op records nothing). */
lunar_node *lunar_node_begin(const char *name, lunar_backward_fn fn, int n, lunar_tensor **in);
/* Saves a data-only alias of t in slot k (its version is checked in backward). */
void lunar_node_save(lunar_node *n, int k, const lunar_tensor *t);
/* Makes out the node's output: out->grad_fn = n, out->requires_grad = true. Consumes n. */
void lunar_node_finish(lunar_node *n, lunar_tensor *out);
/* Whether backward must produce a gradient for input k. */
bool lunar_node_needs(const lunar_node *n, int k);
/* The saved tensor k, or an error if it was modified in place since it was saved. */
lunar_status lunar_node_saved(lunar_node *n, int k, lunar_tensor **out);
void lunar_node_release(lunar_node *n);
void lunar_hooks_free(lunar_hook *h);
lunar_status lunar_check_inplace(const char *op, const lunar_tensor *t);

/* ---- expressions for backward rules (gx.c) ----
 * Backward rules compose ops; gx keeps every temporary and the first error, so a rule reads
 * as a formula: `gi[0] = gx_keep(&c, gx_mul(&c, g, gx_un(&c, LUNAR_OP_COS, x)))`. A NULL
 * argument (an earlier failure) makes each call return NULL. gx_end releases what was not
 * kept and returns the status. */
typedef struct gx {
    lunar_status st;
    int n;
    lunar_tensor *tmp[32];
} gx;
lunar_tensor *gx_add(gx *c, lunar_tensor *t); /* takes ownership of t as a temporary */
lunar_tensor *gx_bin(gx *c, lunar_binary_op op, lunar_tensor *a, lunar_tensor *b);
lunar_tensor *gx_mul(gx *c, lunar_tensor *a, lunar_tensor *b);
lunar_tensor *gx_scal(gx *c, lunar_binary_op op, lunar_tensor *a, double s); /* a op s */
lunar_tensor *gx_un(gx *c, lunar_unary_op op, lunar_tensor *x);
lunar_tensor *gx_keep(gx *c, lunar_tensor *t); /* removes t from the temporaries: caller owns */
lunar_status gx_end(gx *c);

/* ---- threads ---- */
/* Elements below which a loop stays on one thread. */
#define LUNAR_GRAIN 32768

/* ---- devices (device.c, opencl/) ---- */
extern const lunar_backend lunar_opencl_backend; /* defined when built with LUNAR_OPENCL */
/* A fresh contiguous tensor on the given backend and device. */
lunar_status lunar_tensor_new_on(lunar_tensor **out, int ndim, const int64_t *shape,
                                 lunar_dtype dt, const lunar_backend *be, int device);
/* Resolves a device name; fails naming it when unknown or unavailable. */
lunar_status lunar_device_parse(const char *name, const lunar_backend **be, int *device);
/* A contiguous copy of x on (be, device), no autograd. */
lunar_status lunar_raw_to(lunar_tensor **out, const lunar_tensor *x, const lunar_backend *be,
                          int device);
/* Calls a backend entry, or fails "<op>: the <backend> backend has no <entry> kernel" when
 * the backend leaves it NULL. Use inside the op's function (the op name is __func__). */
lunar_status lunar_kernel_missing(const char *fn, const lunar_backend *be, const char *entry);
#define LUNAR_KERNEL(be, entry, ...)                                                          \
    ((be)->entry ? (be)->entry(__VA_ARGS__) : lunar_kernel_missing(__func__, (be), #entry))

#endif
