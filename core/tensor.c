/*
 * tensor.c - storage, tensors, dtypes, broadcasting, errors and the creation functions.
 * Everything here is data only: nothing records autograd (views with backward rules are
 * in ops_view.c).
 */
#include "lunar-impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ---- */

static _Thread_local char last_error[1024];

lunar_status lunar_fail(lunar_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return status;
}

const char *lunar_last_error(void) { return last_error; }

const char *lunar_status_name(lunar_status s) {
    static const char *names[] = {"ok",     "bad argument", "shape",    "dtype", "index",
                                  "memory", "io",           "device",   "autograd",
                                  "unsupported"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

/* ---- dtypes ---- */

static const char *dtype_names[LUNAR_DTYPE_COUNT] = {"bool",  "uint8",   "int32",
                                                     "int64", "float32", "float64"};
static const size_t dtype_sizes[LUNAR_DTYPE_COUNT] = {1, 1, 4, 8, 4, 8};

const char *lunar_dtype_name(lunar_dtype t) {
    return (unsigned)t < LUNAR_DTYPE_COUNT ? dtype_names[t] : "?";
}
size_t lunar_dtype_size(lunar_dtype t) { return dtype_sizes[t]; }
bool lunar_dtype_is_float(lunar_dtype t) { return t == LUNAR_F32 || t == LUNAR_F64; }
lunar_dtype lunar_promote(lunar_dtype a, lunar_dtype b) { return a > b ? a : b; }

/* ---- shapes ---- */

int64_t lunar_shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    return n;
}

bool lunar_shape_equal(int na, const int64_t *a, int nb, const int64_t *b) {
    if (na != nb) return false;
    for (int d = 0; d < na; d++)
        if (a[d] != b[d]) return false;
    return true;
}

void lunar_contiguous_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        strides[d] = s;
        s *= shape[d] > 0 ? shape[d] : 1;
    }
}

char *lunar_shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int d = 0; d < ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

lunar_status lunar_wrap_dim(const char *op, int *dim, int ndim) {
    int n = ndim > 0 ? ndim : 1;
    if (*dim < -n || *dim >= n)
        return lunar_fail(LUNAR_ERR_INDEX, "%s: dim %d out of range for a %d-d tensor", op,
                          *dim + 1, ndim);
    if (*dim < 0) *dim += n;
    return LUNAR_OK;
}

lunar_status lunar_broadcast_shape(const char *op, int na, const int64_t *a, int nb,
                                   const int64_t *b, int *nout, int64_t *out) {
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int64_t da = i < n - na ? 1 : a[i - (n - na)];
        int64_t db = i < n - nb ? 1 : b[i - (n - nb)];
        if (da != db && da != 1 && db != 1) {
            char sa[128], sb[128];
            return lunar_fail(LUNAR_ERR_SHAPE, "%s: shapes %s and %s cannot be broadcast", op,
                              lunar_shape_str(sa, sizeof sa, na, a),
                              lunar_shape_str(sb, sizeof sb, nb, b));
        }
        out[i] = da == 1 ? db : da;
    }
    *nout = n;
    return LUNAR_OK;
}

/* ---- storage and tensors ---- */

/* Freed tensor and storage structs are kept for reuse: a tiny op allocates both, and
 * malloc/free were a fifth of its instructions. Single-threaded by design: structs are
 * only made and freed by the thread that runs ops. The pool must hold what one garbage
 * collection frees: a loop of tiny ops frees about 10^4 tensors (2 structs each) per cycle,
 * and with 4096 slots most structs still came from malloc (tiny add: 2928 -> 2519
 * instructions per op). 65536 slots of 184 bytes keep at most 12 MB. */
#define POOL_MAX 65536
typedef union pooled {
    union pooled *next;
    lunar_tensor t;
    lunar_storage s;
} pooled;
#ifndef LUNAR_SANITIZE
static pooled *pool;
static int pool_len;
#endif

static void *pool_get(void) {
#ifndef LUNAR_SANITIZE
    if (pool) {
        pooled *p = pool;
        pool = p->next;
        pool_len--;
        return p;
    }
#endif
    return malloc(sizeof(pooled));
}

static void pool_put(void *p) {
#ifndef LUNAR_SANITIZE
    if (pool_len < POOL_MAX) {
        pooled *q = p;
        q->next = pool;
        pool = q;
        pool_len++;
        return;
    }
#endif
    free(p);
}

lunar_status lunar_storage_new(lunar_storage **out, const lunar_backend *be, int device,
                               size_t nbytes) {
    lunar_storage *s = pool_get();
    if (!s) return lunar_fail(LUNAR_ERR_MEMORY, "out of memory allocating a storage");
    s->data = be->alloc(device, nbytes);
    if (!s->data) {
        pool_put(s);
        return lunar_fail(LUNAR_ERR_MEMORY, "out of memory allocating %zu bytes on %s", nbytes,
                          be->name);
    }
    s->refcount = 1;
    s->nbytes = nbytes;
    s->backend = be;
    s->device = device;
    s->version = 0;
    *out = s;
    return LUNAR_OK;
}

void lunar_storage_release(lunar_storage *s) {
    if (!s || --s->refcount > 0) return;
    s->backend->free(s->device, s->data, s->nbytes);
    pool_put(s);
}

static lunar_tensor *tensor_struct(void) {
    lunar_tensor *t = pool_get();
    if (t) {
        memset(t, 0, sizeof *t);
        t->refcount = 1;
    }
    return t;
}

lunar_status lunar_tensor_new(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt,
                              const lunar_tensor *like) {
    return lunar_tensor_new_on(out, ndim, shape, dt,
                               like ? like->storage->backend : &lunar_cpu_backend,
                               like ? like->storage->device : 0);
}

lunar_status lunar_tensor_new_on(lunar_tensor **out, int ndim, const int64_t *shape,
                                 lunar_dtype dt, const lunar_backend *be, int device) {
    if (ndim < 0 || ndim > LUNAR_MAX_DIMS)
        return lunar_fail(LUNAR_ERR_SHAPE, "tensors have at most %d dims, got %d",
                          LUNAR_MAX_DIMS, ndim);
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0)
            return lunar_fail(LUNAR_ERR_SHAPE, "negative size %lld in dim %d",
                              (long long)shape[d], d + 1);
    lunar_tensor *t = tensor_struct();
    if (!t) return lunar_fail(LUNAR_ERR_MEMORY, "out of memory");
    int64_t n = lunar_shape_numel(ndim, shape);
    lunar_status st = lunar_storage_new(&t->storage, be, device,
                                        (size_t)n * lunar_dtype_size(dt));
    if (st != LUNAR_OK) {
        pool_put(t);
        return st;
    }
    t->ndim = ndim;
    t->dtype = dt;
    if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    lunar_contiguous_strides(ndim, shape, t->strides);
    *out = t;
    return LUNAR_OK;
}

lunar_tensor *lunar_tensor_alias(const lunar_tensor *x, int ndim, const int64_t *shape,
                                 const int64_t *strides, int64_t offset) {
    lunar_tensor *t = tensor_struct();
    if (!t) return NULL;
    t->ndim = ndim;
    t->dtype = x->dtype;
    t->offset = offset;
    if (ndim) {
        memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
        memcpy(t->strides, strides, sizeof(int64_t) * (size_t)ndim);
    }
    t->storage = x->storage;
    x->storage->refcount++;
    return t;
}

void lunar_tensor_retain(lunar_tensor *t) {
    if (t) t->refcount++;
}

void lunar_tensor_release(lunar_tensor *t) {
    if (!t || --t->refcount > 0) return;
    lunar_storage_release(t->storage);
    lunar_tensor_release(t->grad);
    lunar_node_release(t->grad_fn);
    lunar_hooks_free(t->hooks);
    pool_put(t);
}

int lunar_tensor_ndim(const lunar_tensor *t) { return t->ndim; }
const int64_t *lunar_tensor_shape(const lunar_tensor *t) { return t->shape; }
const int64_t *lunar_tensor_strides(const lunar_tensor *t) { return t->strides; }
int64_t lunar_tensor_offset(const lunar_tensor *t) { return t->offset; }
int64_t lunar_tensor_numel(const lunar_tensor *t) { return lunar_shape_numel(t->ndim, t->shape); }
lunar_dtype lunar_tensor_dtype(const lunar_tensor *t) { return t->dtype; }
const lunar_backend *lunar_tensor_backend(const lunar_tensor *t) { return t->storage->backend; }
bool lunar_tensor_same_storage(const lunar_tensor *a, const lunar_tensor *b) {
    return a->storage == b->storage;
}
void lunar_tensor_bump_version(lunar_tensor *t) { t->storage->version++; }

void *lunar_tensor_data(const lunar_tensor *t) {
    return (char *)t->storage->data + t->offset * (int64_t)lunar_dtype_size(t->dtype);
}

bool lunar_tensor_is_contiguous(const lunar_tensor *t) {
    int64_t s = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] == 1) continue;
        if (t->strides[d] != s) return false;
        s *= t->shape[d];
    }
    return true;
}

lunar_status lunar_same_device(const char *op, const lunar_tensor *a, const lunar_tensor *b) {
    if (a->storage->backend == b->storage->backend && a->storage->device == b->storage->device)
        return LUNAR_OK;
    char da[64], db[64];
    return lunar_fail(LUNAR_ERR_DEVICE, "%s: tensors on different devices (%s and %s)", op,
                      lunar_tensor_device_name(a, da, sizeof da),
                      lunar_tensor_device_name(b, db, sizeof db));
}

lunar_tensor *lunar_broadcast_view(const lunar_tensor *x, int ndim, const int64_t *shape) {
    int64_t strides[LUNAR_MAX_DIMS];
    int lead = ndim - x->ndim;
    for (int d = 0; d < ndim; d++) {
        int xd = d - lead;
        strides[d] = (xd < 0 || x->shape[xd] == 1) ? 0 : x->strides[xd];
    }
    return lunar_tensor_alias(x, ndim, shape, strides, x->offset);
}

/* ---- raw data movement ---- */

lunar_status lunar_raw_copy(lunar_tensor *dst, const lunar_tensor *src) {
    LUNAR_CHECK(lunar_same_device("copy", dst, src));
    return LUNAR_KERNEL(dst->storage->backend, copy, dst, src);
}

lunar_status lunar_raw_contiguous(lunar_tensor **out, const lunar_tensor *x) {
    if (lunar_tensor_is_contiguous(x)) {
        *out = lunar_tensor_alias(x, x->ndim, x->shape, x->strides, x->offset);
        return *out ? LUNAR_OK : lunar_fail(LUNAR_ERR_MEMORY, "out of memory");
    }
    LUNAR_CHECK(lunar_tensor_new(out, x->ndim, x->shape, x->dtype, x));
    lunar_status st = lunar_raw_copy(*out, x);
    if (st != LUNAR_OK) lunar_tensor_release(*out);
    return st;
}

lunar_status lunar_raw_cast(lunar_tensor **out, const lunar_tensor *x, lunar_dtype dt) {
    LUNAR_CHECK(lunar_tensor_new(out, x->ndim, x->shape, dt, x));
    lunar_status st = lunar_raw_copy(*out, x);
    if (st != LUNAR_OK) lunar_tensor_release(*out);
    return st;
}

lunar_status lunar_sum_to(lunar_tensor **out, lunar_tensor *g, int ndim, const int64_t *shape) {
    if (lunar_shape_equal(g->ndim, g->shape, ndim, shape)) {
        lunar_tensor_retain(g);
        *out = g;
        return LUNAR_OK;
    }
    /* reduce the leading extra dims and the dims where shape has 1 */
    int lead = g->ndim - ndim;
    uint32_t mask = 0;
    for (int d = 0; d < g->ndim; d++)
        if (d < lead || (shape[d - lead] == 1 && g->shape[d] != 1)) mask |= 1u << d;
    lunar_tensor *r;
    if (mask) {
        int64_t kshape[LUNAR_MAX_DIMS];
        for (int d = 0; d < g->ndim; d++) kshape[d] = (mask >> d) & 1 ? 1 : g->shape[d];
        LUNAR_CHECK(lunar_tensor_new(&r, g->ndim, kshape, g->dtype, g));
        lunar_status st = LUNAR_KERNEL(g->storage->backend, reduce, LUNAR_OP_SUM, r, g, mask, 0);
        if (st != LUNAR_OK) {
            lunar_tensor_release(r);
            return st;
        }
    } else {
        r = g;
        lunar_tensor_retain(r);
    }
    /* drop the leading dims: r is contiguous, so a reshape is a relabel */
    int64_t strides[LUNAR_MAX_DIMS];
    lunar_contiguous_strides(ndim, shape, strides);
    lunar_tensor *v = lunar_tensor_alias(r, ndim, shape, strides, r->offset);
    if (!lunar_tensor_is_contiguous(r)) {
        lunar_tensor_release(v);
        lunar_tensor *c;
        lunar_status st = lunar_raw_contiguous(&c, r);
        lunar_tensor_release(r);
        if (st != LUNAR_OK) return st;
        v = lunar_tensor_alias(c, ndim, shape, strides, c->offset);
        lunar_tensor_release(c);
    } else {
        lunar_tensor_release(r);
    }
    *out = v;
    return v ? LUNAR_OK : lunar_fail(LUNAR_ERR_MEMORY, "out of memory");
}

/* ---- creation ---- */

lunar_status lunar_empty(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt) {
    return lunar_tensor_new(out, ndim, shape, dt, NULL);
}

lunar_status lunar_full_like(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt,
                             double value, const lunar_tensor *like) {
    LUNAR_CHECK(lunar_tensor_new(out, ndim, shape, dt, like));
    lunar_status st = LUNAR_KERNEL((*out)->storage->backend, fill, *out, value);
    if (st != LUNAR_OK) lunar_tensor_release(*out);
    return st;
}

lunar_status lunar_full(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt,
                        double value) {
    return lunar_full_like(out, ndim, shape, dt, value, NULL);
}

lunar_status lunar_zeros(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt) {
    return lunar_full(out, ndim, shape, dt, 0);
}

lunar_status lunar_ones(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt) {
    return lunar_full(out, ndim, shape, dt, 1);
}

lunar_status lunar_scalar(lunar_tensor **out, double value, lunar_dtype dt) {
    return lunar_full(out, 0, NULL, dt, value);
}

lunar_status lunar_from_data(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt,
                             const void *data) {
    LUNAR_CHECK(lunar_tensor_new(out, ndim, shape, dt, NULL));
    size_t n = (size_t)lunar_tensor_numel(*out) * lunar_dtype_size(dt);
    lunar_status st = (*out)->storage->backend->write((*out)->storage, 0, data, n);
    if (st != LUNAR_OK) lunar_tensor_release(*out);
    return st;
}

lunar_status lunar_arange(lunar_tensor **out, double start, double stop, double step,
                          lunar_dtype dt) {
    if (step == 0 || !isfinite(start) || !isfinite(stop) || !isfinite(step))
        return lunar_fail(LUNAR_ERR_ARG, "arange: bad range (%g, %g, step %g)", start, stop,
                          step);
    double n = ceil((stop - start) / step);
    if (n < 0) n = 0;
    if (n > 1e15) return lunar_fail(LUNAR_ERR_ARG, "arange: %g elements is too many", n);
    int64_t len = (int64_t)n;
    LUNAR_CHECK(lunar_tensor_new(out, 1, &len, dt, NULL));
    lunar_status st = LUNAR_KERNEL((*out)->storage->backend, arange, *out, start, step);
    if (st != LUNAR_OK) lunar_tensor_release(*out);
    return st;
}

lunar_status lunar_linspace(lunar_tensor **out, double start, double stop, int64_t n,
                            lunar_dtype dt) {
    if (n < 0) return lunar_fail(LUNAR_ERR_ARG, "linspace: negative count %lld", (long long)n);
    LUNAR_CHECK(lunar_tensor_new(out, 1, &n, dt, NULL));
    double step = n > 1 ? (stop - start) / (double)(n - 1) : 0;
    lunar_status st = LUNAR_KERNEL((*out)->storage->backend, arange, *out, start, step);
    if (st != LUNAR_OK) lunar_tensor_release(*out);
    return st;
}

lunar_status lunar_eye(lunar_tensor **out, int64_t n, int64_t m, lunar_dtype dt) {
    if (n < 0 || m < 0)
        return lunar_fail(LUNAR_ERR_ARG, "eye: negative size (%lld, %lld)", (long long)n,
                          (long long)m);
    int64_t shape[2] = {n, m};
    LUNAR_CHECK(lunar_zeros(out, 2, shape, dt));
    /* the diagonal is a strided view with stride m + 1 */
    int64_t k = n < m ? n : m, stride = m + 1;
    lunar_tensor *diag = lunar_tensor_alias(*out, 1, &k, &stride, 0);
    lunar_status st = diag ? LUNAR_KERNEL(diag->storage->backend, fill, diag, 1)
                           : lunar_fail(LUNAR_ERR_MEMORY, "out of memory");
    lunar_tensor_release(diag);
    if (st != LUNAR_OK) lunar_tensor_release(*out);
    return st;
}
