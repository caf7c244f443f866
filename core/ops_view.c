/*
 * ops_view.c - views (they share storage) and the copies that stand beside them:
 * view/reshape, transpose/permute, narrow/select/slice, expand, squeeze/unsqueeze, unfold,
 * contiguous, clone, dtype casts, detach. Each records a backward rule.
 */
#include "lunar-impl.h"

#include <stdlib.h>
#include <string.h>

enum view_kind { V_RESHAPE, V_PERMUTE, V_NARROW, V_IDENTITY, V_UNFOLD };

/* The gradient of a window (narrow / select / slice) is g written into zeros of the input's
 * shape through the same window. n->i holds: kind, dim, start, stop, step, (select?). */
static lunar_status view_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    const lunar_edge *in = &n->next[0];
    lunar_status st = LUNAR_OK;
    switch ((enum view_kind)n->i[0]) {
    case V_RESHAPE:
        return lunar_reshape(&gi[0], g, in->ndim, in->shape);
    case V_PERMUTE: {
        int inv[LUNAR_MAX_DIMS];
        for (int d = 0; d < in->ndim; d++) inv[n->i[1 + d]] = d;
        return lunar_permute(&gi[0], g, inv);
    }
    case V_IDENTITY:
        lunar_tensor_retain(g);
        gi[0] = g;
        return LUNAR_OK;
    case V_NARROW: {
        lunar_tensor *z, *w = NULL, *gg = g;
        LUNAR_CHECK(lunar_full_like(&z, in->ndim, in->shape, g->dtype, 0, g));
        int dim = (int)n->i[1];
        st = lunar_slice(&w, z, dim, n->i[2], n->i[3], n->i[4]);
        if (st == LUNAR_OK && n->i[5]) /* select dropped dim: put it back */
            st = lunar_unsqueeze(&gg, g, dim);
        if (st == LUNAR_OK) st = lunar_raw_copy(w, gg);
        if (gg != g) lunar_tensor_release(gg);
        lunar_tensor_release(w);
        if (st == LUNAR_OK) gi[0] = z;
        else lunar_tensor_release(z);
        return st;
    }
    case V_UNFOLD: { /* windows may overlap: add each one back */
        int dim = (int)n->i[1];
        int64_t size = n->i[2], step = n->i[3], count = g->shape[dim];
        lunar_tensor *z;
        LUNAR_CHECK(lunar_full_like(&z, in->ndim, in->shape, g->dtype, 0, g));
        for (int64_t k = 0; k < count && st == LUNAR_OK; k++) {
            lunar_tensor *win = NULL, *gk = NULL, *gm = NULL;
            st = lunar_narrow(&win, z, dim, k * step, size);
            if (st == LUNAR_OK) st = lunar_select(&gk, g, dim, k); /* [..., size] at the end */
            if (st == LUNAR_OK) {
                int perm[LUNAR_MAX_DIMS], nd = gk->ndim;
                for (int d = 0, s = 0; d < nd; d++) perm[d] = d == dim ? nd - 1 : s++;
                st = lunar_permute(&gm, gk, perm);
            }
            if (st == LUNAR_OK) st = lunar_binary_(win, LUNAR_OP_ADD, gm);
            lunar_tensor_release(win);
            lunar_tensor_release(gk);
            lunar_tensor_release(gm);
        }
        if (st == LUNAR_OK) gi[0] = z;
        else lunar_tensor_release(z);
        return st;
    }
    }
    return lunar_fail(LUNAR_ERR_ARG, "view backward: bad kind");
}

/* Makes the alias and records its node; kind and params go to n->i. */
static lunar_status make_view(lunar_tensor **out, lunar_tensor *x, int ndim, const int64_t *shape,
                              const int64_t *strides, int64_t offset, const char *name,
                              const int64_t *params, int n_params) {
    *out = lunar_tensor_alias(x, ndim, shape, strides, offset);
    if (!*out) return lunar_fail(LUNAR_ERR_MEMORY, "%s: out of memory", name);
    lunar_node *n = lunar_node_begin(name, view_backward, 1, &x);
    if (n) {
        memcpy(n->i, params, sizeof(int64_t) * (size_t)n_params);
        lunar_node_finish(n, *out);
    }
    return LUNAR_OK;
}

/* Resolves one -1 in shape against numel; checks that the sizes multiply out. */
static lunar_status infer_shape(const char *op, const lunar_tensor *x, int ndim,
                                const int64_t *shape, int64_t *out) {
    if (ndim < 0 || ndim > LUNAR_MAX_DIMS)
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: %d dims (at most %d)", op, ndim, LUNAR_MAX_DIMS);
    int infer = -1;
    int64_t known = 1;
    for (int d = 0; d < ndim; d++) {
        out[d] = shape[d];
        if (shape[d] == -1) {
            if (infer >= 0) return lunar_fail(LUNAR_ERR_SHAPE, "%s: only one size can be -1", op);
            infer = d;
        } else if (shape[d] < 0) {
            return lunar_fail(LUNAR_ERR_SHAPE, "%s: negative size %lld", op, (long long)shape[d]);
        } else {
            known *= shape[d];
        }
    }
    int64_t numel = lunar_tensor_numel(x);
    if (infer >= 0 && known > 0 && numel % known == 0) out[infer] = numel / known;
    if (lunar_shape_numel(ndim, out) != numel || (infer >= 0 && known == 0)) {
        char a[128], b[128];
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: shape %s is invalid for a tensor of shape %s (%lld "
                                           "elements)",
                          op, lunar_shape_str(a, sizeof a, ndim, shape),
                          lunar_shape_str(b, sizeof b, x->ndim, x->shape), (long long)numel);
    }
    return LUNAR_OK;
}

lunar_status lunar_view(lunar_tensor **out, lunar_tensor *x, int ndim, const int64_t *shape) {
    int64_t s[LUNAR_MAX_DIMS], strides[LUNAR_MAX_DIMS];
    LUNAR_CHECK(infer_shape("view", x, ndim, shape, s));
    if (!lunar_tensor_is_contiguous(x))
        return lunar_fail(LUNAR_ERR_SHAPE, "view: the tensor is not contiguous; use reshape, or "
                                           "contiguous() first");
    lunar_contiguous_strides(ndim, s, strides);
    int64_t p = V_RESHAPE;
    return make_view(out, x, ndim, s, strides, x->offset, "view", &p, 1);
}

lunar_status lunar_reshape(lunar_tensor **out, lunar_tensor *x, int ndim, const int64_t *shape) {
    int64_t s[LUNAR_MAX_DIMS];
    LUNAR_CHECK(infer_shape("reshape", x, ndim, shape, s));
    if (lunar_tensor_is_contiguous(x)) return lunar_view(out, x, ndim, s);
    lunar_tensor *c;
    LUNAR_CHECK(lunar_contiguous(&c, x));
    lunar_status st = lunar_view(out, c, ndim, s);
    lunar_tensor_release(c);
    return st;
}

lunar_status lunar_permute(lunar_tensor **out, lunar_tensor *x, const int *perm) {
    int64_t shape[LUNAR_MAX_DIMS], strides[LUNAR_MAX_DIMS], p[1 + LUNAR_MAX_DIMS];
    bool seen[LUNAR_MAX_DIMS] = {0};
    for (int d = 0; d < x->ndim; d++) {
        int s = perm[d];
        if (s < 0 || s >= x->ndim || seen[s])
            return lunar_fail(LUNAR_ERR_ARG, "permute: not a permutation of %d dims", x->ndim);
        seen[s] = true;
        shape[d] = x->shape[s];
        strides[d] = x->strides[s];
        p[1 + d] = s;
    }
    p[0] = V_PERMUTE;
    return make_view(out, x, x->ndim, shape, strides, x->offset, "permute", p, 1 + x->ndim);
}

lunar_status lunar_transpose(lunar_tensor **out, lunar_tensor *x, int d0, int d1) {
    LUNAR_CHECK(lunar_wrap_dim("transpose", &d0, x->ndim));
    LUNAR_CHECK(lunar_wrap_dim("transpose", &d1, x->ndim));
    int perm[LUNAR_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) perm[d] = d;
    if (x->ndim > 0) {
        perm[d0] = d1;
        perm[d1] = d0;
    }
    return lunar_permute(out, x, perm);
}

/* slice with select flag: the common body of narrow, select and slice. */
static lunar_status window(lunar_tensor **out, lunar_tensor *x, const char *op, int dim,
                           int64_t start, int64_t stop, int64_t step, bool drop) {
    LUNAR_CHECK(lunar_wrap_dim(op, &dim, x->ndim));
    if (x->ndim == 0) return lunar_fail(LUNAR_ERR_SHAPE, "%s: cannot index a 0-d tensor", op);
    int64_t size = x->shape[dim];
    if (step <= 0) return lunar_fail(LUNAR_ERR_ARG, "%s: step must be positive (got %lld)", op,
                                     (long long)step);
    if (start < 0 || start > size || stop < start || stop > size)
        return lunar_fail(LUNAR_ERR_INDEX, "%s: range [%lld, %lld) out of bounds for dim %d of "
                                           "size %lld",
                          op, (long long)start + 1, (long long)stop + 1, dim + 1,
                          (long long)size);
    int64_t shape[LUNAR_MAX_DIMS], strides[LUNAR_MAX_DIMS];
    int nd = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (d == dim) {
            if (drop) continue;
            shape[nd] = (stop - start + step - 1) / step;
            strides[nd] = x->strides[d] * step;
        } else {
            shape[nd] = x->shape[d];
            strides[nd] = x->strides[d];
        }
        nd++;
    }
    int64_t p[6] = {V_NARROW, dim, start, stop, step, drop};
    return make_view(out, x, nd, shape, strides, x->offset + start * x->strides[dim], op, p, 6);
}

lunar_status lunar_narrow(lunar_tensor **out, lunar_tensor *x, int dim, int64_t start,
                          int64_t length) {
    if (length < 0) return lunar_fail(LUNAR_ERR_ARG, "narrow: negative length %lld",
                                      (long long)length);
    return window(out, x, "narrow", dim, start, start + length, 1, false);
}

lunar_status lunar_slice(lunar_tensor **out, lunar_tensor *x, int dim, int64_t start,
                         int64_t stop, int64_t step) {
    return window(out, x, "slice", dim, start, stop, step, false);
}

lunar_status lunar_select(lunar_tensor **out, lunar_tensor *x, int dim, int64_t index) {
    LUNAR_CHECK(lunar_wrap_dim("select", &dim, x->ndim));
    if (x->ndim == 0) return lunar_fail(LUNAR_ERR_SHAPE, "select: cannot index a 0-d tensor");
    if (index < 0 || index >= x->shape[dim])
        return lunar_fail(LUNAR_ERR_INDEX, "select: index %lld out of range for dim %d of size "
                                           "%lld",
                          (long long)index + 1, dim + 1, (long long)x->shape[dim]);
    return window(out, x, "select", dim, index, index + 1, 1, true);
}

lunar_status lunar_expand(lunar_tensor **out, lunar_tensor *x, int ndim, const int64_t *shape) {
    if (ndim < x->ndim || ndim > LUNAR_MAX_DIMS)
        return lunar_fail(LUNAR_ERR_SHAPE, "expand: %d dims for a %d-d tensor", ndim, x->ndim);
    int64_t s[LUNAR_MAX_DIMS];
    int lead = ndim - x->ndim;
    for (int d = 0; d < ndim; d++) {
        int64_t have = d < lead ? 1 : x->shape[d - lead];
        s[d] = shape[d] == -1 && d >= lead ? have : shape[d];
        if (s[d] < 0 || (have != 1 && have != s[d])) {
            char a[128], b[128];
            return lunar_fail(LUNAR_ERR_SHAPE, "expand: cannot expand %s to %s",
                              lunar_shape_str(a, sizeof a, x->ndim, x->shape),
                              lunar_shape_str(b, sizeof b, ndim, shape));
        }
    }
    lunar_tensor *v = lunar_broadcast_view(x, ndim, s);
    if (!v) return lunar_fail(LUNAR_ERR_MEMORY, "expand: out of memory");
    int64_t p = V_IDENTITY; /* the engine sums the gradient back to x's shape */
    lunar_status st = make_view(out, x, ndim, v->shape, v->strides, v->offset, "expand", &p, 1);
    lunar_tensor_release(v);
    return st;
}

lunar_status lunar_squeeze(lunar_tensor **out, lunar_tensor *x, int dim) {
    int64_t shape[LUNAR_MAX_DIMS], strides[LUNAR_MAX_DIMS];
    int nd = 0;
    if (dim != LUNAR_ALL_DIMS) { /* one dim */
        LUNAR_CHECK(lunar_wrap_dim("squeeze", &dim, x->ndim));
    }
    for (int d = 0; d < x->ndim; d++) {
        bool drop = x->shape[d] == 1 && (dim == LUNAR_ALL_DIMS || d == dim);
        if (drop) continue;
        shape[nd] = x->shape[d];
        strides[nd] = x->strides[d];
        nd++;
    }
    int64_t p = V_RESHAPE;
    return make_view(out, x, nd, shape, strides, x->offset, "squeeze", &p, 1);
}

lunar_status lunar_unsqueeze(lunar_tensor **out, lunar_tensor *x, int dim) {
    if (x->ndim == LUNAR_MAX_DIMS)
        return lunar_fail(LUNAR_ERR_SHAPE, "unsqueeze: already %d dims", LUNAR_MAX_DIMS);
    int n = x->ndim + 1;
    if (dim < -n || dim >= n)
        return lunar_fail(LUNAR_ERR_INDEX, "unsqueeze: dim %d out of range for a %d-d tensor",
                          dim + 1, x->ndim);
    if (dim < 0) dim += n;
    int64_t shape[LUNAR_MAX_DIMS], strides[LUNAR_MAX_DIMS];
    for (int d = 0, s = 0; d < n; d++) {
        if (d == dim) {
            shape[d] = 1;
            strides[d] = s < x->ndim ? x->strides[s] * x->shape[s] : 1;
        } else {
            shape[d] = x->shape[s];
            strides[d] = x->strides[s];
            s++;
        }
    }
    int64_t p = V_RESHAPE;
    return make_view(out, x, n, shape, strides, x->offset, "unsqueeze", &p, 1);
}

lunar_status lunar_unfold(lunar_tensor **out, lunar_tensor *x, int dim, int64_t size,
                          int64_t step) {
    LUNAR_CHECK(lunar_wrap_dim("unfold", &dim, x->ndim));
    if (x->ndim == LUNAR_MAX_DIMS)
        return lunar_fail(LUNAR_ERR_SHAPE, "unfold: already %d dims", LUNAR_MAX_DIMS);
    int64_t len = x->ndim ? x->shape[dim] : 1;
    if (size < 0 || size > len || step <= 0)
        return lunar_fail(LUNAR_ERR_ARG, "unfold: size %lld, step %lld for dim %d of size %lld",
                          (long long)size, (long long)step, dim + 1, (long long)len);
    int64_t shape[LUNAR_MAX_DIMS], strides[LUNAR_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) {
        shape[d] = d == dim ? (len - size) / step + 1 : x->shape[d];
        strides[d] = d == dim ? x->strides[d] * step : x->strides[d];
    }
    shape[x->ndim] = size;
    strides[x->ndim] = x->ndim ? x->strides[dim] : 1;
    int64_t p[4] = {V_UNFOLD, dim, size, step};
    return make_view(out, x, x->ndim + 1, shape, strides, x->offset, "unfold", p, 4);
}

/* ---- copies ---- */

static lunar_status copy_as(lunar_tensor **out, lunar_tensor *x, lunar_dtype dt,
                            const char *name) {
    LUNAR_CHECK(lunar_tensor_new(out, x->ndim, x->shape, dt, x));
    lunar_status st = lunar_raw_copy(*out, x);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*out);
        *out = NULL;
        return st;
    }
    if (lunar_dtype_is_float(dt)) { /* a cast to an integer type ends the graph */
        int64_t p = V_IDENTITY;
        lunar_node *n = lunar_node_begin(name, view_backward, 1, &x);
        if (n) {
            n->i[0] = p;
            lunar_node_finish(n, *out);
        }
    }
    return LUNAR_OK;
}

lunar_status lunar_contiguous(lunar_tensor **out, lunar_tensor *x) {
    if (lunar_tensor_is_contiguous(x)) {
        lunar_tensor_retain(x);
        *out = x;
        return LUNAR_OK;
    }
    return copy_as(out, x, x->dtype, "contiguous");
}

lunar_status lunar_clone(lunar_tensor **out, lunar_tensor *x) {
    return copy_as(out, x, x->dtype, "clone");
}

lunar_status lunar_to_dtype(lunar_tensor **out, lunar_tensor *x, lunar_dtype dt) {
    if ((unsigned)dt >= LUNAR_DTYPE_COUNT) return lunar_fail(LUNAR_ERR_DTYPE, "to: bad dtype");
    if (dt == x->dtype) {
        lunar_tensor_retain(x);
        *out = x;
        return LUNAR_OK;
    }
    return copy_as(out, x, dt, "to");
}

lunar_status lunar_detach(lunar_tensor **out, lunar_tensor *x) {
    *out = lunar_tensor_alias(x, x->ndim, x->shape, x->strides, x->offset);
    return *out ? LUNAR_OK : lunar_fail(LUNAR_ERR_MEMORY, "detach: out of memory");
}
