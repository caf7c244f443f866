/*
 * ops_shape.c - ops that move elements around: cat, stack, split/chunk, flip, roll,
 * repeat/tile, tril/triu, pad. Each is a few strided copies through the backend (views of
 * the output and of the input, negative strides for reversal, stride 0 for tiling), or a
 * where() against a mask for tril/triu, so every backend gets them from kernels it already
 * has and no CPU kernel of their own was needed; each records a backward rule.
 */
#include "lunar-impl.h"

#include <stdlib.h>
#include <string.h>

/* ---- helpers: plain aliases (no autograd) ---- */

static lunar_status oom(const char *op) {
    return lunar_fail(LUNAR_ERR_MEMORY, "%s: out of memory", op);
}

/* x narrowed to [start, start + len) along dim. */
static lunar_tensor *narrow_alias(const lunar_tensor *x, int dim, int64_t start, int64_t len) {
    int64_t shape[LUNAR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[dim] = len;
    return lunar_tensor_alias(x, x->ndim, shape, x->strides, x->offset + start * x->strides[dim]);
}

/* x walked backwards along the dims in mask: a negative stride from the last element. */
static lunar_tensor *flip_alias(const lunar_tensor *x, uint32_t mask) {
    int64_t strides[LUNAR_MAX_DIMS], offset = x->offset;
    memcpy(strides, x->strides, sizeof strides);
    for (int d = 0; d < x->ndim; d++)
        if ((mask >> d) & 1 && x->shape[d] > 0) {
            offset += (x->shape[d] - 1) * x->strides[d];
            strides[d] = -x->strides[d];
        }
    return lunar_tensor_alias(x, x->ndim, x->shape, strides, offset);
}

/* Copies src into dst and releases both aliases (either may be NULL after a failed alias). */
static lunar_status copy_release(const char *op, lunar_tensor *dst, lunar_tensor *src) {
    lunar_status st = dst && src ? lunar_raw_copy(dst, src) : oom(op);
    lunar_tensor_release(dst);
    lunar_tensor_release(src);
    return st;
}

/* A fresh contiguous copy of x (never x itself: callers write into it). */
static lunar_status fresh_copy(lunar_tensor **out, const lunar_tensor *x) {
    LUNAR_CHECK(lunar_tensor_new(out, x->ndim, x->shape, x->dtype, x));
    lunar_status st = lunar_raw_copy(*out, x);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*out);
        *out = NULL;
    }
    return st;
}

static void fail_cleanup(lunar_status st, lunar_tensor **out) {
    if (st != LUNAR_OK) {
        lunar_tensor_release(*out);
        *out = NULL;
    }
}

/* ---- cat and stack ---- */

/* The gradient of each input is its window of g. ctx holds the inputs' sizes along dim. */
static lunar_status cat_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    const int64_t *sizes = n->ctx;
    int dim = (int)n->i[0];
    int64_t off = 0;
    for (int k = 0; k < n->n_inputs; k++) {
        if (lunar_node_needs(n, k)) LUNAR_CHECK(lunar_narrow(&gi[k], g, dim, off, sizes[k]));
        off += sizes[k];
    }
    return LUNAR_OK;
}

lunar_status lunar_cat(lunar_tensor **out, int n, lunar_tensor *const *ts, int dim) {
    *out = NULL;
    char s0[128], sk[128];
    if (n < 1) return lunar_fail(LUNAR_ERR_ARG, "cat: needs at least one tensor");
    const lunar_tensor *t0 = ts[0];
    if (t0->ndim == 0) return lunar_fail(LUNAR_ERR_SHAPE, "cat: tensor 1 is 0-d; cat needs dims");
    LUNAR_CHECK(lunar_wrap_dim("cat", &dim, t0->ndim));
    int64_t shape[LUNAR_MAX_DIMS];
    memcpy(shape, t0->shape, sizeof shape);
    shape[dim] = 0;
    lunar_dtype dt = t0->dtype;
    for (int k = 0; k < n; k++) {
        const lunar_tensor *t = ts[k];
        LUNAR_CHECK(lunar_same_device("cat", t0, t));
        bool ok = t->ndim == t0->ndim;
        for (int d = 0; ok && d < t->ndim; d++) ok = d == dim || t->shape[d] == t0->shape[d];
        if (!ok)
            return lunar_fail(LUNAR_ERR_SHAPE, "cat: tensor %d has shape %s but tensor 1 has %s: "
                                               "sizes must match except in dim %d",
                              k + 1, lunar_shape_str(sk, sizeof sk, t->ndim, t->shape),
                              lunar_shape_str(s0, sizeof s0, t0->ndim, t0->shape), dim + 1);
        shape[dim] += t->shape[dim];
        dt = lunar_promote(dt, t->dtype);
    }
    int64_t *sizes = malloc(sizeof(int64_t) * (size_t)n);
    if (!sizes) return oom("cat");
    lunar_status st;
    LUNAR_GOTO(lunar_tensor_new(out, t0->ndim, shape, dt, t0));
    int64_t off = 0;
    for (int k = 0; k < n; k++) {
        sizes[k] = ts[k]->shape[dim];
        lunar_tensor *src = lunar_tensor_alias(ts[k], ts[k]->ndim, ts[k]->shape, ts[k]->strides,
                                               ts[k]->offset);
        LUNAR_GOTO(copy_release("cat", narrow_alias(*out, dim, off, sizes[k]), src));
        off += sizes[k];
    }
    lunar_node *node = lunar_node_begin("cat", cat_backward, n, (lunar_tensor **)ts);
    if (node) {
        node->i[0] = dim;
        node->ctx = sizes;
        node->ctx_free = free;
        sizes = NULL;
        lunar_node_finish(node, *out);
    }
done:
    free(sizes);
    fail_cleanup(st, out);
    return st;
}

lunar_status lunar_stack(lunar_tensor **out, int n, lunar_tensor *const *ts, int dim) {
    *out = NULL;
    char s0[128], sk[128];
    if (n < 1) return lunar_fail(LUNAR_ERR_ARG, "stack: needs at least one tensor");
    const lunar_tensor *t0 = ts[0];
    int nd = t0->ndim + 1;
    if (nd > LUNAR_MAX_DIMS) return lunar_fail(LUNAR_ERR_SHAPE, "stack: too many dims");
    if (dim < -nd || dim >= nd)
        return lunar_fail(LUNAR_ERR_INDEX, "stack: dim %d out of range for %d-d tensors",
                          dim + 1, t0->ndim);
    if (dim < 0) dim += nd;
    for (int k = 1; k < n; k++)
        if (!lunar_shape_equal(ts[k]->ndim, ts[k]->shape, t0->ndim, t0->shape))
            return lunar_fail(LUNAR_ERR_SHAPE, "stack: tensor %d has shape %s but tensor 1 has "
                                               "%s: all shapes must match",
                              k + 1, lunar_shape_str(sk, sizeof sk, ts[k]->ndim, ts[k]->shape),
                              lunar_shape_str(s0, sizeof s0, t0->ndim, t0->shape));
    lunar_tensor **u = calloc((size_t)n, sizeof *u);
    if (!u) return oom("stack");
    lunar_status st = LUNAR_OK;
    for (int k = 0; k < n && st == LUNAR_OK; k++) st = lunar_unsqueeze(&u[k], ts[k], dim);
    if (st == LUNAR_OK) st = lunar_cat(out, n, u, dim);
    for (int k = 0; k < n; k++) lunar_tensor_release(u[k]);
    free(u);
    return st;
}

/* ---- split and chunk: views ---- */

void lunar_tensors_free(lunar_tensor **ts, int64_t n) {
    if (!ts) return;
    for (int64_t k = 0; k < n; k++) lunar_tensor_release(ts[k]);
    free(ts);
}

/* count pieces along dim: piece k has sizes[k] elements, or `size` (the rest for the last)
 * when sizes is NULL. */
static lunar_status split_pieces(lunar_tensor ***parts, int64_t *n, lunar_tensor *x,
                                 int64_t count, int64_t size, const int64_t *sizes, int dim) {
    lunar_tensor **p = calloc((size_t)count, sizeof *p);
    if (!p) return oom("split");
    int64_t off = 0, len = x->shape[dim];
    lunar_status st = LUNAR_OK;
    for (int64_t k = 0; k < count && st == LUNAR_OK; k++) {
        int64_t s = sizes ? sizes[k] : (len - off < size ? len - off : size);
        st = lunar_narrow(&p[k], x, dim, off, s);
        off += s;
    }
    if (st != LUNAR_OK) {
        lunar_tensors_free(p, count);
        return st;
    }
    *parts = p;
    *n = count;
    return LUNAR_OK;
}

static lunar_status split_dim(const char *op, lunar_tensor *x, int *dim) {
    if (x->ndim == 0) return lunar_fail(LUNAR_ERR_SHAPE, "%s: cannot split a 0-d tensor", op);
    return lunar_wrap_dim(op, dim, x->ndim);
}

lunar_status lunar_split(lunar_tensor ***parts, int64_t *n, lunar_tensor *x, int64_t size,
                         int dim) {
    *parts = NULL;
    *n = 0;
    LUNAR_CHECK(split_dim("split", x, &dim));
    int64_t len = x->shape[dim];
    if (size <= 0)
        return lunar_fail(LUNAR_ERR_ARG, "split: piece size must be positive (got %lld)",
                          (long long)size);
    int64_t count = len == 0 ? 1 : (len + size - 1) / size;
    return split_pieces(parts, n, x, count, size, NULL, dim);
}

lunar_status lunar_split_sizes(lunar_tensor ***parts, int64_t *n, lunar_tensor *x,
                               int64_t n_sizes, const int64_t *sizes, int dim) {
    *parts = NULL;
    *n = 0;
    LUNAR_CHECK(split_dim("split", x, &dim));
    if (n_sizes < 1) return lunar_fail(LUNAR_ERR_ARG, "split: needs at least one size");
    int64_t sum = 0;
    for (int64_t k = 0; k < n_sizes; k++) {
        if (sizes[k] < 0)
            return lunar_fail(LUNAR_ERR_ARG, "split: size %lld is negative (%lld)",
                              (long long)k + 1, (long long)sizes[k]);
        sum += sizes[k];
    }
    if (sum != x->shape[dim]) {
        char s[128];
        return lunar_fail(LUNAR_ERR_SHAPE, "split: sizes add up to %lld but dim %d of %s has "
                                           "size %lld",
                          (long long)sum, dim + 1, lunar_shape_str(s, sizeof s, x->ndim, x->shape),
                          (long long)x->shape[dim]);
    }
    return split_pieces(parts, n, x, n_sizes, 0, sizes, dim);
}

lunar_status lunar_chunk(lunar_tensor ***parts, int64_t *n, lunar_tensor *x, int64_t chunks,
                         int dim) {
    *parts = NULL;
    *n = 0;
    LUNAR_CHECK(split_dim("chunk", x, &dim));
    if (chunks <= 0)
        return lunar_fail(LUNAR_ERR_ARG, "chunk: number of chunks must be positive (got %lld)",
                          (long long)chunks);
    int64_t len = x->shape[dim], size = (len + chunks - 1) / chunks;
    return lunar_split(parts, n, x, size > 0 ? size : 1, dim);
}

/* ---- flip and roll ---- */

static lunar_status flip_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    return lunar_flip(&gi[0], g, (uint32_t)n->i[0]);
}

lunar_status lunar_flip(lunar_tensor **out, lunar_tensor *x, uint32_t dims) {
    *out = NULL;
    if (dims >> (x->ndim ? x->ndim : 1))
        return lunar_fail(LUNAR_ERR_INDEX, "flip: dim mask 0x%x out of range for a %d-d tensor",
                          dims, x->ndim);
    if (x->ndim == 0) dims = 0;
    LUNAR_CHECK(lunar_tensor_new(out, x->ndim, x->shape, x->dtype, x));
    lunar_tensor *dst = lunar_tensor_alias(*out, x->ndim, x->shape, (*out)->strides, 0);
    lunar_status st = copy_release("flip", dst, flip_alias(x, dims));
    if (st != LUNAR_OK) {
        fail_cleanup(st, out);
        return st;
    }
    lunar_node *n = lunar_node_begin("flip", flip_backward, 1, &x);
    if (n) {
        n->i[0] = dims;
        lunar_node_finish(n, *out);
    }
    return LUNAR_OK;
}

/* n->i[d]: the shift of dim d; the gradient rolls back. */
static lunar_status roll_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    int64_t shifts[LUNAR_MAX_DIMS];
    int dims[LUNAR_MAX_DIMS];
    for (int d = 0; d < g->ndim; d++) {
        shifts[d] = -n->i[d];
        dims[d] = d;
    }
    return lunar_roll(&gi[0], g, g->ndim, shifts, dims);
}

/* Rolls every dim d by shift[d] (0 <= shift < size): each of the 2^k blocks (k rolled
 * dims) is one copy. */
static lunar_status roll_copy(lunar_tensor *out, const lunar_tensor *x, const int64_t *shift) {
    int rolled[LUNAR_MAX_DIMS], k = 0;
    for (int d = 0; d < x->ndim; d++)
        if (shift[d]) rolled[k++] = d;
    for (uint32_t combo = 0; combo < (1u << k); combo++) {
        int64_t shape[LUNAR_MAX_DIMS], doff = out->offset, soff = x->offset;
        memcpy(shape, x->shape, sizeof shape);
        for (int j = 0; j < k; j++) {
            int d = rolled[j];
            int64_t L = x->shape[d], s = shift[d];
            bool wrap = (combo >> j) & 1; /* the tail that wraps around to the front */
            shape[d] = wrap ? s : L - s;
            doff += (wrap ? 0 : s) * out->strides[d];
            soff += (wrap ? L - s : 0) * x->strides[d];
        }
        lunar_tensor *dst = lunar_tensor_alias(out, x->ndim, shape, out->strides, doff);
        LUNAR_CHECK(copy_release("roll", dst,
                                 lunar_tensor_alias(x, x->ndim, shape, x->strides, soff)));
    }
    return LUNAR_OK;
}

lunar_status lunar_roll(lunar_tensor **out, lunar_tensor *x, int n, const int64_t *shifts,
                        const int *dims) {
    *out = NULL;
    if (!dims) { /* the flattened tensor */
        if (n != 1)
            return lunar_fail(LUNAR_ERR_ARG, "roll: without dims, give one shift (got %d)", n);
        int64_t numel = lunar_tensor_numel(x);
        int zero = 0;
        lunar_tensor *flat = NULL, *r = NULL;
        lunar_status st = lunar_reshape(&flat, x, 1, &numel);
        if (st == LUNAR_OK) st = lunar_roll(&r, flat, 1, shifts, &zero);
        if (st == LUNAR_OK) st = lunar_reshape(out, r, x->ndim, x->shape);
        lunar_tensor_release(flat);
        lunar_tensor_release(r);
        return st;
    }
    if (n < 1) return lunar_fail(LUNAR_ERR_ARG, "roll: needs at least one shift");
    if (x->ndim == 0) return lunar_fail(LUNAR_ERR_SHAPE, "roll: cannot roll dims of a 0-d tensor");
    int64_t shift[LUNAR_MAX_DIMS] = {0};
    for (int k = 0; k < n; k++) {
        int d = dims[k];
        LUNAR_CHECK(lunar_wrap_dim("roll", &d, x->ndim));
        int64_t L = x->shape[d];
        if (L > 0) shift[d] = ((shift[d] + shifts[k]) % L + L) % L;
    }
    LUNAR_CHECK(lunar_tensor_new(out, x->ndim, x->shape, x->dtype, x));
    lunar_status st = roll_copy(*out, x, shift);
    if (st != LUNAR_OK) {
        fail_cleanup(st, out);
        return st;
    }
    lunar_node *node = lunar_node_begin("roll", roll_backward, 1, &x);
    if (node) {
        memcpy(node->i, shift, sizeof(int64_t) * (size_t)x->ndim);
        lunar_node_finish(node, *out);
    }
    return LUNAR_OK;
}

/* ---- repeat and tile ---- */

/* Tiling dims d1 < ... < dk (k <= 3) of a contiguous shape cur (n dims) by r1..rk is one
 * copy between views of 1 + 2k dims: [seg0, r1, seg1, ..., rk, segk], where seg0 is the
 * product of the dims before d1 and seg_i that of the dims from d_i to d_{i+1}. The input
 * walks it with stride 0 over the r's; the output is that shape, contiguous. */
#define REPEAT_GROUP 3

static int group_shape(int n, const int64_t *cur, int k, const int *dd, const int64_t *r,
                       int64_t *view) {
    int m = 0;
    int64_t seg = 1;
    for (int d = 0, j = 0; d < n; d++) {
        if (j < k && d == dd[j]) {
            view[m++] = seg;
            view[m++] = r[j++];
            seg = 1;
        }
        seg *= cur[d];
    }
    view[m++] = seg;
    return m;
}

/* The passes of repeat: which dims (reps != 1) go into pass p. */
static int repeat_pass(int n, const int64_t *reps, int p, int *dd, int64_t *r) {
    int k = 0, seen = 0;
    for (int d = 0; d < n; d++) {
        if (reps[d] == 1) continue;
        if (seen++ / REPEAT_GROUP != p) continue;
        dd[k] = d;
        r[k++] = reps[d];
    }
    return k;
}

/* Undoes the passes in reverse: reshape g to the pass's grouped view and sum over the r's. */
static lunar_status repeat_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    int nd = (int)n->i[0];
    const int64_t *reps = &n->i[1];
    const lunar_edge *in = &n->next[0];
    int64_t base[LUNAR_MAX_DIMS]; /* the input's shape with leading ones */
    int lead = nd - in->ndim, nrep = 0;
    for (int d = 0; d < nd; d++) {
        base[d] = d < lead ? 1 : in->shape[d - lead];
        nrep += reps[d] != 1;
    }
    int npass = (nrep + REPEAT_GROUP - 1) / REPEAT_GROUP;
    lunar_tensor *cur = g;
    lunar_tensor_retain(cur);
    lunar_status st = LUNAR_OK;
    for (int p = npass - 1; p >= 0 && st == LUNAR_OK; p--) {
        int dd[REPEAT_GROUP];
        int64_t r[REPEAT_GROUP], before[LUNAR_MAX_DIMS], view[2 * REPEAT_GROUP + 1];
        /* the shape before pass p: dims of earlier passes already tiled */
        for (int d = 0, seen = 0; d < nd; d++) {
            before[d] = base[d];
            if (reps[d] != 1 && seen++ / REPEAT_GROUP < p) before[d] *= reps[d];
        }
        int k = repeat_pass(nd, reps, p, dd, r);
        int m = group_shape(nd, before, k, dd, r, view);
        uint32_t mask = 0;
        for (int j = 0; j < k; j++) mask |= 1u << (2 * j + 1);
        lunar_tensor *v = NULL, *s = NULL;
        st = lunar_reshape(&v, cur, m, view);
        if (st == LUNAR_OK) st = lunar_reduce(&s, LUNAR_OP_SUM, v, mask, false, 0);
        lunar_tensor_release(cur);
        cur = NULL;
        if (st == LUNAR_OK) st = lunar_reshape(&cur, s, nd, before);
        lunar_tensor_release(v);
        lunar_tensor_release(s);
    }
    if (st == LUNAR_OK) st = lunar_reshape(&gi[0], cur, in->ndim, in->shape);
    lunar_tensor_release(cur);
    return st;
}

lunar_status lunar_repeat(lunar_tensor **out, lunar_tensor *x, int n, const int64_t *reps) {
    *out = NULL;
    if (n < x->ndim || n > LUNAR_MAX_DIMS)
        return lunar_fail(LUNAR_ERR_SHAPE, "repeat: %d repeats for a %d-d tensor (give one per "
                                           "dim, at most %d)",
                          n, x->ndim, LUNAR_MAX_DIMS);
    int64_t cur[LUNAR_MAX_DIMS], strides[LUNAR_MAX_DIMS];
    int lead = n - x->ndim, nrep = 0;
    for (int d = 0; d < n; d++) {
        if (reps[d] < 0)
            return lunar_fail(LUNAR_ERR_ARG, "repeat: negative repeat %lld for dim %d",
                              (long long)reps[d], d + 1);
        cur[d] = d < lead ? 1 : x->shape[d - lead];
        nrep += reps[d] != 1;
    }
    /* the input as a contiguous tensor with the leading ones */
    lunar_tensor *c = NULL, *src = NULL, *dst = NULL;
    lunar_status st;
    LUNAR_GOTO(lunar_raw_contiguous(&c, x));
    lunar_contiguous_strides(n, cur, strides);
    src = lunar_tensor_alias(c, n, cur, strides, c->offset);
    if (!src) LUNAR_GOTO(oom("repeat"));
    if (nrep == 0) LUNAR_GOTO(fresh_copy(&dst, src)); /* repeat always copies, as in Torch */
    for (int p = 0; p * REPEAT_GROUP < nrep; p++) {
        int dd[REPEAT_GROUP];
        int64_t r[REPEAT_GROUP], view[2 * REPEAT_GROUP + 1], vs[2 * REPEAT_GROUP + 1];
        int64_t ones[2 * REPEAT_GROUP + 1];
        int k = repeat_pass(n, reps, p, dd, r);
        int m = group_shape(n, cur, k, dd, r, view);
        for (int j = 0; j < m; j++) ones[j] = j % 2 ? 1 : view[j];
        lunar_contiguous_strides(m, ones, vs);
        for (int j = 1; j < m; j += 2) vs[j] = 0;
        for (int j = 0; j < k; j++) cur[dd[j]] *= r[j];
        LUNAR_GOTO(lunar_tensor_new(&dst, n, cur, x->dtype, x));
        int64_t ds[2 * REPEAT_GROUP + 1];
        lunar_contiguous_strides(m, view, ds);
        LUNAR_GOTO(copy_release("repeat", lunar_tensor_alias(dst, m, view, ds, 0),
                                lunar_tensor_alias(src, m, view, vs, src->offset)));
        lunar_tensor_release(src);
        src = dst;
        dst = NULL;
    }
    if (!dst) {
        dst = src;
        src = NULL;
    }
    *out = dst;
    dst = NULL;
    lunar_node *node = lunar_node_begin("repeat", repeat_backward, 1, &x);
    if (node) {
        node->i[0] = n;
        memcpy(&node->i[1], reps, sizeof(int64_t) * (size_t)n);
        lunar_node_finish(node, *out);
    }
done:
    lunar_tensor_release(c);
    lunar_tensor_release(src);
    lunar_tensor_release(dst);
    fail_cleanup(st, out);
    return st;
}

lunar_status lunar_tile(lunar_tensor **out, lunar_tensor *x, int n, const int64_t *reps) {
    if (n >= x->ndim) return lunar_repeat(out, x, n, reps);
    *out = NULL;
    if (n < 0) return lunar_fail(LUNAR_ERR_ARG, "tile: negative count of repeats");
    int64_t r[LUNAR_MAX_DIMS];
    int lead = x->ndim - n;
    for (int d = 0; d < x->ndim; d++) r[d] = d < lead ? 1 : reps[d - lead];
    return lunar_repeat(out, x, x->ndim, r);
}

/* ---- tril and triu ---- */

static lunar_status tri(lunar_tensor **out, lunar_tensor *x, int64_t k, bool upper);

static lunar_status tri_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    return tri(&gi[0], g, n->i[0], n->i[1]); /* the same mask on the gradient */
}

/* mask [R, C] bool: j - i <= k (lower) or >= k (upper), built from aranges on x's device. */
static lunar_status tri_mask(lunar_tensor **mask, const lunar_tensor *x, int64_t k, bool upper) {
    int64_t R = x->shape[x->ndim - 2], C = x->shape[x->ndim - 1];
    lunar_tensor *rows = NULL, *cols = NULL, *diff = NULL;
    int64_t rs[2] = {R, 1};
    lunar_status st;
    LUNAR_GOTO(lunar_tensor_new(&rows, 2, rs, LUNAR_I64, x));
    LUNAR_GOTO(LUNAR_KERNEL(lunar_tensor_backend(x), arange, rows, 0, 1));
    LUNAR_GOTO(lunar_tensor_new(&cols, 1, &C, LUNAR_I64, x));
    LUNAR_GOTO(LUNAR_KERNEL(lunar_tensor_backend(x), arange, cols, 0, 1));
    LUNAR_GOTO(lunar_binary(&diff, LUNAR_OP_SUB, cols, rows));
    LUNAR_GOTO(lunar_binary_scalar(mask, upper ? LUNAR_OP_GE : LUNAR_OP_LE, diff, (double)k,
                                   false));
done:
    lunar_tensor_release(rows);
    lunar_tensor_release(cols);
    lunar_tensor_release(diff);
    return st;
}

static lunar_status tri(lunar_tensor **out, lunar_tensor *x, int64_t k, bool upper) {
    *out = NULL;
    const char *op = upper ? "triu" : "tril";
    if (x->ndim < 2) {
        char s[128];
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: needs at least 2 dims (got %s)", op,
                          lunar_shape_str(s, sizeof s, x->ndim, x->shape));
    }
    lunar_tensor *mask = NULL, *zero = NULL, *vm = NULL, *vz = NULL;
    lunar_status st;
    LUNAR_GOTO(tri_mask(&mask, x, k, upper));
    LUNAR_GOTO(lunar_tensor_new(&zero, 0, NULL, x->dtype, x));
    LUNAR_GOTO(LUNAR_KERNEL(lunar_tensor_backend(x), fill, zero, 0));
    vm = lunar_broadcast_view(mask, x->ndim, x->shape);
    vz = lunar_broadcast_view(zero, x->ndim, x->shape);
    if (!vm || !vz) LUNAR_GOTO(oom(op));
    LUNAR_GOTO(lunar_tensor_new(out, x->ndim, x->shape, x->dtype, x));
    LUNAR_GOTO(LUNAR_KERNEL(lunar_tensor_backend(x), where, *out, vm, x, vz));
    lunar_node *n = lunar_node_begin(op, tri_backward, 1, &x);
    if (n) {
        n->i[0] = k;
        n->i[1] = upper;
        lunar_node_finish(n, *out);
    }
done:
    lunar_tensor_release(mask);
    lunar_tensor_release(zero);
    lunar_tensor_release(vm);
    lunar_tensor_release(vz);
    fail_cleanup(st, out);
    return st;
}

lunar_status lunar_tril(lunar_tensor **out, lunar_tensor *x, int64_t k) {
    return tri(out, x, k, false);
}

lunar_status lunar_triu(lunar_tensor **out, lunar_tensor *x, int64_t k) {
    return tri(out, x, k, true);
}

/* ---- pad ---- */

typedef struct pad_ctx {
    lunar_pad_mode mode;
    int64_t lo[LUNAR_MAX_DIMS], hi[LUNAR_MAX_DIMS];
} pad_ctx;

static int64_t pos(int64_t v) { return v > 0 ? v : 0; }

/* The part of the input that lands in the output (constant mode may crop): per dim, the
 * input's start, the output's start and the common length. */
static void pad_window(int ndim, const int64_t *shape, const pad_ctx *p, int64_t *xs,
                       int64_t *os, int64_t *len) {
    for (int d = 0; d < ndim; d++) {
        xs[d] = pos(-p->lo[d]);
        os[d] = pos(p->lo[d]);
        len[d] = pos(shape[d] - pos(-p->lo[d]) - pos(-p->hi[d]));
    }
}

static lunar_tensor *window_alias(const lunar_tensor *t, const int64_t *start,
                                  const int64_t *len) {
    int64_t off = t->offset;
    for (int d = 0; d < t->ndim; d++) off += start[d] * t->strides[d];
    return lunar_tensor_alias(t, t->ndim, len, t->strides, off);
}

/* len elements along d as one element repeated (stride 0): replicate's source. */
static lunar_tensor *edge_alias(const lunar_tensor *t, int d, int64_t at, int64_t len) {
    lunar_tensor *e = narrow_alias(t, d, at, len);
    if (e) e->strides[d] = 0;
    return e;
}

/* Fills the borders of out (its centre holds the input) dim by dim, in increasing order;
 * each step copies over the full extent of the other dims, so corners come out right. */
static lunar_status pad_borders(lunar_tensor *out, const int64_t *shape, const pad_ctx *p) {
    for (int d = 0; d < out->ndim; d++) {
        int64_t l = p->lo[d], r = p->hi[d], n = shape[d];
        if (l == 0 && r == 0) continue;
        lunar_tensor *ls, *rs;
        if (p->mode == LUNAR_PAD_REFLECT) { /* out[l - 1 - i] = out[l + 1 + i] */
            lunar_tensor *a = narrow_alias(out, d, l + 1, l);
            lunar_tensor *b = narrow_alias(out, d, l + n - 1 - r, r);
            ls = a ? flip_alias(a, 1u << d) : NULL;
            rs = b ? flip_alias(b, 1u << d) : NULL;
            lunar_tensor_release(a);
            lunar_tensor_release(b);
        } else {
            ls = edge_alias(out, d, l, l);
            rs = edge_alias(out, d, l + n - 1, r);
        }
        if (l) LUNAR_CHECK(copy_release("pad", narrow_alias(out, d, 0, l), ls));
        else lunar_tensor_release(ls);
        if (r) LUNAR_CHECK(copy_release("pad", narrow_alias(out, d, l + n, r), rs));
        else lunar_tensor_release(rs);
    }
    return LUNAR_OK;
}

/* Adds src into dst (same shape), through the backend; releases both aliases. */
static lunar_status add_release(lunar_tensor *dst, lunar_tensor *src) {
    lunar_status st = dst && src ? LUNAR_KERNEL(lunar_tensor_backend(dst), binary, LUNAR_OP_ADD,
                                                 dst, dst, src)
                                 : oom("pad");
    lunar_tensor_release(dst);
    lunar_tensor_release(src);
    return st;
}

/* The adjoint of pad_borders: dims in decreasing order, each border's gradient added back
 * onto the elements it was copied from, then the border cut off. */
static lunar_status pad_fold(lunar_tensor **cur, const pad_ctx *p, const int64_t *shape) {
    for (int d = (*cur)->ndim - 1; d >= 0; d--) {
        lunar_tensor *g = *cur;
        int64_t l = p->lo[d], r = p->hi[d], n = shape[d];
        if (l == 0 && r == 0) continue;
        if (p->mode == LUNAR_PAD_REFLECT) {
            if (l) {
                lunar_tensor *b = narrow_alias(g, d, 0, l);
                LUNAR_CHECK(add_release(narrow_alias(g, d, l + 1, l),
                                        b ? flip_alias(b, 1u << d) : NULL));
                lunar_tensor_release(b);
            }
            if (r) {
                lunar_tensor *b = narrow_alias(g, d, l + n, r);
                LUNAR_CHECK(add_release(narrow_alias(g, d, l + n - 1 - r, r),
                                        b ? flip_alias(b, 1u << d) : NULL));
                lunar_tensor_release(b);
            }
        } else {
            int64_t at[2] = {l, l + n - 1}, from[2] = {0, l + n}, cnt[2] = {l, r};
            for (int s = 0; s < 2; s++) {
                if (!cnt[s]) continue;
                lunar_tensor *sum = NULL, *b = narrow_alias(g, d, from[s], cnt[s]);
                int64_t ks[LUNAR_MAX_DIMS];
                memcpy(ks, g->shape, sizeof ks);
                ks[d] = 1;
                lunar_status st = b ? lunar_tensor_new(&sum, g->ndim, ks, g->dtype, g) : oom("pad");
                if (st == LUNAR_OK)
                    st = LUNAR_KERNEL(lunar_tensor_backend(g), reduce, LUNAR_OP_SUM, sum, b,
                                      1u << d, 0);
                lunar_tensor_release(b);
                if (st == LUNAR_OK) st = add_release(narrow_alias(g, d, at[s], 1), sum);
                else lunar_tensor_release(sum);
                LUNAR_CHECK(st);
            }
        }
        *cur = narrow_alias(g, d, l, n);
        lunar_tensor_release(g);
        if (!*cur) return oom("pad");
    }
    return LUNAR_OK;
}

static lunar_status pad_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    const pad_ctx *p = n->ctx;
    const lunar_edge *in = &n->next[0];
    if (p->mode == LUNAR_PAD_CONSTANT) {
        int64_t xs[LUNAR_MAX_DIMS], os[LUNAR_MAX_DIMS], len[LUNAR_MAX_DIMS];
        bool crop = false;
        pad_window(in->ndim, in->shape, p, xs, os, len);
        for (int d = 0; d < in->ndim; d++) crop |= p->lo[d] < 0 || p->hi[d] < 0;
        if (!crop) { /* the gradient is g's centre window */
            gi[0] = window_alias(g, os, len);
            return gi[0] ? LUNAR_OK : oom("pad");
        }
        LUNAR_CHECK(lunar_full_like(&gi[0], in->ndim, in->shape, g->dtype, 0, g));
        return copy_release("pad", window_alias(gi[0], xs, len), window_alias(g, os, len));
    }
    lunar_tensor *cur;
    LUNAR_CHECK(fresh_copy(&cur, g)); /* folded in place */
    lunar_status st = pad_fold(&cur, p, in->shape);
    if (st == LUNAR_OK) gi[0] = cur;
    else lunar_tensor_release(cur);
    return st;
}

static const char *const pad_modes[] = {"constant", "reflect", "replicate"};

lunar_status lunar_pad(lunar_tensor **out, lunar_tensor *x, int n, const int64_t *pads,
                       lunar_pad_mode mode, double value) {
    *out = NULL;
    char s[128];
    if ((unsigned)mode > LUNAR_PAD_REPLICATE) return lunar_fail(LUNAR_ERR_ARG, "pad: bad mode");
    if (n < 0 || n % 2 || n / 2 > x->ndim)
        return lunar_fail(LUNAR_ERR_SHAPE, "pad: %d pad values for %s (two per dim, last dim "
                                           "first, at most %d)",
                          n, lunar_shape_str(s, sizeof s, x->ndim, x->shape), 2 * x->ndim);
    pad_ctx *p = calloc(1, sizeof *p);
    if (!p) return oom("pad");
    p->mode = mode;
    int64_t shape[LUNAR_MAX_DIMS];
    lunar_status st = LUNAR_OK;
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[d];
    for (int j = 0; j < n / 2; j++) {
        int d = x->ndim - 1 - j;
        int64_t l = pads[2 * j], r = pads[2 * j + 1], size = x->shape[d];
        p->lo[d] = l;
        p->hi[d] = r;
        shape[d] = size + l + r;
        if (mode != LUNAR_PAD_CONSTANT && (l < 0 || r < 0))
            LUNAR_GOTO(lunar_fail(LUNAR_ERR_ARG, "pad: negative padding (%lld, %lld) is only for "
                                                 "constant mode (got %s)",
                                  (long long)l, (long long)r, pad_modes[mode]));
        if (shape[d] < 0)
            LUNAR_GOTO(lunar_fail(LUNAR_ERR_SHAPE, "pad: padding (%lld, %lld) makes dim %d of %s "
                                                   "negative",
                                  (long long)l, (long long)r, d + 1,
                                  lunar_shape_str(s, sizeof s, x->ndim, x->shape)));
        if (mode == LUNAR_PAD_REFLECT && (l >= size || r >= size))
            LUNAR_GOTO(lunar_fail(LUNAR_ERR_SHAPE, "pad: reflect padding (%lld, %lld) must be "
                                                   "smaller than dim %d of %s",
                                  (long long)l, (long long)r, d + 1,
                                  lunar_shape_str(s, sizeof s, x->ndim, x->shape)));
        if (mode == LUNAR_PAD_REPLICATE && size == 0 && (l || r))
            LUNAR_GOTO(lunar_fail(LUNAR_ERR_SHAPE, "pad: cannot replicate dim %d of %s: it is "
                                                   "empty",
                                  d + 1, lunar_shape_str(s, sizeof s, x->ndim, x->shape)));
    }
    LUNAR_GOTO(lunar_tensor_new(out, x->ndim, shape, x->dtype, x));
    if (mode == LUNAR_PAD_CONSTANT)
        LUNAR_GOTO(LUNAR_KERNEL(lunar_tensor_backend(x), fill, *out, value));
    int64_t xs[LUNAR_MAX_DIMS], os[LUNAR_MAX_DIMS], len[LUNAR_MAX_DIMS];
    pad_window(x->ndim, x->shape, p, xs, os, len);
    LUNAR_GOTO(copy_release("pad", window_alias(*out, os, len), window_alias(x, xs, len)));
    if (mode != LUNAR_PAD_CONSTANT) LUNAR_GOTO(pad_borders(*out, x->shape, p));
    lunar_node *node = lunar_node_begin("pad", pad_backward, 1, &x);
    if (node) {
        node->ctx = p;
        node->ctx_free = free;
        p = NULL;
        lunar_node_finish(node, *out);
    }
done:
    free(p);
    fail_cleanup(st, out);
    return st;
}
