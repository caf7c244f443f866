/*
 * lunar.h - the public C API of lunar: tensors, ops, autograd, devices.
 *
 * A worked example (error handling shortened to LUNAR_TRY):
 *
 *     lunar_tensor *w, *x, *y, *loss;
 *     int64_t shape[2] = {3, 4};
 *     LUNAR_TRY(lunar_randn(&w, 2, shape, LUNAR_F32, NULL));
 *     lunar_tensor_set_requires_grad(w, true);
 *     LUNAR_TRY(lunar_ones(&x, 2, shape, LUNAR_F32));
 *     LUNAR_TRY(lunar_binary(&y, LUNAR_OP_MUL, w, x));      // y = w * x
 *     LUNAR_TRY(lunar_reduce(&loss, LUNAR_OP_SUM, y, 0, false, 0)); // sum over all dims
 *     LUNAR_TRY(lunar_backward(loss, NULL, false));          // w->grad == x
 *     lunar_tensor_release(w); ... (every tensor an op returns is owned by the caller)
 *
 * Conventions:
 * - Every function that can fail returns enum lunar_status and, on failure, leaves a
 *   message in lunar_last_error() that names the op and the shapes. Nothing aborts on
 *   user input; assertions guard our own invariants only.
 * - Ops return new tensors through an out-pointer; the caller owns one reference.
 * - Dimensions in this C API are 0-based. The Lua binding converts from Lua's 1-based
 *   convention (and negative dims) before calling in.
 * - A dim mask selects several dimensions at once: bit d set means dimension d.
 */
#ifndef LUNAR_H
#define LUNAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LUNAR_VERSION "0.1.0"
#define LUNAR_MAX_DIMS 8
#define LUNAR_ALL_DIMS (-1 - LUNAR_MAX_DIMS) /* squeeze: every dim of size 1 */

typedef enum lunar_status {
    LUNAR_OK = 0,
    LUNAR_ERR_ARG,         /* a bad argument: value out of range, wrong option */
    LUNAR_ERR_SHAPE,       /* shapes that do not fit together */
    LUNAR_ERR_DTYPE,       /* a dtype the op does not take */
    LUNAR_ERR_INDEX,       /* an index out of range */
    LUNAR_ERR_MEMORY,      /* an allocation failed */
    LUNAR_ERR_IO,          /* a file could not be read or written, or is corrupt */
    LUNAR_ERR_DEVICE,      /* a device is missing, or tensors live on different devices */
    LUNAR_ERR_AUTOGRAD,    /* an operation autograd cannot track */
    LUNAR_ERR_UNSUPPORTED, /* the backend has no kernel for this op and dtype */
} lunar_status;

typedef enum lunar_dtype {
    LUNAR_BOOL = 0, /* promotion order: bool < uint8 < int32 < int64 < float32 < float64 */
    LUNAR_U8,
    LUNAR_I32,
    LUNAR_I64,
    LUNAR_F32,
    LUNAR_F64,
    LUNAR_DTYPE_COUNT
} lunar_dtype;

/* Element-wise ops of one input. Parameters (clamp bounds, ...) travel in a double[2]. */
typedef enum lunar_unary_op {
    LUNAR_OP_NEG, LUNAR_OP_ABS, LUNAR_OP_SIGN, LUNAR_OP_EXP, LUNAR_OP_EXPM1,
    LUNAR_OP_LOG, LUNAR_OP_LOG1P, LUNAR_OP_SQRT, LUNAR_OP_RSQRT, LUNAR_OP_SQUARE,
    LUNAR_OP_SIN, LUNAR_OP_COS, LUNAR_OP_TANH, LUNAR_OP_SIGMOID, LUNAR_OP_RELU,
    LUNAR_OP_FLOOR, LUNAR_OP_CEIL, LUNAR_OP_ROUND, LUNAR_OP_TRUNC, LUNAR_OP_CLAMP,
    LUNAR_OP_RECIPROCAL, LUNAR_OP_ERF, LUNAR_OP_LOGICAL_NOT,
    LUNAR_UNARY_COUNT
} lunar_unary_op;

/* Element-wise ops of two inputs, with NumPy broadcasting. Comparisons return bool. */
typedef enum lunar_binary_op {
    LUNAR_OP_ADD, LUNAR_OP_SUB, LUNAR_OP_MUL, LUNAR_OP_DIV, LUNAR_OP_POW,
    LUNAR_OP_ATAN2, LUNAR_OP_MAXIMUM, LUNAR_OP_MINIMUM, LUNAR_OP_FMOD, LUNAR_OP_REMAINDER,
    LUNAR_OP_EQ, LUNAR_OP_NE, LUNAR_OP_LT, LUNAR_OP_LE, LUNAR_OP_GT, LUNAR_OP_GE,
    LUNAR_OP_LOGICAL_AND, LUNAR_OP_LOGICAL_OR, LUNAR_OP_LOGICAL_XOR,
    LUNAR_BINARY_COUNT
} lunar_binary_op;

/* Reductions over a set of dimensions (a dim mask; 0 means all of them). */
typedef enum lunar_reduce_op {
    LUNAR_OP_SUM, LUNAR_OP_MEAN, LUNAR_OP_PROD, LUNAR_OP_MAX, LUNAR_OP_MIN,
    LUNAR_OP_ALL, LUNAR_OP_ANY, LUNAR_OP_LOGSUMEXP, LUNAR_OP_NORM, LUNAR_OP_VAR,
    LUNAR_REDUCE_COUNT
} lunar_reduce_op;

typedef struct lunar_tensor lunar_tensor;
typedef struct lunar_generator lunar_generator;

/* ---- errors ---- */
const char *lunar_last_error(void);
const char *lunar_status_name(lunar_status s);
const char *lunar_dtype_name(lunar_dtype t);
size_t lunar_dtype_size(lunar_dtype t);
bool lunar_dtype_is_float(lunar_dtype t);

/* ---- tensors: lifetime and metadata ---- */
void lunar_tensor_retain(lunar_tensor *t);
void lunar_tensor_release(lunar_tensor *t); /* NULL is fine */
int lunar_tensor_ndim(const lunar_tensor *t);
const int64_t *lunar_tensor_shape(const lunar_tensor *t);
const int64_t *lunar_tensor_strides(const lunar_tensor *t);
int64_t lunar_tensor_offset(const lunar_tensor *t);
int64_t lunar_tensor_numel(const lunar_tensor *t);
lunar_dtype lunar_tensor_dtype(const lunar_tensor *t);
bool lunar_tensor_is_contiguous(const lunar_tensor *t);
void *lunar_tensor_data(const lunar_tensor *t); /* host pointer to element 0, CPU only */
bool lunar_tensor_same_storage(const lunar_tensor *a, const lunar_tensor *b);
/* Formats "[2, 3]" into buf; returns buf. */
char *lunar_shape_str(char *buf, size_t n, int ndim, const int64_t *shape);

/* ---- creation ---- */
lunar_status lunar_empty(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt);
lunar_status lunar_zeros(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt);
lunar_status lunar_ones(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt);
lunar_status lunar_full(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt,
                        double value);
lunar_status lunar_scalar(lunar_tensor **out, double value, lunar_dtype dt); /* 0-dim */
lunar_status lunar_from_data(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt,
                             const void *data); /* copies contiguous host data */
lunar_status lunar_arange(lunar_tensor **out, double start, double stop, double step,
                          lunar_dtype dt);
lunar_status lunar_linspace(lunar_tensor **out, double start, double stop, int64_t n,
                            lunar_dtype dt);
lunar_status lunar_eye(lunar_tensor **out, int64_t n, int64_t m, lunar_dtype dt);

/* ---- RNG (Philox 4x32-10; gen NULL = the default generator) ---- */
lunar_generator *lunar_generator_default(void);
lunar_generator *lunar_generator_new(uint64_t seed);
void lunar_generator_free(lunar_generator *g);
void lunar_generator_seed(lunar_generator *g, uint64_t seed);
void lunar_generator_get_state(const lunar_generator *g, uint64_t *seed, uint64_t *offset);
void lunar_generator_set_state(lunar_generator *g, uint64_t seed, uint64_t offset);
void lunar_manual_seed(uint64_t seed);
lunar_status lunar_rand(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt,
                        lunar_generator *g); /* U[0, 1) */
lunar_status lunar_randn(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt,
                         lunar_generator *g); /* N(0, 1) */
lunar_status lunar_randint(lunar_tensor **out, int64_t low, int64_t high, int ndim,
                           const int64_t *shape, lunar_dtype dt, lunar_generator *g);
lunar_status lunar_randperm(lunar_tensor **out, int64_t n, lunar_dtype dt, lunar_generator *g);
lunar_status lunar_bernoulli(lunar_tensor **out, const lunar_tensor *p, lunar_generator *g);
lunar_status lunar_uniform_(lunar_tensor *t, double lo, double hi, lunar_generator *g);
lunar_status lunar_normal_(lunar_tensor *t, double mean, double std, lunar_generator *g);

/* ---- views (share storage; autograd-tracked) ---- */
lunar_status lunar_view(lunar_tensor **out, lunar_tensor *x, int ndim, const int64_t *shape);
lunar_status lunar_reshape(lunar_tensor **out, lunar_tensor *x, int ndim, const int64_t *shape);
lunar_status lunar_transpose(lunar_tensor **out, lunar_tensor *x, int d0, int d1);
lunar_status lunar_permute(lunar_tensor **out, lunar_tensor *x, const int *perm);
lunar_status lunar_narrow(lunar_tensor **out, lunar_tensor *x, int dim, int64_t start,
                          int64_t length);
lunar_status lunar_select(lunar_tensor **out, lunar_tensor *x, int dim, int64_t index);
lunar_status lunar_slice(lunar_tensor **out, lunar_tensor *x, int dim, int64_t start,
                         int64_t stop, int64_t step);
lunar_status lunar_expand(lunar_tensor **out, lunar_tensor *x, int ndim, const int64_t *shape);
lunar_status lunar_squeeze(lunar_tensor **out, lunar_tensor *x, int dim); /* or LUNAR_ALL_DIMS */
lunar_status lunar_unsqueeze(lunar_tensor **out, lunar_tensor *x, int dim);
lunar_status lunar_unfold(lunar_tensor **out, lunar_tensor *x, int dim, int64_t size,
                          int64_t step);
lunar_status lunar_contiguous(lunar_tensor **out, lunar_tensor *x); /* x itself if already */
lunar_status lunar_clone(lunar_tensor **out, lunar_tensor *x);
lunar_status lunar_to_dtype(lunar_tensor **out, lunar_tensor *x, lunar_dtype dt);
lunar_status lunar_detach(lunar_tensor **out, lunar_tensor *x);

/* ---- element-wise ---- */
lunar_status lunar_unary(lunar_tensor **out, lunar_unary_op op, lunar_tensor *x,
                         const double *params);
lunar_status lunar_binary(lunar_tensor **out, lunar_binary_op op, lunar_tensor *a,
                          lunar_tensor *b);
lunar_status lunar_binary_scalar(lunar_tensor **out, lunar_binary_op op, lunar_tensor *a,
                                 double b, bool scalar_first);
lunar_status lunar_where(lunar_tensor **out, lunar_tensor *cond, lunar_tensor *a,
                         lunar_tensor *b);

/* ---- in place (refused on leaves that require grad, and on tensors autograd saved) ---- */
lunar_status lunar_fill_(lunar_tensor *t, double value);
lunar_status lunar_copy_(lunar_tensor *dst, lunar_tensor *src); /* broadcasts src, casts */
lunar_status lunar_unary_(lunar_tensor *t, lunar_unary_op op, const double *params);
lunar_status lunar_binary_(lunar_tensor *t, lunar_binary_op op, lunar_tensor *b);

/* ---- reductions ---- */
/* dims: a mask of dimensions (0 = all). param: p for NORM, correction (1 = unbiased) for VAR. */
lunar_status lunar_reduce(lunar_tensor **out, lunar_reduce_op op, lunar_tensor *x,
                          uint32_t dims, bool keepdim, double param);
/* max/min along one dim: values and 0-based int64 indices. */
lunar_status lunar_max_dim(lunar_tensor **values, lunar_tensor **indices, lunar_tensor *x,
                           int dim, bool keepdim, bool is_min);

/* ---- linear algebra ---- */
lunar_status lunar_matmul(lunar_tensor **out, lunar_tensor *a, lunar_tensor *b);

/* ---- linear algebra: the matmul family, addmm, linear (ops_linalg.c) ---- */
lunar_status lunar_mm(lunar_tensor **out, lunar_tensor *a, lunar_tensor *b);  /* 2-d x 2-d */
lunar_status lunar_bmm(lunar_tensor **out, lunar_tensor *a, lunar_tensor *b); /* [B,M,K]x[B,K,N] */
lunar_status lunar_mv(lunar_tensor **out, lunar_tensor *a, lunar_tensor *v);  /* [M,K] x [K] */
lunar_status lunar_dot(lunar_tensor **out, lunar_tensor *a, lunar_tensor *b); /* 1-d; 0-d out */
lunar_status lunar_outer(lunar_tensor **out, lunar_tensor *a, lunar_tensor *b); /* [M] x [N] */
/* beta * input + alpha * a @ b; input broadcasts to [M, N]; one GEMM */
lunar_status lunar_addmm(lunar_tensor **out, lunar_tensor *input, lunar_tensor *a,
                         lunar_tensor *b, double beta, double alpha);
/* x [..., in] @ weight [out, in]^T + bias [out] (bias may be NULL); one GEMM */
lunar_status lunar_linear(lunar_tensor **out, lunar_tensor *x, lunar_tensor *weight,
                          lunar_tensor *bias);

/* ---- shape ops (ops_shape.c); dims 0-based ---- */
typedef enum lunar_pad_mode {
    LUNAR_PAD_CONSTANT, LUNAR_PAD_REFLECT, LUNAR_PAD_REPLICATE
} lunar_pad_mode;
/* Joins n tensors along dim; dtypes promote; the other sizes must match. */
lunar_status lunar_cat(lunar_tensor **out, int n, lunar_tensor *const *ts, int dim);
/* Joins n tensors of one shape along a new dim (0 <= dim <= ndim). */
lunar_status lunar_stack(lunar_tensor **out, int n, lunar_tensor *const *ts, int dim);
/* Views of x along dim: pieces of `size` (the last may be shorter), pieces of the given
 * sizes (they must add up), or `chunks` pieces of ceil(len / chunks). *parts is a malloc'd
 * array of *n tensors: free it with lunar_tensors_free. */
lunar_status lunar_split(lunar_tensor ***parts, int64_t *n, lunar_tensor *x, int64_t size,
                         int dim);
lunar_status lunar_split_sizes(lunar_tensor ***parts, int64_t *n, lunar_tensor *x,
                               int64_t n_sizes, const int64_t *sizes, int dim);
lunar_status lunar_chunk(lunar_tensor ***parts, int64_t *n, lunar_tensor *x, int64_t chunks,
                         int dim);
void lunar_tensors_free(lunar_tensor **ts, int64_t n);
/* Reverses the dims in the mask (a copy, like PyTorch). */
lunar_status lunar_flip(lunar_tensor **out, lunar_tensor *x, uint32_t dims);
/* Rolls dims[i] by shifts[i]; dims NULL rolls the flattened tensor by shifts[0] (n = 1). */
lunar_status lunar_roll(lunar_tensor **out, lunar_tensor *x, int n, const int64_t *shifts,
                        const int *dims);
/* Torch's repeat: tiles x reps[d] times in dim d; n >= ndim (x gains leading dims). */
lunar_status lunar_repeat(lunar_tensor **out, lunar_tensor *x, int n, const int64_t *reps);
/* NumPy's tile: like repeat, but fewer reps than dims means 1 for the leading dims. */
lunar_status lunar_tile(lunar_tensor **out, lunar_tensor *x, int n, const int64_t *reps);
/* The lower (upper) triangle of the last two dims: j - i <= k (>= k); the rest is zero. */
lunar_status lunar_tril(lunar_tensor **out, lunar_tensor *x, int64_t k);
lunar_status lunar_triu(lunar_tensor **out, lunar_tensor *x, int64_t k);
/* Pads in PyTorch's order, last dim first: {left, right, top, bottom, ...} (n even, n / 2
 * <= ndim). Constant pads may be negative (they crop); reflect needs pads < the size. */
lunar_status lunar_pad(lunar_tensor **out, lunar_tensor *x, int n, const int64_t *pads,
                       lunar_pad_mode mode, double value);

/* ---- indexing (ops_index.c) ----
 * Index tensors are int64 (int32 is accepted and converted) and 0-based. An index out of
 * range fails with LUNAR_ERR_INDEX naming the op, the index and the size, before anything
 * is written. Results of gather, scatter, index_select, index_add, masked_fill,
 * masked_select, sort (values) and topk (values) are autograd-tracked. */
/* out[..i..] = x[..index[..i..]..] along dim; index has x's ndim and fits in x off dim */
lunar_status lunar_gather(lunar_tensor **out, lunar_tensor *x, int dim, lunar_tensor *index);
/* out = x with src[..i..] written (accumulate: added) at x[..index[..i..]..] along dim */
lunar_status lunar_scatter(lunar_tensor **out, lunar_tensor *x, int dim, lunar_tensor *index,
                           lunar_tensor *src, bool accumulate);
lunar_status lunar_scatter_(lunar_tensor *x, int dim, lunar_tensor *index, lunar_tensor *src,
                            bool accumulate);
/* the slices of x at the positions of a 1-d index along dim */
lunar_status lunar_index_select(lunar_tensor **out, lunar_tensor *x, int dim,
                                lunar_tensor *index);
/* out = x; out.index_select(dim, index) += alpha * src (repeated indices add up) */
lunar_status lunar_index_add(lunar_tensor **out, lunar_tensor *x, int dim, lunar_tensor *index,
                             lunar_tensor *src, double alpha);
lunar_status lunar_index_add_(lunar_tensor *x, int dim, lunar_tensor *index, lunar_tensor *src,
                              double alpha);
/* x.index_select(dim, index) = src, src broadcast to that shape */
lunar_status lunar_index_copy_(lunar_tensor *x, int dim, lunar_tensor *index, lunar_tensor *src);
/* mask: bool, broadcast to x's shape; value: a 0-d tensor */
lunar_status lunar_masked_fill(lunar_tensor **out, lunar_tensor *x, lunar_tensor *mask,
                               lunar_tensor *value);
lunar_status lunar_masked_fill_(lunar_tensor *x, lunar_tensor *mask, lunar_tensor *value);
/* the elements of x (broadcast with mask) where mask is true, as a 1-d tensor */
lunar_status lunar_masked_select(lunar_tensor **out, lunar_tensor *x, lunar_tensor *mask);
/* x[mask] = src: src broadcast to the number of true elements, written in row-major order */
lunar_status lunar_masked_scatter_(lunar_tensor *x, lunar_tensor *mask, lunar_tensor *src);
lunar_status lunar_count_nonzero(int64_t *count, lunar_tensor *x);
/* out [count, ndim] int64: the coordinates of the non-zeros of x, in row-major order */
lunar_status lunar_nonzero(lunar_tensor **out, lunar_tensor *x);
/* labels (any shape) -> [..., num_classes] int64; num_classes < 0: the largest label + 1 */
lunar_status lunar_one_hot(lunar_tensor **out, lunar_tensor *labels, int64_t num_classes);
/* values and int64 indices along dim; always stable (ties keep their order) */
lunar_status lunar_sort(lunar_tensor **values, lunar_tensor **indices, lunar_tensor *x, int dim,
                        bool descending);
/* the k largest (or smallest) along dim, in sorted order */
lunar_status lunar_topk(lunar_tensor **values, lunar_tensor **indices, lunar_tensor *x,
                        int64_t k, int dim, bool largest, bool sorted);
/* sorted distinct values of x (1-d); inverse (x's shape) and counts when not NULL */
lunar_status lunar_unique(lunar_tensor **values, lunar_tensor **inverse, lunar_tensor **counts,
                          lunar_tensor *x);

/* ---- autograd ---- */
bool lunar_grad_enabled(void);
bool lunar_set_grad_enabled(bool on); /* returns the previous setting */
bool lunar_tensor_requires_grad(const lunar_tensor *t);
lunar_status lunar_tensor_set_requires_grad(lunar_tensor *t, bool on); /* leaves only */
bool lunar_tensor_is_leaf(const lunar_tensor *t);
lunar_tensor *lunar_tensor_grad(const lunar_tensor *t); /* borrowed; NULL if none */
void lunar_tensor_set_grad(lunar_tensor *t, lunar_tensor *g); /* retains g; NULL clears */
const char *lunar_tensor_grad_fn_name(const lunar_tensor *t); /* NULL for leaves */
/* Backpropagates from root; grad NULL means ones (root must then have one element). */
lunar_status lunar_backward(lunar_tensor *root, lunar_tensor *grad, bool retain_graph);
/* Gradients of outputs w.r.t. inputs (leaves or not), returned in grads[] (NULL where an
 * input is unreachable), without touching any .grad. */
lunar_status lunar_autograd_grad(int n_out, lunar_tensor **outputs, lunar_tensor **grad_outputs,
                                 int n_in, lunar_tensor **inputs, lunar_tensor **grads,
                                 bool retain_graph);

/* ---- threads and memory ---- */
void lunar_set_num_threads(int n);
int lunar_get_num_threads(void);
/* the name of the kernel set OpenBLAS runs (e.g. "SkylakeX"), or NULL with another BLAS */
const char *lunar_blas_core(void);
int64_t lunar_live_bytes(void);
int64_t lunar_cached_bytes(void);
void lunar_empty_cache(void);

/* ---- RNG, continued ---- */
/* Fills t (any dtype) with 1 at probability p, else 0. */
lunar_status lunar_bernoulli_(lunar_tensor *t, double p, lunar_generator *g);
/* Fills t (uint8, int32 or int64) with integers uniform in [low, high). */
lunar_status lunar_randint_(lunar_tensor *t, int64_t low, int64_t high, lunar_generator *g);

/* ---- scans (reduce family) ----
 * Cumulative sum / product along one dim (0-based, negative from the end); same shape as x.
 * Integer and bool inputs give int64, as in PyTorch. cumprod's gradient is exact where x
 * has zeros (no division by them). */
lunar_status lunar_cumsum(lunar_tensor **out, lunar_tensor *x, int dim);
lunar_status lunar_cumprod(lunar_tensor **out, lunar_tensor *x, int dim);


/* ---- files: safetensors (core/io/safetensors.c) ----
 * The format: an 8-byte little-endian header length N, N bytes of JSON header (padded with
 * spaces to a multiple of 8), then the raw little-endian data of every tensor, back to back.
 * Names and metadata are UTF-8 strings; metadata values are strings. */

/* Writes n named tensors (any strides; saved contiguously) and n_meta metadata pairs to path.
 * The bytes are those of PyTorch-side writers that sort the keys and write compact JSON:
 * "__metadata__" first (when n_meta > 0), then the tensors sorted by name. The file appears
 * atomically: a temp file beside path is written, fsynced and renamed over path; on failure
 * it is removed and path is left as it was. */
lunar_status lunar_save_safetensors(const char *path, int64_t n, const char *const *names,
                                    lunar_tensor *const *tensors, int64_t n_meta,
                                    const char *const *meta_keys,
                                    const char *const *meta_values);

/* What lunar_load_safetensors returns: tensors in file order (by data offset) and the
 * metadata pairs in header order. Everything in it is owned by it. */
typedef struct lunar_safetensors {
    int64_t n;
    char **names;
    lunar_tensor **tensors; /* an entry may be set to NULL by a caller that took it over */
    int64_t n_meta;
    char **meta_keys;
    char **meta_values;
} lunar_safetensors;

/* Reads and validates a whole file (header JSON, dtypes, shapes against offsets, offsets
 * covering the data region exactly once); failures name "load", the path and the problem. */
lunar_status lunar_load_safetensors(lunar_safetensors **out, const char *path);
void lunar_safetensors_free(lunar_safetensors *st); /* NULL is fine */

/* ---- convolution and pooling (ops_conv.c); inputs NCHW ([C, H, W] unbatched is fine) ----
 * Pairs are {height, width}; the 1-d ops read element [0]. Float32 / float64 only. */
typedef struct lunar_conv_params {
    int64_t stride[2], padding[2], dilation[2];
    int64_t output_padding[2]; /* conv_transpose2d only */
    int64_t groups;
    bool same; /* padding "same" (stride 1): total d (k - 1), the odd one at the bottom/right */
} lunar_conv_params;
typedef struct lunar_pool_params {
    int64_t kernel[2], stride[2], padding[2], dilation[2]; /* stride 0 = the kernel */
    bool ceil_mode, count_include_pad;                     /* dilation: max pooling only */
    int64_t divisor_override; /* avg_pool2d only: divide every window sum by it (0 = none) */
} lunar_pool_params;
/* x [N, C_in, H, W], weight [C_out, C_in / groups, kH, kW], bias [C_out] or NULL */
lunar_status lunar_conv2d(lunar_tensor **out, lunar_tensor *x, lunar_tensor *weight,
                          lunar_tensor *bias, const lunar_conv_params *p);
/* x [N, C_in, L], weight [C_out, C_in / groups, k] */
lunar_status lunar_conv1d(lunar_tensor **out, lunar_tensor *x, lunar_tensor *weight,
                          lunar_tensor *bias, const lunar_conv_params *p);
/* x [N, C_in, H, W], weight [C_in, C_out / groups, kH, kW]: the adjoint of conv2d */
lunar_status lunar_conv_transpose2d(lunar_tensor **out, lunar_tensor *x, lunar_tensor *weight,
                                    lunar_tensor *bias, const lunar_conv_params *p);
/* indices (may be NULL): int64, 0-based flat positions h * W + w in each input plane */
lunar_status lunar_max_pool2d(lunar_tensor **out, lunar_tensor **indices, lunar_tensor *x,
                              const lunar_pool_params *p);
lunar_status lunar_max_pool1d(lunar_tensor **out, lunar_tensor **indices, lunar_tensor *x,
                              const lunar_pool_params *p);
lunar_status lunar_avg_pool2d(lunar_tensor **out, lunar_tensor *x, const lunar_pool_params *p);
lunar_status lunar_avg_pool1d(lunar_tensor **out, lunar_tensor *x, const lunar_pool_params *p);
/* (sum over the window of x^norm)^(1 / norm); padding is not taken */
lunar_status lunar_lp_pool2d(lunar_tensor **out, lunar_tensor *x, double norm,
                             const lunar_pool_params *p);
lunar_status lunar_adaptive_avg_pool2d(lunar_tensor **out, lunar_tensor *x, int64_t oh,
                                       int64_t ow);
/* ---- files: IDX and CSV (core/io/idx.c, core/io/csv.c; gzip read through zlib) ---- */

/* Reads an IDX file (MNIST's format), gzipped or not: uint8 data gives a U8 tensor, int8,
 * int16 and int32 give I32, float F32, double F64, in the file's shape. The sizes are
 * checked against the file's length; failures name read_idx and the path. */
lunar_status lunar_read_idx(lunar_tensor **out, const char *path);

typedef enum lunar_csv_kind {
    LUNAR_CSV_NUMBER, /* the default: text that is not a number is an error */
    LUNAR_CSV_TEXT,   /* labels: distinct texts become 1, 2, ... in order of first appearance */
    LUNAR_CSV_AUTO,   /* numbers, unless some field is not one: then text */
} lunar_csv_kind;
/* A column's kind, by name, or (name NULL) by 0-based index, negative from the end. */
typedef struct lunar_csv_column {
    const char *name;
    int64_t index;
    lunar_csv_kind kind;
} lunar_csv_column;
/* What lunar_read_csv returns; everything in it is owned by it. */
typedef struct lunar_csv {
    int64_t rows, cols;
    char **names;       /* the header: cols names */
    lunar_tensor *data; /* [rows, cols]; missing fields are NaN; text columns hold codes */
    int64_t *n_levels;  /* per column: its number of distinct texts (0 for numbers) */
    char ***levels;     /* per column: NULL for numbers, else the texts of codes 1..n */
} lunar_csv;
/* Reads a CSV file with a header row (RFC 4180 quoting; empty, NA, N/A, nan and null are
 * missing). dt is F32 or F64. Errors name read_csv, the path, the line and the column. */
lunar_status lunar_read_csv(lunar_csv **out, const char *path, int n_spec,
                            const lunar_csv_column *spec, lunar_dtype dt);
void lunar_csv_free(lunar_csv *c); /* NULL is fine */
/* ---- optimizer steps (ops_optim.c) ----
 * One fused in-place update of a parameter from its gradient and state tensors, with
 * PyTorch 1.13's single-tensor formulas. State slots by kind (NULL where unused):
 *   SGD      [momentum_buffer]            (NULL when momentum is 0)
 *   ADAGRAD  [sum]
 *   ADADELTA [square_avg, acc_delta]      (rho = beta1)
 *   RMSPROP  [square_avg, momentum_buffer, grad_avg]  (alpha = beta1; buffers by option)
 *   ADAM     [exp_avg, exp_avg_sq, max_exp_avg_sq]    (decoupled = AdamW; max by amsgrad)
 *   ADAMAX   [exp_avg, exp_inf]
 *   NADAM    [exp_avg, exp_avg_sq]         (mu_product is read and updated here)
 * step counts this step (1 on the first). Param, grad and state share dtype (float32 or
 * float64), shape and device; param and state must be contiguous. */
typedef enum lunar_optim_kind {
    LUNAR_OPTIM_SGD,
    LUNAR_OPTIM_ADAGRAD,
    LUNAR_OPTIM_ADADELTA,
    LUNAR_OPTIM_RMSPROP,
    LUNAR_OPTIM_ADAM,
    LUNAR_OPTIM_ADAMAX,
    LUNAR_OPTIM_NADAM,
    LUNAR_OPTIM_COUNT
} lunar_optim_kind;

typedef struct lunar_optim_hyper {
    double lr, weight_decay, eps;
    double momentum, dampening; /* SGD; RMSprop's momentum */
    double beta1, beta2;        /* Adam family; Adadelta's rho and RMSprop's alpha in beta1 */
    double lr_decay;            /* Adagrad */
    double momentum_decay;      /* NAdam */
    double mu_product;          /* NAdam: product of the mu_t so far (1 before the first step) */
    int64_t step;
    bool nesterov, maximize, centered, amsgrad, decoupled;
    /* filled by lunar_optim_step for the kernels: per-step scalars */
    double c1, c2, c3;
} lunar_optim_hyper;

lunar_status lunar_optim_step(lunar_optim_kind kind, lunar_tensor *param, lunar_tensor *grad,
                              lunar_tensor *const *state, lunar_optim_hyper *h);
/* ---- nn: softmax, losses, normalisation (ops_nn.c); dims 0-based ----
 * All take float tensors and are autograd-tracked (fused backward kernels for softmax,
 * log_softmax, cross_entropy with class targets, and the normalisation of the norms). */
/* exp(x - max) / sum, along dim; log_softmax = x - max - log(sum(exp(x - max))) */
lunar_status lunar_softmax(lunar_tensor **out, lunar_tensor *x, int dim);
lunar_status lunar_log_softmax(lunar_tensor **out, lunar_tensor *x, int dim);

typedef enum lunar_reduction {
    LUNAR_REDUCTION_NONE, LUNAR_REDUCTION_MEAN, LUNAR_REDUCTION_SUM
} lunar_reduction;
typedef struct lunar_loss_opts {
    lunar_tensor *weight;    /* [C] class weights, or NULL */
    int64_t ignore_index;    /* class targets equal to it count for nothing (PyTorch: -100) */
    lunar_reduction reduction;
    double label_smoothing;  /* cross_entropy: in [0, 1] */
    int64_t class_base;      /* added to class numbers in messages (1 for Lua's classes) */
} lunar_loss_opts;
/* x: logits [N, C, d...] or [C]. target: class indices [N, d...] or [] (int64 / int32,
 * 0-based), or probabilities of x's shape (float). Mean with class targets divides by the
 * summed weights of the non-ignored targets, as PyTorch does. */
lunar_status lunar_cross_entropy(lunar_tensor **out, lunar_tensor *x, lunar_tensor *target,
                                 const lunar_loss_opts *opts);
/* x: log-probabilities [N, C, d...] or [C]; target: class indices as for cross_entropy
 * (label_smoothing is not used) */
lunar_status lunar_nll_loss(lunar_tensor **out, lunar_tensor *x, lunar_tensor *target,
                            const lunar_loss_opts *opts);
/* x [N, C, ...]; running_mean/var [C] (both or neither), weight/bias [C] (or NULL). Training
 * normalises with the batch statistics (biased variance) and updates the running ones in
 * place: r = (1 - momentum) r + momentum s, with the unbiased variance; eval uses them. */
lunar_status lunar_batch_norm(lunar_tensor **out, lunar_tensor *x, lunar_tensor *running_mean,
                              lunar_tensor *running_var, lunar_tensor *weight,
                              lunar_tensor *bias, bool training, double momentum, double eps);
/* normalises over the last n_norm dims (which must equal normalized_shape); weight and bias
 * have normalized_shape (or are NULL) */
lunar_status lunar_layer_norm(lunar_tensor **out, lunar_tensor *x, int n_norm,
                              const int64_t *normalized_shape, lunar_tensor *weight,
                              lunar_tensor *bias, double eps);
/* x [N, C, ...]: statistics per sample over each of `groups` runs of C / groups channels;
 * weight/bias [C] */
lunar_status lunar_group_norm(lunar_tensor **out, lunar_tensor *x, int64_t groups,
                              lunar_tensor *weight, lunar_tensor *bias, double eps);
/* ---- devices (core/device.c; OpenCL in core/opencl/) ----
 * Device names: "cpu", "opencl" (the first OpenCL device), "opencl:N" (N from 1, over all
 * platforms). Without an OpenCL platform lunar runs on the CPU; asking for an OpenCL
 * device then fails with LUNAR_ERR_DEVICE. */
typedef struct lunar_device_info {
    char name[256], platform[256], driver[128], type[16]; /* type: gpu, cpu, accelerator */
    int64_t global_mem;                                   /* bytes */
    bool fp64;
} lunar_device_info;
int lunar_opencl_device_count(void);
/* Releases the OpenCL buffer pools of every device (nothing without OpenCL). */
void lunar_opencl_empty_cache(void);
lunar_status lunar_opencl_device_info(int i, lunar_device_info *info); /* i 0-based */
/* x on that device (x itself when it is there already); autograd-tracked */
lunar_status lunar_to_device(lunar_tensor **out, lunar_tensor *x, const char *device);
/* "cpu" or "opencl:N" into buf; returns buf */
char *lunar_tensor_device_name(const lunar_tensor *t, char *buf, size_t n);

#endif
