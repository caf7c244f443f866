/*
 * index.c - CPU kernels that move elements by index: gather and index_select, scatter and
 * index_add, sort (a stable merge sort), count_nonzero and nonzero.
 *
 * gather and index_select share one loop, and so do scatter and index_add: each walks the
 * index's shape with x seen through a view whose stride along dim is 0, so that an
 * element's address is the view's address plus index * (x's stride along dim). index_select
 * and index_add pass their 1-D index broadcast to the shape walked. The op layer checks the
 * index range before calling in; these loops still skip an out-of-range index (and report
 * it) rather than touch memory outside the tensor.
 */
#include "cpu.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* x as seen by the index loops: shape `shape` (the walked shape), x's strides, 0 at dim. */
static lunar_tensor along_view(const lunar_tensor *x, int ndim, const int64_t *shape, int dim) {
    lunar_tensor v = *x;
    v.ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        v.shape[d] = shape[d];
        v.strides[d] = d == dim ? 0 : x->strides[d];
    }
    return v;
}

/* A 1-D index broadcast to `shape`, running along dim. */
static lunar_tensor index_view(const lunar_tensor *index, int ndim, const int64_t *shape,
                               int dim) {
    lunar_tensor v = *index;
    v.ndim = ndim;
    for (int d = 0; d < ndim; d++) {
        v.shape[d] = shape[d];
        v.strides[d] = d == dim ? index->strides[0] : 0;
    }
    return v;
}

static lunar_status bad_index(const char *op) {
    return lunar_fail(LUNAR_ERR_INDEX, "%s: index out of range", op);
}

/* ---- gather / index_select ---- */

typedef struct {
    size_t es;    /* element size */
    int64_t step; /* x's stride along dim, in bytes */
    int64_t size; /* x's size along dim */
    int bad;
} gather_ctx;

/* operands: out, x (along view), index (int64) */
static void gather_row(char **p, const int64_t *s, int64_t n, void *ctx) {
    gather_ctx *c = ctx;
    for (int64_t i = 0; i < n; i++) {
        int64_t j = *(const int64_t *)(p[2] + i * s[2]);
        char *o = p[0] + i * s[0];
        if (j < 0 || j >= c->size) {
            memset(o, 0, c->es);
            __atomic_store_n(&c->bad, 1, __ATOMIC_RELAXED);
            continue;
        }
        const char *x = p[1] + i * s[1] + j * c->step;
        switch (c->es) {
        case 1: *(uint8_t *)o = *(const uint8_t *)x; break;
        case 4: *(uint32_t *)o = *(const uint32_t *)x; break;
        default: *(uint64_t *)o = *(const uint64_t *)x; break;
        }
    }
}

static lunar_status gather_run(const char *op, lunar_tensor *out, const lunar_tensor *x, int dim,
                               const lunar_tensor *index) {
    if (lunar_tensor_numel(out) == 0) return LUNAR_OK;
    size_t es = lunar_dtype_size(x->dtype);
    gather_ctx c = {es, x->strides[dim] * (int64_t)es, x->shape[dim], 0};
    lunar_tensor xv = along_view(x, out->ndim, out->shape, dim);
    const lunar_tensor *ts[3] = {out, &xv, index};
    cpu_foreach(3, ts, gather_row, &c);
    return c.bad ? bad_index(op) : LUNAR_OK;
}

/* out: index's shape; x: same ndim, sizes >= index's outside dim */
lunar_status cpu_gather(lunar_tensor *out, const lunar_tensor *x, int dim,
                        const lunar_tensor *index) {
    return gather_run("gather", out, x, dim, index);
}

/* x: [..., n, ...] (n at dim), index: [k] -> out: [..., k, ...] */
lunar_status cpu_index_select(lunar_tensor *out, const lunar_tensor *x, int dim,
                              const lunar_tensor *index) {
    lunar_tensor iv = index_view(index, out->ndim, out->shape, dim);
    return gather_run("index_select", out, x, dim, &iv);
}

/* ---- scatter / index_add ---- */

typedef struct {
    lunar_dtype dt;
    bool accumulate;
    double alpha;
    int64_t step, size;
    int bad;
} scatter_ctx;

#define SCATTER_ADD(T)                                                                        \
    do {                                                                                      \
        T *o = (T *)dst;                                                                      \
        T v = *(const T *)src;                                                                \
        *o = (T)(*o + (c->alpha == 1 ? v : (T)(c->alpha * (double)v)));                       \
    } while (0)

/* operands: dst (along view), src, index (int64) */
static void scatter_row(char **p, const int64_t *s, int64_t n, void *ctx) {
    scatter_ctx *c = ctx;
    size_t es = lunar_dtype_size(c->dt);
    for (int64_t i = 0; i < n; i++) {
        int64_t j = *(const int64_t *)(p[2] + i * s[2]);
        if (j < 0 || j >= c->size) {
            c->bad = 1;
            continue;
        }
        char *dst = p[0] + i * s[0] + j * c->step;
        const char *src = p[1] + i * s[1];
        if (!c->accumulate) {
            memcpy(dst, src, es);
            continue;
        }
        switch (c->dt) {
        case LUNAR_BOOL: *(uint8_t *)dst = *(uint8_t *)dst || *(const uint8_t *)src; break;
        case LUNAR_U8: SCATTER_ADD(uint8_t); break;
        case LUNAR_I32: SCATTER_ADD(int32_t); break;
        case LUNAR_I64: SCATTER_ADD(int64_t); break;
        case LUNAR_F32: SCATTER_ADD(float); break;
        case LUNAR_F64: SCATTER_ADD(double); break;
        default: break;
        }
    }
}

/* Walks `walk` (the index's shape) on one thread: several elements may land on one place. */
static lunar_status scatter_run(const char *op, lunar_tensor *dst, int dim,
                                const lunar_tensor *index, const lunar_tensor *src,
                                bool accumulate, double alpha) {
    if (lunar_tensor_numel(index) == 0) return LUNAR_OK;
    scatter_ctx c = {dst->dtype, accumulate, alpha,
                     dst->strides[dim] * (int64_t)lunar_dtype_size(dst->dtype), dst->shape[dim],
                     0};
    lunar_tensor dv = along_view(dst, index->ndim, index->shape, dim);
    lunar_tensor sv = *src; /* src may be larger than index: walk index's part of it */
    for (int d = 0; d < index->ndim; d++) sv.shape[d] = index->shape[d];
    const lunar_tensor *ts[3] = {&dv, &sv, index};
    cpu_iter it;
    cpu_iter_init(&it, 3, ts);
    cpu_iter_range(&it, 0, it.numel, scatter_row, &c);
    return c.bad ? bad_index(op) : LUNAR_OK;
}

/* dst: [...]; index: same ndim, sizes <= dst's outside dim; src: sizes >= index's */
lunar_status cpu_scatter(lunar_tensor *dst, int dim, const lunar_tensor *index,
                         const lunar_tensor *src, bool accumulate) {
    return scatter_run("scatter", dst, dim, index, src, accumulate, 1);
}

/* dst: [..., n, ...]; index: [k]; src: [..., k, ...] */
lunar_status cpu_index_add(lunar_tensor *dst, int dim, const lunar_tensor *index,
                           const lunar_tensor *src, double alpha) {
    lunar_tensor iv = index_view(index, src->ndim, src->shape, dim);
    return scatter_run("index_add", dst, dim, &iv, src, true, alpha);
}

/* ---- sort ---- */

/* NaN sorts as the largest value, as in PyTorch. */
#define LESS_FLOAT(a, b) ((a) < (b) || ((b) != (b) && (a) == (a)))
#define LESS_INT(a, b) ((a) < (b))

/* A bottom-up merge sort of keys k with their positions ix; k2/ix2 are scratch of the same
 * size. Stable: on a tie the element from the left run goes first, in both directions.
 * Leaves the result in *k / *ix (the pointers swap with the scratch). */
#define DEFINE_MSORT(NAME, T, LESS)                                                           \
    static void NAME(T **pk, int64_t **pix, T **pk2, int64_t **pix2, int64_t n, bool desc) {  \
        T *k = *pk, *k2 = *pk2;                                                               \
        int64_t *ix = *pix, *ix2 = *pix2;                                                     \
        for (int64_t w = 1; w < n; w *= 2) {                                                  \
            for (int64_t lo = 0; lo < n; lo += 2 * w) {                                       \
                int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;  \
                int64_t a = lo, b = mid, o = lo;                                              \
                while (a < mid && b < hi) {                                                   \
                    bool take_b = desc ? LESS(k[a], k[b]) : LESS(k[b], k[a]);                 \
                    if (take_b) {                                                             \
                        k2[o] = k[b];                                                         \
                        ix2[o++] = ix[b++];                                                   \
                    } else {                                                                  \
                        k2[o] = k[a];                                                         \
                        ix2[o++] = ix[a++];                                                   \
                    }                                                                         \
                }                                                                             \
                for (; a < mid; a++, o++) k2[o] = k[a], ix2[o] = ix[a];                       \
                for (; b < hi; b++, o++) k2[o] = k[b], ix2[o] = ix[b];                        \
            }                                                                                 \
            T *tk = k;                                                                        \
            k = k2, k2 = tk;                                                                  \
            int64_t *ti = ix;                                                                 \
            ix = ix2, ix2 = ti;                                                               \
        }                                                                                     \
        *pk = k, *pk2 = k2, *pix = ix, *pix2 = ix2;                                           \
    }

DEFINE_MSORT(msort_u8, uint8_t, LESS_INT)
DEFINE_MSORT(msort_i32, int32_t, LESS_INT)
DEFINE_MSORT(msort_i64, int64_t, LESS_INT)
DEFINE_MSORT(msort_f32, float, LESS_FLOAT)
DEFINE_MSORT(msort_f64, double, LESS_FLOAT)

/* One slice: load the keys (stride xs), sort, store values (vs) and indices (is). */
#define SORT_SLICE(T, FN)                                                                     \
    do {                                                                                      \
        int64_t *ix = (int64_t *)buf, *ix2 = ix + n; /* positions first: aligned */          \
        T *k = (T *)(ix2 + n), *k2 = k + n;                                                   \
        for (int64_t i = 0; i < n; i++) {                                                     \
            k[i] = *(const T *)(xp + i * xs);                                                 \
            ix[i] = i;                                                                        \
        }                                                                                     \
        FN(&k, &ix, &k2, &ix2, n, desc);                                                      \
        for (int64_t i = 0; i < n; i++) {                                                     \
            *(T *)(vp + i * vs) = k[i];                                                       \
            *(int64_t *)(ip + i * is) = ix[i];                                                \
        }                                                                                     \
    } while (0)

/* The byte offset of slice number `slice` (dim left out) in a tensor of x's shape. */
static int64_t slice_offset(const lunar_tensor *t, int dim, int64_t slice) {
    int64_t off = 0;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (d == dim) continue;
        off += (slice % t->shape[d]) * t->strides[d];
        slice /= t->shape[d];
    }
    return off * (int64_t)lunar_dtype_size(t->dtype);
}

/* x: [..., n, ...] -> values: x's shape and dtype, indices: x's shape, int64, 0-based */
lunar_status cpu_sort(lunar_tensor *values, lunar_tensor *indices, const lunar_tensor *x,
                      int dim, bool descending) {
    int64_t numel = lunar_tensor_numel(x);
    if (numel == 0) return LUNAR_OK;
    int64_t n = x->ndim ? x->shape[dim] : 1, slices = numel / n;
    int nth = cpu_threads();
    if (slices < nth || numel < LUNAR_GRAIN) nth = 1;
    size_t per = (size_t)n * 2 * (sizeof(double) + sizeof(int64_t)); /* keys, positions, x2 */
    char *scratch = malloc(per * (size_t)nth);
    if (!scratch) return lunar_fail(LUNAR_ERR_MEMORY, "sort: out of memory");
    size_t es = lunar_dtype_size(x->dtype);
    int64_t xs = x->ndim ? x->strides[dim] * (int64_t)es : 0;
    int64_t vs = values->ndim ? values->strides[dim] * (int64_t)es : 0;
    int64_t is = indices->ndim ? indices->strides[dim] * (int64_t)sizeof(int64_t) : 0;
    bool desc = descending;
#pragma omp parallel for num_threads(nth) schedule(static) if (nth > 1)
    for (int64_t sl = 0; sl < slices; sl++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        char *buf = scratch + per * (size_t)tid;
        const char *xp = cpu_ptr(x) + slice_offset(x, dim, sl);
        char *vp = cpu_ptr(values) + slice_offset(values, dim, sl);
        char *ip = cpu_ptr(indices) + slice_offset(indices, dim, sl);
        switch (x->dtype) {
        case LUNAR_BOOL:
        case LUNAR_U8: SORT_SLICE(uint8_t, msort_u8); break;
        case LUNAR_I32: SORT_SLICE(int32_t, msort_i32); break;
        case LUNAR_I64: SORT_SLICE(int64_t, msort_i64); break;
        case LUNAR_F32: SORT_SLICE(float, msort_f32); break;
        case LUNAR_F64: SORT_SLICE(double, msort_f64); break;
        default: break;
        }
    }
    free(scratch);
    return LUNAR_OK;
}

/* ---- non-zeros ---- */

/* Whether the element at p is non-zero (NaN counts as non-zero). */
static inline bool is_nonzero(lunar_dtype dt, const char *p) {
    switch (dt) {
    case LUNAR_BOOL:
    case LUNAR_U8: return *(const uint8_t *)p != 0;
    case LUNAR_I32: return *(const int32_t *)p != 0;
    case LUNAR_I64: return *(const int64_t *)p != 0;
    case LUNAR_F32: return *(const float *)p != 0;
    case LUNAR_F64: return *(const double *)p != 0;
    default: return false;
    }
}

static void count_row(char **p, const int64_t *s, int64_t n, void *ctx) {
    int64_t *count = ctx;
    lunar_dtype dt = (lunar_dtype)count[1];
    for (int64_t i = 0; i < n; i++) count[0] += is_nonzero(dt, p[0] + i * s[0]);
}

/* x: any shape -> *count */
lunar_status cpu_count_nonzero(int64_t *count, const lunar_tensor *x) {
    int64_t c[2] = {0, x->dtype};
    if (lunar_tensor_numel(x) > 0) {
        cpu_iter it;
        const lunar_tensor *ts[1] = {x};
        cpu_iter_init(&it, 1, ts);
        cpu_iter_range(&it, 0, it.numel, count_row, c);
    }
    *count = c[0];
    return LUNAR_OK;
}

/* x: [d1, ..., dn] -> out: [count, n] int64, rows in row-major order of x */
lunar_status cpu_nonzero(lunar_tensor *out, const lunar_tensor *x) {
    int64_t numel = lunar_tensor_numel(x), coord[LUNAR_MAX_DIMS] = {0}, row = 0;
    int64_t es = (int64_t)lunar_dtype_size(x->dtype);
    int64_t count = out->ndim ? out->shape[0] : 0;
    const char *base = cpu_ptr(x);
    int64_t *o = (int64_t *)cpu_ptr(out);
    int64_t rs = out->ndim ? out->strides[0] : 0, cs = out->ndim > 1 ? out->strides[1] : 0;
    int64_t off = 0; /* x's element offset of coord */
    for (int64_t e = 0; e < numel; e++) {
        if (is_nonzero(x->dtype, base + off * es)) {
            if (row == count) return lunar_fail(LUNAR_ERR_SHAPE, "nonzero: more non-zeros "
                                                                 "than the output holds");
            for (int d = 0; d < x->ndim; d++) o[row * rs + d * cs] = coord[d];
            row++;
        }
        for (int d = x->ndim - 1; d >= 0; d--) {
            off += x->strides[d];
            if (++coord[d] < x->shape[d]) break;
            off -= x->strides[d] * x->shape[d];
            coord[d] = 0;
        }
    }
    return LUNAR_OK;
}
