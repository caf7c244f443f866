/*
 * ops_index.c - the indexing family: gather/scatter, index_select/index_add/index_copy,
 * masked_fill/masked_select/masked_scatter, nonzero, one_hot, sort, topk and unique. Shape
 * and dtype checks, index range checks (before anything is written), dispatch to the
 * backend, and the backward rules.
 *
 * Index tensors are int64; int32 is accepted and converted. Indices are 0-based here, but
 * messages count dims and indices from 1, as the Lua user does.
 */
#include "lunar-impl.h"

#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

static char *shape_of(char *buf, size_t n, const lunar_tensor *t) {
    return lunar_shape_str(buf, n, t->ndim, t->shape);
}

/* A new reference to index as int64; fails naming op for non-integer dtypes. */
static lunar_status index_i64(const char *op, lunar_tensor *index, lunar_tensor **out) {
    if (index->dtype == LUNAR_I64) {
        lunar_tensor_retain(index);
        *out = index;
        return LUNAR_OK;
    }
    if (index->dtype != LUNAR_I32)
        return lunar_fail(LUNAR_ERR_DTYPE, "%s: index must be int64 or int32 (got %s)", op,
                          lunar_dtype_name(index->dtype));
    return lunar_raw_cast(out, index, LUNAR_I64);
}

/* Reads the one element of a 0-d int64 tensor, whatever its device. */
static lunar_status read_i64(const lunar_tensor *t, int64_t *v) {
    return t->storage->backend->read(v, t->storage, (size_t)t->offset * sizeof(int64_t),
                                     sizeof(int64_t));
}

/* The smallest and largest elements of a non-empty int64 tensor. */
static lunar_status index_bounds(lunar_tensor *index, int64_t *lo, int64_t *hi) {
    lunar_tensor *mn = NULL, *mx = NULL;
    bool was = lunar_set_grad_enabled(false);
    lunar_status st = lunar_reduce(&mn, LUNAR_OP_MIN, index, 0, false, 0);
    if (st == LUNAR_OK) st = lunar_reduce(&mx, LUNAR_OP_MAX, index, 0, false, 0);
    lunar_set_grad_enabled(was);
    if (st == LUNAR_OK) st = read_i64(mn, lo);
    if (st == LUNAR_OK) st = read_i64(mx, hi);
    lunar_tensor_release(mn);
    lunar_tensor_release(mx);
    return st;
}

/* Fails when an element of index (int64) lies outside [0, size) of dim. */
static lunar_status check_range(const char *op, lunar_tensor *index, int dim, int64_t size) {
    if (lunar_tensor_numel(index) == 0) return LUNAR_OK;
    int64_t lo, hi;
    LUNAR_CHECK(index_bounds(index, &lo, &hi));
    int64_t bad = lo < 0 ? lo : hi >= size ? hi : -1;
    if (lo < 0 || hi >= size)
        return lunar_fail(LUNAR_ERR_INDEX, "%s: index %lld out of range for dim %d of size %lld "
                                           "(indices are 1-based)",
                          op, (long long)bad + 1, dim + 1, (long long)size);
    return LUNAR_OK;
}

/* A fresh tensor of shape filled with value, on like's device. */
static lunar_status full_like(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt,
                              const lunar_tensor *like, double value) {
    LUNAR_CHECK(lunar_tensor_new(out, ndim, shape, dt, like));
    lunar_status st = LUNAR_KERNEL(lunar_tensor_backend(*out), fill, *out, value);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*out);
        *out = NULL;
    }
    return st;
}

/* A new reference to x in dtype dt (no autograd: for sources written into a result). */
static lunar_status raw_as(lunar_tensor **out, lunar_tensor *x, lunar_dtype dt) {
    if (x->dtype == dt) {
        lunar_tensor_retain(x);
        *out = x;
        return LUNAR_OK;
    }
    return lunar_raw_cast(out, x, dt);
}

static lunar_status not_0d(const char *op, const lunar_tensor *x) {
    return x->ndim ? LUNAR_OK
                   : lunar_fail(LUNAR_ERR_SHAPE, "%s: x is 0-d; it needs at least one dim", op);
}

static void fail_out(lunar_tensor **out) {
    lunar_tensor_release(*out);
    *out = NULL;
}

/* ---- gather ---- */

/* index has x's ndim and fits inside x outside dim (and inside src everywhere). */
static lunar_status check_along(const char *op, const lunar_tensor *x, int dim,
                                const lunar_tensor *index, const lunar_tensor *src) {
    char a[128], b[128];
    if (index->ndim != x->ndim)
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: index %s and x %s must have the same number of "
                                           "dims",
                          op, shape_of(a, sizeof a, index), shape_of(b, sizeof b, x));
    for (int d = 0; d < x->ndim; d++)
        if (d != dim && index->shape[d] > x->shape[d])
            return lunar_fail(LUNAR_ERR_SHAPE, "%s: index %s is larger than x %s in dim %d", op,
                              shape_of(a, sizeof a, index), shape_of(b, sizeof b, x), d + 1);
    if (!src) return LUNAR_OK;
    if (src->ndim != index->ndim)
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: src %s and index %s must have the same number "
                                           "of dims",
                          op, shape_of(a, sizeof a, src), shape_of(b, sizeof b, index));
    for (int d = 0; d < x->ndim; d++)
        if (index->shape[d] > src->shape[d])
            return lunar_fail(LUNAR_ERR_SHAPE, "%s: index %s is larger than src %s in dim %d", op,
                              shape_of(a, sizeof a, index), shape_of(b, sizeof b, src), d + 1);
    return LUNAR_OK;
}

/* d gather / dx = scatter_add of g into zeros */
static lunar_status gather_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    lunar_tensor *index, *z;
    LUNAR_CHECK(lunar_node_saved(n, 0, &index));
    LUNAR_CHECK(full_like(&z, n->next[0].ndim, n->next[0].shape, g->dtype, g, 0));
    lunar_status st = lunar_scatter(&gi[0], z, (int)n->i[0], index, g, true);
    lunar_tensor_release(z);
    return st;
}

lunar_status lunar_gather(lunar_tensor **out, lunar_tensor *x, int dim, lunar_tensor *index) {
    *out = NULL;
    LUNAR_CHECK(lunar_same_device("gather", x, index));
    LUNAR_CHECK(not_0d("gather", x));
    LUNAR_CHECK(lunar_wrap_dim("gather", &dim, x->ndim));
    LUNAR_CHECK(check_along("gather", x, dim, index, NULL));
    lunar_tensor *idx;
    LUNAR_CHECK(index_i64("gather", index, &idx));
    lunar_status st;
    LUNAR_GOTO(check_range("gather", idx, dim, x->shape[dim]));
    LUNAR_GOTO(lunar_tensor_new(out, idx->ndim, idx->shape, x->dtype, x));
    LUNAR_GOTO(LUNAR_KERNEL(lunar_tensor_backend(x), gather, *out, x, dim, idx));
    lunar_node *n = lunar_node_begin("gather", gather_backward, 1, &x);
    if (n) {
        n->i[0] = dim;
        lunar_node_save(n, 0, idx);
        lunar_node_finish(n, *out);
    }
done:
    lunar_tensor_release(idx);
    if (st != LUNAR_OK) fail_out(out);
    return st;
}

/* ---- scatter ---- */

/* g for x: g itself (accumulate) or g with the written places zeroed; for src: g gathered
 * at index, padded with zeros where src is larger than index. */
static lunar_status scatter_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    lunar_tensor *index, *z = NULL, *gs = NULL, *view = NULL;
    int dim = (int)n->i[0];
    bool acc = n->i[1];
    LUNAR_CHECK(lunar_node_saved(n, 0, &index));
    lunar_status st = LUNAR_OK;
    if (lunar_node_needs(n, 0)) {
        if (acc) {
            lunar_tensor_retain(g);
            gi[0] = g;
        } else {
            LUNAR_GOTO(full_like(&z, index->ndim, index->shape, g->dtype, g, 0));
            LUNAR_GOTO(lunar_scatter(&gi[0], g, dim, index, z, false));
        }
    }
    if (lunar_node_needs(n, 1)) {
        const lunar_edge *e = &n->next[1];
        LUNAR_GOTO(lunar_gather(&gs, g, dim, index));
        if (e->ndim == 0 || lunar_shape_equal(e->ndim, e->shape, gs->ndim, gs->shape)) {
            /* the engine sums a 0-d src's gradient down to its shape */
            gi[1] = gs;
            gs = NULL;
        } else {
            lunar_tensor *pad;
            LUNAR_GOTO(full_like(&pad, e->ndim, e->shape, g->dtype, g, 0));
            gi[1] = pad;
            view = lunar_tensor_alias(pad, gs->ndim, gs->shape, pad->strides, pad->offset);
            if (!view) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "scatter: out of memory"));
            LUNAR_GOTO(lunar_raw_copy(view, gs));
        }
    }
done:
    lunar_tensor_release(z);
    lunar_tensor_release(gs);
    lunar_tensor_release(view);
    return st;
}

/* The checks and conversions scatter and scatter_ share; src comes back in dst's dtype. */
static lunar_status scatter_prep(const char *op, lunar_tensor *x, int *dim, lunar_tensor *index,
                                 lunar_tensor *src, lunar_tensor **idx, lunar_tensor **csrc) {
    *idx = *csrc = NULL;
    LUNAR_CHECK(lunar_same_device(op, x, index));
    LUNAR_CHECK(lunar_same_device(op, x, src));
    LUNAR_CHECK(not_0d(op, x));
    LUNAR_CHECK(lunar_wrap_dim(op, dim, x->ndim));
    bool scalar = src->ndim == 0; /* a 0-d src is written everywhere index points */
    LUNAR_CHECK(check_along(op, x, *dim, index, scalar ? NULL : src));
    LUNAR_CHECK(index_i64(op, index, idx));
    lunar_status st = check_range(op, *idx, *dim, x->shape[*dim]);
    if (st == LUNAR_OK) st = raw_as(csrc, src, x->dtype);
    if (st == LUNAR_OK && scalar) {
        lunar_tensor *v = lunar_broadcast_view(*csrc, (*idx)->ndim, (*idx)->shape);
        lunar_tensor_release(*csrc);
        *csrc = v;
        if (!v) st = lunar_fail(LUNAR_ERR_MEMORY, "%s: out of memory", op);
    }
    if (st != LUNAR_OK) {
        lunar_tensor_release(*idx);
        *idx = NULL;
    }
    return st;
}

lunar_status lunar_scatter(lunar_tensor **out, lunar_tensor *x, int dim, lunar_tensor *index,
                           lunar_tensor *src, bool accumulate) {
    const char *op = accumulate ? "scatter_add" : "scatter";
    lunar_tensor *idx, *cs;
    *out = NULL;
    LUNAR_CHECK(scatter_prep(op, x, &dim, index, src, &idx, &cs));
    lunar_status st;
    LUNAR_GOTO(lunar_tensor_new(out, x->ndim, x->shape, x->dtype, x));
    LUNAR_GOTO(lunar_raw_copy(*out, x));
    LUNAR_GOTO(LUNAR_KERNEL(lunar_tensor_backend(x), scatter, *out, dim, idx, cs, accumulate));
    if (lunar_dtype_is_float(x->dtype)) {
        lunar_tensor *in[2] = {x, src};
        lunar_node *n = lunar_node_begin(op, scatter_backward, 2, in);
        if (n) {
            n->i[0] = dim;
            n->i[1] = accumulate;
            lunar_node_save(n, 0, idx);
            lunar_node_finish(n, *out);
        }
    }
done:
    lunar_tensor_release(idx);
    lunar_tensor_release(cs);
    if (st != LUNAR_OK) fail_out(out);
    return st;
}

lunar_status lunar_scatter_(lunar_tensor *x, int dim, lunar_tensor *index, lunar_tensor *src,
                            bool accumulate) {
    const char *op = accumulate ? "scatter_add_" : "scatter_";
    LUNAR_CHECK(lunar_check_inplace(op, x));
    lunar_tensor *idx, *cs;
    LUNAR_CHECK(scatter_prep(op, x, &dim, index, src, &idx, &cs));
    lunar_status st = LUNAR_KERNEL(lunar_tensor_backend(x), scatter, x, dim, idx, cs, accumulate);
    if (st == LUNAR_OK) lunar_tensor_bump_version(x);
    lunar_tensor_release(idx);
    lunar_tensor_release(cs);
    return st;
}

/* ---- index_select / index_add / index_copy_ ---- */

/* A 1-D int64 index (a 0-d one counts as one element), its range checked against dim. */
static lunar_status index_1d(const char *op, lunar_tensor *x, int *dim, lunar_tensor *index,
                             lunar_tensor **idx) {
    *idx = NULL;
    LUNAR_CHECK(lunar_same_device(op, x, index));
    LUNAR_CHECK(not_0d(op, x));
    LUNAR_CHECK(lunar_wrap_dim(op, dim, x->ndim));
    if (index->ndim > 1) {
        char a[128];
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: index must be 1-d (got %s)", op,
                          shape_of(a, sizeof a, index));
    }
    lunar_tensor *i64;
    LUNAR_CHECK(index_i64(op, index, &i64));
    if (i64->ndim == 0) {
        int64_t one = 1, stride = 1;
        *idx = lunar_tensor_alias(i64, 1, &one, &stride, i64->offset);
        lunar_tensor_release(i64);
        if (!*idx) return lunar_fail(LUNAR_ERR_MEMORY, "%s: out of memory", op);
    } else {
        *idx = i64;
    }
    lunar_status st = check_range(op, *idx, *dim, x->shape[*dim]);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*idx);
        *idx = NULL;
    }
    return st;
}

/* d index_select / dx = index_add of g into zeros */
static lunar_status index_select_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    lunar_tensor *index, *z;
    LUNAR_CHECK(lunar_node_saved(n, 0, &index));
    LUNAR_CHECK(full_like(&z, n->next[0].ndim, n->next[0].shape, g->dtype, g, 0));
    lunar_status st = lunar_index_add(&gi[0], z, (int)n->i[0], index, g, 1);
    lunar_tensor_release(z);
    return st;
}

lunar_status lunar_index_select(lunar_tensor **out, lunar_tensor *x, int dim,
                                lunar_tensor *index) {
    lunar_tensor *idx;
    *out = NULL;
    LUNAR_CHECK(index_1d("index_select", x, &dim, index, &idx));
    int64_t shape[LUNAR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[dim] = idx->shape[0];
    lunar_status st;
    LUNAR_GOTO(lunar_tensor_new(out, x->ndim, shape, x->dtype, x));
    LUNAR_GOTO(LUNAR_KERNEL(lunar_tensor_backend(x), index_select, *out, x, dim, idx));
    lunar_node *n = lunar_node_begin("index_select", index_select_backward, 1, &x);
    if (n) {
        n->i[0] = dim;
        lunar_node_save(n, 0, idx);
        lunar_node_finish(n, *out);
    }
done:
    lunar_tensor_release(idx);
    if (st != LUNAR_OK) fail_out(out);
    return st;
}

/* src must be x's shape with idx's length at dim. */
static lunar_status check_index_src(const char *op, const lunar_tensor *x, int dim,
                                    const lunar_tensor *idx, const lunar_tensor *src) {
    bool ok = src->ndim == x->ndim;
    for (int d = 0; ok && d < x->ndim; d++)
        ok = src->shape[d] == (d == dim ? idx->shape[0] : x->shape[d]);
    if (ok) return LUNAR_OK;
    char a[128], b[128];
    return lunar_fail(LUNAR_ERR_SHAPE, "%s: src %s does not fit x %s with %lld indices in dim %d",
                      op, shape_of(a, sizeof a, src), shape_of(b, sizeof b, x),
                      (long long)idx->shape[0], dim + 1);
}

/* g for x: g; for src: alpha * g.index_select(dim, index) */
static lunar_status index_add_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    lunar_tensor *index, *sel;
    LUNAR_CHECK(lunar_node_saved(n, 0, &index));
    if (lunar_node_needs(n, 0)) {
        lunar_tensor_retain(g);
        gi[0] = g;
    }
    if (!lunar_node_needs(n, 1)) return LUNAR_OK;
    LUNAR_CHECK(lunar_index_select(&sel, g, (int)n->i[0], index));
    if (n->f[0] == 1) {
        gi[1] = sel;
        return LUNAR_OK;
    }
    lunar_status st = lunar_binary_scalar(&gi[1], LUNAR_OP_MUL, sel, n->f[0], false);
    lunar_tensor_release(sel);
    return st;
}

static lunar_status index_add_prep(const char *op, lunar_tensor *x, int *dim,
                                   lunar_tensor *index, lunar_tensor *src, lunar_tensor **idx,
                                   lunar_tensor **cs) {
    *cs = NULL;
    LUNAR_CHECK(lunar_same_device(op, x, src));
    LUNAR_CHECK(index_1d(op, x, dim, index, idx));
    lunar_status st = check_index_src(op, x, *dim, *idx, src);
    if (st == LUNAR_OK) st = raw_as(cs, src, x->dtype);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*idx);
        *idx = NULL;
    }
    return st;
}

lunar_status lunar_index_add(lunar_tensor **out, lunar_tensor *x, int dim, lunar_tensor *index,
                             lunar_tensor *src, double alpha) {
    lunar_tensor *idx, *cs;
    *out = NULL;
    LUNAR_CHECK(index_add_prep("index_add", x, &dim, index, src, &idx, &cs));
    lunar_status st;
    LUNAR_GOTO(lunar_tensor_new(out, x->ndim, x->shape, x->dtype, x));
    LUNAR_GOTO(lunar_raw_copy(*out, x));
    LUNAR_GOTO(LUNAR_KERNEL(lunar_tensor_backend(x), index_add, *out, dim, idx, cs, alpha));
    if (lunar_dtype_is_float(x->dtype)) {
        lunar_tensor *in[2] = {x, src};
        lunar_node *n = lunar_node_begin("index_add", index_add_backward, 2, in);
        if (n) {
            n->i[0] = dim;
            n->f[0] = alpha;
            lunar_node_save(n, 0, idx);
            lunar_node_finish(n, *out);
        }
    }
done:
    lunar_tensor_release(idx);
    lunar_tensor_release(cs);
    if (st != LUNAR_OK) fail_out(out);
    return st;
}

lunar_status lunar_index_add_(lunar_tensor *x, int dim, lunar_tensor *index, lunar_tensor *src,
                              double alpha) {
    LUNAR_CHECK(lunar_check_inplace("index_add_", x));
    lunar_tensor *idx, *cs;
    LUNAR_CHECK(index_add_prep("index_add_", x, &dim, index, src, &idx, &cs));
    lunar_status st = LUNAR_KERNEL(lunar_tensor_backend(x), index_add, x, dim, idx, cs, alpha);
    if (st == LUNAR_OK) lunar_tensor_bump_version(x);
    lunar_tensor_release(idx);
    lunar_tensor_release(cs);
    return st;
}

/* The body of index_copy_ without the in-place check: writes src (broadcast) into the
 * places x.index_select(dim, idx) reads, through scatter with the index broadcast. */
static lunar_status index_copy_raw(const char *op, lunar_tensor *x, int dim, lunar_tensor *idx,
                                   lunar_tensor *src) {
    int64_t shape[LUNAR_MAX_DIMS], strides[LUNAR_MAX_DIMS] = {0};
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[dim] = idx->shape[0];
    strides[dim] = idx->strides[0];
    int nd;
    int64_t bshape[LUNAR_MAX_DIMS];
    LUNAR_CHECK(lunar_broadcast_shape(op, x->ndim, shape, src->ndim, src->shape, &nd, bshape));
    if (!lunar_shape_equal(nd, bshape, x->ndim, shape)) {
        char a[128], b[128];
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: a value of shape %s cannot be written into %s",
                          op, shape_of(a, sizeof a, src), lunar_shape_str(b, sizeof b, x->ndim,
                                                                          shape));
    }
    lunar_tensor *cs = NULL, *sv = NULL, *iv = NULL;
    lunar_status st;
    LUNAR_GOTO(raw_as(&cs, src, x->dtype));
    sv = lunar_broadcast_view(cs, x->ndim, shape);
    iv = lunar_tensor_alias(idx, x->ndim, shape, strides, idx->offset);
    if (!sv || !iv) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "%s: out of memory", op));
    LUNAR_GOTO(LUNAR_KERNEL(lunar_tensor_backend(x), scatter, x, dim, iv, sv, false));
    lunar_tensor_bump_version(x);
done:
    lunar_tensor_release(cs);
    lunar_tensor_release(sv);
    lunar_tensor_release(iv);
    return st;
}

lunar_status lunar_index_copy_(lunar_tensor *x, int dim, lunar_tensor *index, lunar_tensor *src) {
    LUNAR_CHECK(lunar_check_inplace("index_copy_", x));
    LUNAR_CHECK(lunar_same_device("index_copy_", x, src));
    lunar_tensor *idx;
    LUNAR_CHECK(index_1d("index_copy_", x, &dim, index, &idx));
    lunar_status st = index_copy_raw("index_copy_", x, dim, idx, src);
    lunar_tensor_release(idx);
    return st;
}

/* ---- masks ---- */

/* mask is bool and broadcasts to x's shape (x's shape is kept). */
static lunar_status check_mask(const char *op, const lunar_tensor *x, const lunar_tensor *mask) {
    LUNAR_CHECK(lunar_same_device(op, x, mask));
    if (mask->dtype != LUNAR_BOOL)
        return lunar_fail(LUNAR_ERR_DTYPE, "%s: mask must be bool (got %s)", op,
                          lunar_dtype_name(mask->dtype));
    int nd;
    int64_t shape[LUNAR_MAX_DIMS];
    char a[128], b[128];
    if (lunar_broadcast_shape(op, mask->ndim, mask->shape, x->ndim, x->shape, &nd, shape) !=
            LUNAR_OK ||
        !lunar_shape_equal(nd, shape, x->ndim, x->shape))
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: mask %s does not match x %s", op,
                          shape_of(a, sizeof a, mask), shape_of(b, sizeof b, x));
    return LUNAR_OK;
}

lunar_status lunar_masked_fill(lunar_tensor **out, lunar_tensor *x, lunar_tensor *mask,
                               lunar_tensor *value) {
    *out = NULL;
    LUNAR_CHECK(check_mask("masked_fill", x, mask));
    if (value->ndim != 0)
        return lunar_fail(LUNAR_ERR_SHAPE, "masked_fill: value must be a number or a 0-d "
                                           "tensor (got %d dims)",
                          value->ndim);
    lunar_tensor *v;
    LUNAR_CHECK(lunar_to_dtype(&v, value, x->dtype)); /* keeps value's graph when float */
    lunar_status st = lunar_where(out, mask, v, x);
    lunar_tensor_release(v);
    return st;
}

lunar_status lunar_masked_fill_(lunar_tensor *x, lunar_tensor *mask, lunar_tensor *value) {
    LUNAR_CHECK(lunar_check_inplace("masked_fill_", x));
    lunar_tensor *r;
    bool was = lunar_set_grad_enabled(false);
    lunar_status st = lunar_masked_fill(&r, x, mask, value);
    lunar_set_grad_enabled(was);
    if (st != LUNAR_OK) return st;
    st = lunar_raw_copy(x, r);
    if (st == LUNAR_OK) lunar_tensor_bump_version(x);
    lunar_tensor_release(r);
    return st;
}

/* The 0-based flat positions where mask (broadcast to shape) is true: a 1-d int64. */
static lunar_status mask_positions(const char *op, lunar_tensor *mask, int ndim,
                                   const int64_t *shape, lunar_tensor **pos) {
    lunar_tensor *mb = NULL, *mc = NULL, *flat = NULL, *nz = NULL;
    lunar_status st;
    *pos = NULL;
    mb = lunar_broadcast_view(mask, ndim, shape);
    if (!mb) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "%s: out of memory", op));
    LUNAR_GOTO(lunar_raw_contiguous(&mc, mb));
    int64_t numel = lunar_tensor_numel(mc), one = 1;
    flat = lunar_tensor_alias(mc, 1, &numel, &one, mc->offset);
    if (!flat) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "%s: out of memory", op));
    LUNAR_GOTO(lunar_nonzero(&nz, flat));
    *pos = lunar_tensor_alias(nz, 1, nz->shape, nz->strides, nz->offset); /* [count, 1] */
    if (!*pos) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "%s: out of memory", op));
done:
    lunar_tensor_release(mb);
    lunar_tensor_release(mc);
    lunar_tensor_release(flat);
    lunar_tensor_release(nz);
    return st;
}

/* Composed from expand, reshape and index_select, so its gradient scatters back through
 * their rules. */
lunar_status lunar_masked_select(lunar_tensor **out, lunar_tensor *x, lunar_tensor *mask) {
    *out = NULL;
    LUNAR_CHECK(lunar_same_device("masked_select", x, mask));
    if (mask->dtype != LUNAR_BOOL)
        return lunar_fail(LUNAR_ERR_DTYPE, "masked_select: mask must be bool (got %s)",
                          lunar_dtype_name(mask->dtype));
    int nd;
    int64_t shape[LUNAR_MAX_DIMS];
    char a[128], b[128];
    if (lunar_broadcast_shape("masked_select", mask->ndim, mask->shape, x->ndim, x->shape, &nd,
                              shape) != LUNAR_OK)
        return lunar_fail(LUNAR_ERR_SHAPE, "masked_select: mask %s does not match x %s",
                          shape_of(a, sizeof a, mask), shape_of(b, sizeof b, x));
    lunar_tensor *xe = NULL, *xf = NULL, *pos = NULL;
    int64_t all = -1;
    lunar_status st;
    LUNAR_GOTO(lunar_expand(&xe, x, nd, shape));
    LUNAR_GOTO(lunar_reshape(&xf, xe, 1, &all));
    LUNAR_GOTO(mask_positions("masked_select", mask, nd, shape, &pos));
    LUNAR_GOTO(lunar_index_select(out, xf, 0, pos));
done:
    lunar_tensor_release(xe);
    lunar_tensor_release(xf);
    lunar_tensor_release(pos);
    return st;
}

lunar_status lunar_masked_scatter_(lunar_tensor *x, lunar_tensor *mask, lunar_tensor *src) {
    LUNAR_CHECK(lunar_check_inplace("masked_scatter_", x));
    LUNAR_CHECK(lunar_same_device("masked_scatter_", x, src));
    LUNAR_CHECK(check_mask("masked_scatter_", x, mask));
    lunar_tensor *pos = NULL, *work = NULL, *flat = NULL;
    lunar_status st;
    LUNAR_GOTO(mask_positions("masked_scatter_", mask, x->ndim, x->shape, &pos));
    bool direct = lunar_tensor_is_contiguous(x);
    if (direct) {
        lunar_tensor_retain(x);
        work = x;
    } else {
        LUNAR_GOTO(lunar_raw_contiguous(&work, x));
    }
    int64_t numel = lunar_tensor_numel(work), one = 1;
    flat = lunar_tensor_alias(work, 1, &numel, &one, work->offset);
    if (!flat) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "masked_scatter_: out of memory"));
    LUNAR_GOTO(index_copy_raw("masked_scatter_", flat, 0, pos, src));
    if (!direct) LUNAR_GOTO(lunar_raw_copy(x, work));
    lunar_tensor_bump_version(x);
done:
    lunar_tensor_release(pos);
    lunar_tensor_release(work);
    lunar_tensor_release(flat);
    return st;
}

/* ---- nonzero / one_hot ---- */

lunar_status lunar_count_nonzero(int64_t *count, lunar_tensor *x) {
    return LUNAR_KERNEL(lunar_tensor_backend(x), count_nonzero, count, x);
}

lunar_status lunar_nonzero(lunar_tensor **out, lunar_tensor *x) {
    int64_t count;
    *out = NULL;
    LUNAR_CHECK(LUNAR_KERNEL(lunar_tensor_backend(x), count_nonzero, &count, x));
    int64_t shape[2] = {count, x->ndim};
    LUNAR_CHECK(lunar_tensor_new(out, 2, shape, LUNAR_I64, x));
    lunar_status st = LUNAR_KERNEL(lunar_tensor_backend(x), nonzero, *out, x);
    if (st != LUNAR_OK) fail_out(out);
    return st;
}

lunar_status lunar_one_hot(lunar_tensor **out, lunar_tensor *labels, int64_t num_classes) {
    *out = NULL;
    if (labels->ndim == LUNAR_MAX_DIMS)
        return lunar_fail(LUNAR_ERR_SHAPE, "one_hot: labels already have %d dims",
                          LUNAR_MAX_DIMS);
    lunar_tensor *idx, *one = NULL, *iv = NULL, *sv = NULL;
    LUNAR_CHECK(index_i64("one_hot", labels, &idx));
    lunar_status st;
    if (num_classes < 0) { /* as many classes as the largest label says */
        if (lunar_tensor_numel(idx) == 0)
            LUNAR_GOTO(lunar_fail(LUNAR_ERR_ARG, "one_hot: cannot infer the number of classes "
                                                 "from empty labels"));
        int64_t lo;
        LUNAR_GOTO(index_bounds(idx, &lo, &num_classes));
        num_classes++;
    }
    if (lunar_tensor_numel(idx) > 0) {
        int64_t lo, hi;
        LUNAR_GOTO(index_bounds(idx, &lo, &hi));
        if (lo < 0 || hi >= num_classes)
            LUNAR_GOTO(lunar_fail(LUNAR_ERR_INDEX, "one_hot: class %lld out of range for %lld "
                                                   "classes (classes are 1-based)",
                                  (long long)(lo < 0 ? lo : hi) + 1, (long long)num_classes));
    }
    int nd = idx->ndim + 1;
    int64_t shape[LUNAR_MAX_DIMS], strides[LUNAR_MAX_DIMS];
    memcpy(shape, idx->shape, sizeof(int64_t) * (size_t)idx->ndim);
    memcpy(strides, idx->strides, sizeof(int64_t) * (size_t)idx->ndim);
    shape[nd - 1] = num_classes;
    LUNAR_GOTO(full_like(out, nd, shape, LUNAR_I64, idx, 0));
    shape[nd - 1] = 1;
    strides[nd - 1] = 1;
    LUNAR_GOTO(full_like(&one, 0, NULL, LUNAR_I64, idx, 1));
    iv = lunar_tensor_alias(idx, nd, shape, strides, idx->offset); /* labels[..., 1] */
    sv = lunar_broadcast_view(one, nd, shape);
    if (!iv || !sv) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "one_hot: out of memory"));
    LUNAR_GOTO(LUNAR_KERNEL(lunar_tensor_backend(idx), scatter, *out, nd - 1, iv, sv, false));
done:
    lunar_tensor_release(idx);
    lunar_tensor_release(one);
    lunar_tensor_release(iv);
    lunar_tensor_release(sv);
    if (st != LUNAR_OK) fail_out(out);
    return st;
}

/* ---- sort / topk ---- */

/* d values / dx: g written back to where each value came from */
static lunar_status sort_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    lunar_tensor *index, *z;
    LUNAR_CHECK(lunar_node_saved(n, 0, &index));
    if (g->ndim == 0) { /* a 0-d sort is the identity */
        lunar_tensor_retain(g);
        gi[0] = g;
        return LUNAR_OK;
    }
    LUNAR_CHECK(full_like(&z, n->next[0].ndim, n->next[0].shape, g->dtype, g, 0));
    lunar_status st = lunar_scatter(&gi[0], z, (int)n->i[0], index, g, false);
    lunar_tensor_release(z);
    return st;
}

lunar_status lunar_sort(lunar_tensor **values, lunar_tensor **indices, lunar_tensor *x, int dim,
                        bool descending) {
    *values = *indices = NULL;
    LUNAR_CHECK(lunar_wrap_dim("sort", &dim, x->ndim));
    lunar_status st;
    LUNAR_GOTO(lunar_tensor_new(values, x->ndim, x->shape, x->dtype, x));
    LUNAR_GOTO(lunar_tensor_new(indices, x->ndim, x->shape, LUNAR_I64, x));
    LUNAR_GOTO(LUNAR_KERNEL(lunar_tensor_backend(x), sort, *values, *indices, x, dim, descending));
    lunar_node *n = lunar_node_begin("sort", sort_backward, 1, &x);
    if (n) {
        n->i[0] = dim;
        lunar_node_save(n, 0, *indices);
        lunar_node_finish(n, *values);
    }
done:
    if (st != LUNAR_OK) {
        fail_out(values);
        fail_out(indices);
    }
    return st;
}

/* The first k of a stable sort: ties keep their original order. Values keep sort's and
 * narrow's gradients. */
lunar_status lunar_topk(lunar_tensor **values, lunar_tensor **indices, lunar_tensor *x,
                        int64_t k, int dim, bool largest, bool sorted) {
    (void)sorted; /* always sorted: a valid answer either way */
    *values = *indices = NULL;
    LUNAR_CHECK(lunar_wrap_dim("topk", &dim, x->ndim));
    int64_t size = x->ndim ? x->shape[dim] : 1;
    if (k < 0 || k > size)
        return lunar_fail(LUNAR_ERR_ARG, "topk: k = %lld is out of range for dim %d of size %lld",
                          (long long)k, dim + 1, (long long)size);
    lunar_tensor *v, *i, *vn = NULL, *in = NULL;
    LUNAR_CHECK(lunar_sort(&v, &i, x, dim, largest));
    if (x->ndim == 0 || k == size) {
        *values = v;
        *indices = i;
        return LUNAR_OK;
    }
    lunar_status st;
    LUNAR_GOTO(lunar_narrow(&vn, v, dim, 0, k));
    LUNAR_GOTO(lunar_contiguous(values, vn));
    in = lunar_tensor_alias(i, i->ndim, vn->shape, i->strides, i->offset);
    if (!in) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "topk: out of memory"));
    LUNAR_GOTO(lunar_raw_contiguous(indices, in));
done:
    lunar_tensor_release(v);
    lunar_tensor_release(i);
    lunar_tensor_release(vn);
    lunar_tensor_release(in);
    if (st != LUNAR_OK) {
        fail_out(values);
        fail_out(indices);
    }
    return st;
}

/* ---- unique ---- */

/* Whether sorted neighbours a and b hold the same value (NaNs are each their own value). */
static bool same_value(lunar_dtype dt, const char *a, const char *b) {
    switch (dt) {
    case LUNAR_F32: return *(const float *)a == *(const float *)b;
    case LUNAR_F64: return *(const double *)a == *(const double *)b;
    default: return memcmp(a, b, lunar_dtype_size(dt)) == 0;
    }
}

/* A 1-d tensor of n elements on like's device holding host data. */
static lunar_status from_host(lunar_tensor **out, int ndim, const int64_t *shape, lunar_dtype dt,
                              const lunar_tensor *like, const void *data) {
    LUNAR_CHECK(lunar_tensor_new(out, ndim, shape, dt, like));
    size_t nbytes = (size_t)lunar_shape_numel(ndim, shape) * lunar_dtype_size(dt);
    lunar_status st = (*out)->storage->backend->write((*out)->storage, 0, data, nbytes);
    if (st != LUNAR_OK) fail_out(out);
    return st;
}

/* Sorts on the device, then groups equal neighbours on the host: the result's size depends
 * on the data, so one read back is needed anyway. */
lunar_status lunar_unique(lunar_tensor **values, lunar_tensor **inverse, lunar_tensor **counts,
                          lunar_tensor *x) {
    *values = NULL;
    if (inverse) *inverse = NULL;
    if (counts) *counts = NULL;
    const lunar_backend *be = lunar_tensor_backend(x);
    int64_t n = lunar_tensor_numel(x), one = 1;
    size_t es = lunar_dtype_size(x->dtype);
    lunar_tensor *xc = NULL, *flat = NULL, *sv = NULL, *si = NULL;
    char *hv = NULL, *uv = NULL;
    int64_t *hi = NULL, *inv = NULL, *cnt = NULL, u = 0;
    lunar_status st;
    LUNAR_GOTO(lunar_raw_contiguous(&xc, x));
    flat = lunar_tensor_alias(xc, 1, &n, &one, xc->offset);
    if (!flat) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "unique: out of memory"));
    LUNAR_GOTO(lunar_tensor_new(&sv, 1, &n, x->dtype, x));
    LUNAR_GOTO(lunar_tensor_new(&si, 1, &n, LUNAR_I64, x));
    LUNAR_GOTO(LUNAR_KERNEL(be, sort, sv, si, flat, 0, false));
    size_t cap = n > 0 ? (size_t)n : 1;
    hv = malloc(cap * es);
    uv = malloc(cap * es);
    hi = malloc(cap * sizeof *hi);
    inv = malloc(cap * sizeof *inv);
    cnt = malloc(cap * sizeof *cnt);
    if (!hv || !uv || !hi || !inv || !cnt)
        LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "unique: out of memory"));
    LUNAR_GOTO(be->read(hv, sv->storage, 0, (size_t)n * es));
    LUNAR_GOTO(be->read(hi, si->storage, 0, (size_t)n * sizeof *hi));
    for (int64_t i = 0; i < n; i++) {
        const char *v = hv + (size_t)i * es;
        if (i == 0 || !same_value(x->dtype, v, v - es)) {
            memcpy(uv + (size_t)u * es, v, es);
            cnt[u++] = 0;
        }
        cnt[u - 1]++;
        inv[hi[i]] = u - 1;
    }
    LUNAR_GOTO(from_host(values, 1, &u, x->dtype, x, uv));
    if (inverse) LUNAR_GOTO(from_host(inverse, x->ndim, x->shape, LUNAR_I64, x, inv));
    if (counts) LUNAR_GOTO(from_host(counts, 1, &u, LUNAR_I64, x, cnt));
done:
    lunar_tensor_release(xc);
    lunar_tensor_release(flat);
    lunar_tensor_release(sv);
    lunar_tensor_release(si);
    free(hv);
    free(uv);
    free(hi);
    free(inv);
    free(cnt);
    if (st != LUNAR_OK) {
        fail_out(values);
        if (inverse) fail_out(inverse);
        if (counts) fail_out(counts);
    }
    return st;
}
