/*
 * ops_linalg.c - matmul with PyTorch's rules (1-D operands, batch broadcasting) on the
 * backend's batched GEMM, and its backward rule.
 */
#include "lunar-impl.h"

#include <string.h>

/* Whether the batch dims [0, nb) of t (broadcast shape bshape) walk with one stride, so
 * that the backend can see them as one batch dim; sets *stride. */
static bool one_batch_stride(const lunar_tensor *t, int nb, int64_t *stride) {
    int64_t s = 0, expect = -1;
    bool any = false;
    for (int d = nb - 1; d >= 0; d--) {
        if (t->shape[d] == 1) continue;
        if (!any) {
            s = t->strides[d];
            expect = t->strides[d] * t->shape[d];
            any = true;
        } else if (t->strides[d] == expect || (s == 0 && t->strides[d] == 0)) {
            expect = t->strides[d] * t->shape[d];
        } else {
            return false;
        }
    }
    *stride = s;
    return true;
}

/* A view of x's storage held in the caller's struct, for handing to a kernel: it takes no
 * reference (x keeps the storage alive while the view is used) and is never released. Pool
 * aliases cost an allocation and a release each, and a one-row linear made eight of them. */
static lunar_tensor *sview(lunar_tensor *v, const lunar_tensor *x, int nd, const int64_t *shape,
                           const int64_t *strides, int64_t offset) {
    v->refcount = 1;
    v->ndim = nd;
    v->dtype = x->dtype;
    v->requires_grad = false;
    v->offset = offset;
    memcpy(v->shape, shape, sizeof(int64_t) * (size_t)nd);
    memcpy(v->strides, strides, sizeof(int64_t) * (size_t)nd);
    v->storage = x->storage;
    v->grad = NULL;
    v->grad_fn = NULL;
    v->hooks = NULL;
    return v;
}

/* t ([batch..., R, C], already broadcast) as the 3-d [B, R, C] the backend takes, in *v (a
 * stack view); *copy is the contiguous copy it views when t's layout does not fit (release
 * it after use), else NULL. */
static lunar_status as_batch3(lunar_tensor *v, lunar_tensor **copy, lunar_tensor *t, int64_t B) {
    int nd = t->ndim, nb = nd - 2;
    int64_t r = t->shape[nd - 2], c = t->shape[nd - 1];
    int64_t rs = t->strides[nd - 2], cs = t->strides[nd - 1], bs;
    /* a layout the GEMM takes: unit stride in one dim, a leading dim that covers the other */
    bool unit = ((cs == 1 || c == 1) && (rs >= (c > 1 ? c : 1) || r == 1)) ||
                ((rs == 1 || r == 1) && (cs >= (r > 1 ? r : 1) || c == 1));
    lunar_tensor *src = t;
    *copy = NULL;
    if (!unit || !one_batch_stride(t, nb, &bs)) {
        LUNAR_CHECK(lunar_raw_contiguous(copy, t));
        src = *copy;
        rs = src->strides[nd - 2];
        cs = src->strides[nd - 1];
        bs = r * c;
    }
    int64_t shape[3] = {B, r, c}, strides[3] = {bs, rs, cs};
    sview(v, src, 3, shape, strides, src->offset);
    return LUNAR_OK;
}

static lunar_status matmul_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    lunar_tensor *a, *b;
    LUNAR_CHECK(lunar_node_saved(n, 0, &a));
    LUNAR_CHECK(lunar_node_saved(n, 1, &b));
    bool a1 = n->i[0], b1 = n->i[1];
    lunar_tensor *a2 = NULL, *b2 = NULL, *g2 = NULL, *t = NULL, *r = NULL;
    lunar_status st = LUNAR_OK;
    /* work with the 2-d forms: a [.., M, K], b [.., K, N], g [.., M, N] */
    if (a1) st = lunar_unsqueeze(&a2, a, 0);
    else lunar_tensor_retain(a2 = a);
    if (st == LUNAR_OK && b1) st = lunar_unsqueeze(&b2, b, -1);
    else if (st == LUNAR_OK) lunar_tensor_retain(b2 = b);
    lunar_tensor_retain(g2 = g);
    if (st == LUNAR_OK && a1) {
        lunar_tensor_release(g2);
        st = lunar_unsqueeze(&g2, g, b1 ? 0 : -2);
    }
    if (st == LUNAR_OK && b1) {
        lunar_tensor *u = NULL;
        st = lunar_unsqueeze(&u, g2, -1);
        lunar_tensor_release(g2);
        g2 = u;
    }
    if (st == LUNAR_OK && lunar_node_needs(n, 0)) { /* ga = g b^T */
        st = lunar_transpose(&t, b2, -1, -2);
        if (st == LUNAR_OK) st = lunar_matmul(&r, g2, t);
        lunar_tensor_release(t);
        t = NULL;
        if (st == LUNAR_OK && a1) { /* drop the M = 1 dim */
            st = lunar_squeeze(&gi[0], r, -2);
            lunar_tensor_release(r);
        } else if (st == LUNAR_OK) {
            gi[0] = r;
        }
        r = NULL;
    }
    if (st == LUNAR_OK && lunar_node_needs(n, 1)) { /* gb = a^T g */
        st = lunar_transpose(&t, a2, -1, -2);
        if (st == LUNAR_OK) st = lunar_matmul(&r, t, g2);
        lunar_tensor_release(t);
        if (st == LUNAR_OK && b1) {
            st = lunar_squeeze(&gi[1], r, -1);
            lunar_tensor_release(r);
        } else if (st == LUNAR_OK) {
            gi[1] = r;
        }
    }
    lunar_tensor_release(a2);
    lunar_tensor_release(b2);
    lunar_tensor_release(g2);
    return st;
}

lunar_status lunar_matmul(lunar_tensor **out, lunar_tensor *a, lunar_tensor *b) {
    *out = NULL;
    char sa[128], sb[128];
    LUNAR_CHECK(lunar_same_device("matmul", a, b));
    if (a->ndim == 0 || b->ndim == 0)
        return lunar_fail(LUNAR_ERR_SHAPE, "matmul: both operands need at least 1 dim (got %s "
                                           "and %s)",
                          lunar_shape_str(sa, sizeof sa, a->ndim, a->shape),
                          lunar_shape_str(sb, sizeof sb, b->ndim, b->shape));
    if (!lunar_dtype_is_float(a->dtype) || !lunar_dtype_is_float(b->dtype) ||
        a->dtype != b->dtype)
        return lunar_fail(LUNAR_ERR_DTYPE, "matmul: needs two float tensors of one dtype (got "
                                           "%s and %s)",
                          lunar_dtype_name(a->dtype), lunar_dtype_name(b->dtype));
    bool a1 = a->ndim == 1, b1 = b->ndim == 1;
    /* shapes as [batch..., M, K] and [batch..., K, N] */
    int64_t as[LUNAR_MAX_DIMS + 1], bs[LUNAR_MAX_DIMS + 1];
    int an = a->ndim, bn = b->ndim;
    memcpy(as, a->shape, sizeof(int64_t) * (size_t)an);
    memcpy(bs, b->shape, sizeof(int64_t) * (size_t)bn);
    if (a1) {
        as[1] = as[0];
        as[0] = 1;
        an = 2;
    }
    if (b1) {
        bs[1] = 1;
        bn = 2;
    }
    int64_t M = as[an - 2], K = as[an - 1], K2 = bs[bn - 2], N = bs[bn - 1];
    if (K != K2)
        return lunar_fail(LUNAR_ERR_SHAPE, "matmul: %s x %s: inner sizes differ (%lld vs %lld)",
                          lunar_shape_str(sa, sizeof sa, a->ndim, a->shape),
                          lunar_shape_str(sb, sizeof sb, b->ndim, b->shape), (long long)K,
                          (long long)K2);
    int nb;
    int64_t batch[LUNAR_MAX_DIMS + 2];
    LUNAR_CHECK(lunar_broadcast_shape("matmul", an - 2, as, bn - 2, bs, &nb, batch));
    if (nb + 2 > LUNAR_MAX_DIMS) return lunar_fail(LUNAR_ERR_SHAPE, "matmul: too many dims");
    int64_t B = lunar_shape_numel(nb, batch);
    int64_t fa[LUNAR_MAX_DIMS], fb[LUNAR_MAX_DIMS], fc[LUNAR_MAX_DIMS];
    memcpy(fa, batch, sizeof(int64_t) * (size_t)nb);
    memcpy(fb, batch, sizeof(int64_t) * (size_t)nb);
    memcpy(fc, batch, sizeof(int64_t) * (size_t)nb);
    fa[nb] = M, fa[nb + 1] = K;
    fb[nb] = K, fb[nb + 1] = N;
    fc[nb] = M, fc[nb + 1] = N;
    /* 2-d relabels of the 1-d operands, then broadcast views */
    int64_t st2[2];
    lunar_tensor *a2, *b2, *va = NULL, *vb = NULL, *ac = NULL, *bc = NULL, *c = NULL;
    lunar_tensor a3, b3, c3;
    st2[0] = 0;
    st2[1] = a->strides[a->ndim - 1];
    a2 = a1 ? lunar_tensor_alias(a, 2, as, st2, a->offset)
            : lunar_tensor_alias(a, a->ndim, a->shape, a->strides, a->offset);
    st2[0] = b->strides[0];
    st2[1] = 0;
    b2 = b1 ? lunar_tensor_alias(b, 2, bs, st2, b->offset)
            : lunar_tensor_alias(b, b->ndim, b->shape, b->strides, b->offset);
    lunar_status st = LUNAR_OK;
    if (!a2 || !b2) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "matmul: out of memory"));
    va = lunar_broadcast_view(a2, nb + 2, fa);
    vb = lunar_broadcast_view(b2, nb + 2, fb);
    if (!va || !vb) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "matmul: out of memory"));
    LUNAR_GOTO(as_batch3(&a3, &ac, va, B));
    LUNAR_GOTO(as_batch3(&b3, &bc, vb, B));
    LUNAR_GOTO(lunar_tensor_new(&c, nb + 2, fc, a->dtype, a));
    int64_t c3s[3] = {B, M, N}, c3t[3] = {M * N, N, 1};
    sview(&c3, c, 3, c3s, c3t, 0);
    LUNAR_GOTO(LUNAR_KERNEL(lunar_tensor_backend(a), gemm, &c3, &a3, &b3, 1, 0));
    /* drop the dims the 1-d operands added */
    int64_t oshape[LUNAR_MAX_DIMS], ostr[LUNAR_MAX_DIMS];
    int on = 0;
    for (int d = 0; d < nb; d++) oshape[on++] = batch[d];
    if (!a1) oshape[on++] = M;
    if (!b1) oshape[on++] = N;
    lunar_contiguous_strides(on, oshape, ostr);
    *out = lunar_tensor_alias(c, on, oshape, ostr, 0);
    if (!*out) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "matmul: out of memory"));
    lunar_tensor *in[2] = {a, b};
    lunar_node *n = lunar_node_begin("matmul", matmul_backward, 2, in);
    if (n) {
        n->i[0] = a1;
        n->i[1] = b1;
        lunar_node_save(n, 0, a);
        lunar_node_save(n, 1, b);
        lunar_node_finish(n, *out);
    }
done:
    lunar_tensor_release(a2);
    lunar_tensor_release(b2);
    lunar_tensor_release(va);
    lunar_tensor_release(vb);
    lunar_tensor_release(ac);
    lunar_tensor_release(bc);
    lunar_tensor_release(c);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*out);
        *out = NULL;
    }
    return st;
}

/* ---- the matmul family: mm, bmm, mv, dot, outer (checks, then matmul) ---- */

/* Device, dtype and rank checks shared by the family; na / nb are the required ranks. */
static lunar_status check_pair(const char *op, const lunar_tensor *a, const lunar_tensor *b,
                               int na, int nb) {
    char sa[128], sb[128];
    LUNAR_CHECK(lunar_same_device(op, a, b));
    if (a->ndim != na || b->ndim != nb)
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: expects %d-d and %d-d tensors (got %s and %s)", op,
                          na, nb, lunar_shape_str(sa, sizeof sa, a->ndim, a->shape),
                          lunar_shape_str(sb, sizeof sb, b->ndim, b->shape));
    if (!lunar_dtype_is_float(a->dtype) || a->dtype != b->dtype)
        return lunar_fail(LUNAR_ERR_DTYPE, "%s: needs two float tensors of one dtype (got %s and "
                                           "%s)",
                          op, lunar_dtype_name(a->dtype), lunar_dtype_name(b->dtype));
    return LUNAR_OK;
}

static lunar_status inner_differ(const char *op, const lunar_tensor *a, const lunar_tensor *b,
                                 const char *what, int64_t ka, int64_t kb) {
    char sa[128], sb[128];
    return lunar_fail(LUNAR_ERR_SHAPE, "%s: %s x %s: %s differ (%lld vs %lld)", op,
                      lunar_shape_str(sa, sizeof sa, a->ndim, a->shape),
                      lunar_shape_str(sb, sizeof sb, b->ndim, b->shape), what, (long long)ka,
                      (long long)kb);
}

lunar_status lunar_mm(lunar_tensor **out, lunar_tensor *a, lunar_tensor *b) {
    *out = NULL;
    LUNAR_CHECK(check_pair("mm", a, b, 2, 2));
    if (a->shape[1] != b->shape[0])
        return inner_differ("mm", a, b, "inner sizes", a->shape[1], b->shape[0]);
    return lunar_matmul(out, a, b);
}

lunar_status lunar_bmm(lunar_tensor **out, lunar_tensor *a, lunar_tensor *b) {
    *out = NULL;
    LUNAR_CHECK(check_pair("bmm", a, b, 3, 3));
    if (a->shape[0] != b->shape[0])
        return inner_differ("bmm", a, b, "batch sizes", a->shape[0], b->shape[0]);
    if (a->shape[2] != b->shape[1])
        return inner_differ("bmm", a, b, "inner sizes", a->shape[2], b->shape[1]);
    return lunar_matmul(out, a, b);
}

lunar_status lunar_mv(lunar_tensor **out, lunar_tensor *a, lunar_tensor *v) {
    *out = NULL;
    LUNAR_CHECK(check_pair("mv", a, v, 2, 1));
    if (a->shape[1] != v->shape[0])
        return inner_differ("mv", a, v, "inner sizes", a->shape[1], v->shape[0]);
    return lunar_matmul(out, a, v);
}

lunar_status lunar_dot(lunar_tensor **out, lunar_tensor *a, lunar_tensor *b) {
    *out = NULL;
    LUNAR_CHECK(check_pair("dot", a, b, 1, 1));
    if (a->shape[0] != b->shape[0])
        return inner_differ("dot", a, b, "sizes", a->shape[0], b->shape[0]);
    return lunar_matmul(out, a, b);
}

/* a [M] x b [N] -> [M, N]: a K = 1 product of the column a and the row b (views). */
lunar_status lunar_outer(lunar_tensor **out, lunar_tensor *a, lunar_tensor *b) {
    *out = NULL;
    LUNAR_CHECK(check_pair("outer", a, b, 1, 1));
    lunar_tensor *col = NULL, *row = NULL;
    lunar_status st = lunar_unsqueeze(&col, a, 1);
    if (st == LUNAR_OK) st = lunar_unsqueeze(&row, b, 0);
    if (st == LUNAR_OK) st = lunar_matmul(out, col, row);
    lunar_tensor_release(col);
    lunar_tensor_release(row);
    return st;
}

/* ---- addmm and linear: one GEMM with beta onto the broadcast input ---- */

/* c [M, N] (contiguous) = alpha * a [M, K] @ b [K, N] + beta * c; a and b take any strides
 * (a transposed layout goes to the GEMM as such; other layouts are copied). */
static lunar_status gemm2(lunar_tensor *c, lunar_tensor *a, lunar_tensor *b, double alpha,
                          double beta) {
    lunar_tensor a3, b3, c3, *ac = NULL, *bc = NULL;
    lunar_status st;
    LUNAR_GOTO(as_batch3(&a3, &ac, a, 1));
    LUNAR_GOTO(as_batch3(&b3, &bc, b, 1));
    int64_t s[3] = {1, c->shape[0], c->shape[1]}, t[3] = {c->shape[0] * c->shape[1],
                                                          c->shape[1], 1};
    sview(&c3, c, 3, s, t, c->offset);
    st = LUNAR_KERNEL(lunar_tensor_backend(c), gemm, &c3, &a3, &b3, alpha, beta);
done:
    lunar_tensor_release(ac);
    lunar_tensor_release(bc);
    return st;
}

/* A fresh [M, N] = alpha * a @ b. */
static lunar_status mm_scaled(lunar_tensor **out, lunar_tensor *a, lunar_tensor *b,
                              double alpha) {
    int64_t shape[2] = {a->shape[0], b->shape[1]};
    LUNAR_CHECK(lunar_tensor_new(out, 2, shape, a->dtype, a));
    lunar_status st = gemm2(*out, a, b, alpha, 0);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*out);
        *out = NULL;
    }
    return st;
}

/* The transpose of a 2-d tensor t as a stack view (no autograd). */
static lunar_tensor *sview_t(lunar_tensor *v, const lunar_tensor *t) {
    int64_t s[2] = {t->shape[1], t->shape[0]}, st[2] = {t->strides[1], t->strides[0]};
    return sview(v, t, 2, s, st, t->offset);
}

/* gi[0] = beta g; gi[1] = alpha g b^T; gi[2] = alpha a^T g (the engine sums gi[0] down to
 * input's shape). */
static lunar_status addmm_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    double beta = n->f[0], alpha = n->f[1];
    lunar_status st = LUNAR_OK;
    if (lunar_node_needs(n, 0)) {
        if (beta == 1) lunar_tensor_retain(gi[0] = g);
        else st = lunar_binary_scalar(&gi[0], LUNAR_OP_MUL, g, beta, false);
    }
    lunar_tensor *a = NULL, *b = NULL, t;
    if (st == LUNAR_OK && lunar_node_needs(n, 1) && (st = lunar_node_saved(n, 1, &b)) == LUNAR_OK)
        st = mm_scaled(&gi[1], g, sview_t(&t, b), alpha);
    if (st == LUNAR_OK && lunar_node_needs(n, 2) && (st = lunar_node_saved(n, 0, &a)) == LUNAR_OK)
        st = mm_scaled(&gi[2], sview_t(&t, a), g, alpha);
    return st;
}

lunar_status lunar_addmm(lunar_tensor **out, lunar_tensor *input, lunar_tensor *a,
                         lunar_tensor *b, double beta, double alpha) {
    *out = NULL;
    char si[128], sc[128];
    LUNAR_CHECK(check_pair("addmm", a, b, 2, 2));
    LUNAR_CHECK(lunar_same_device("addmm", input, a));
    if (a->shape[1] != b->shape[0])
        return inner_differ("addmm", a, b, "inner sizes", a->shape[1], b->shape[0]);
    if (input->dtype != a->dtype)
        return lunar_fail(LUNAR_ERR_DTYPE, "addmm: input is %s but the product is %s",
                          lunar_dtype_name(input->dtype), lunar_dtype_name(a->dtype));
    int64_t shape[2] = {a->shape[0], b->shape[1]}, bshape[LUNAR_MAX_DIMS];
    int nb;
    lunar_status st = lunar_broadcast_shape("addmm", input->ndim, input->shape, 2, shape, &nb,
                                            bshape);
    if (st != LUNAR_OK || !lunar_shape_equal(nb, bshape, 2, shape))
        return lunar_fail(LUNAR_ERR_SHAPE, "addmm: input %s does not broadcast to the product's "
                                           "shape %s",
                          lunar_shape_str(si, sizeof si, input->ndim, input->shape),
                          lunar_shape_str(sc, sizeof sc, 2, shape));
    lunar_tensor *v = NULL;
    LUNAR_CHECK(lunar_tensor_new(out, 2, shape, a->dtype, a));
    if (beta != 0) { /* beta = 0 ignores input, NaNs included, as BLAS does */
        v = lunar_broadcast_view(input, 2, shape);
        if (!v) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "addmm: out of memory"));
        LUNAR_GOTO(lunar_raw_copy(*out, v));
    }
    LUNAR_GOTO(gemm2(*out, a, b, alpha, beta));
    lunar_tensor *in[3] = {input, a, b};
    lunar_node *n = lunar_node_begin("addmm", addmm_backward, 3, in);
    if (n) {
        n->f[0] = beta;
        n->f[1] = alpha;
        if (lunar_node_needs(n, 2)) lunar_node_save(n, 0, a);
        if (lunar_node_needs(n, 1)) lunar_node_save(n, 1, b);
        lunar_node_finish(n, *out);
    }
done:
    lunar_tensor_release(v);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*out);
        *out = NULL;
    }
    return st;
}

/* x [..., K] as a 2-d [M, K] stack view in *v when its leading dims walk with one stride,
 * else a view of a contiguous copy, returned in *copy (release it after use; else NULL). */
static lunar_status as_rows(lunar_tensor *v, lunar_tensor **copy, const lunar_tensor *x) {
    int nd = x->ndim;
    int64_t K = x->shape[nd - 1], M = lunar_shape_numel(nd - 1, x->shape);
    int64_t rs = K, expect = -1;
    bool ok = true;
    for (int d = nd - 2; d >= 0 && ok; d--) {
        if (x->shape[d] == 1) continue;
        if (expect < 0) rs = x->strides[d];
        else ok = x->strides[d] == expect;
        expect = x->strides[d] * x->shape[d];
    }
    const lunar_tensor *src = x;
    *copy = NULL;
    if (!ok) {
        LUNAR_CHECK(lunar_raw_contiguous(copy, x));
        src = *copy;
        rs = K;
    }
    int64_t shape[2] = {M, K}, strides[2] = {rs, src->strides[nd - 1]};
    sview(v, src, 2, shape, strides, src->offset);
    return LUNAR_OK;
}

/* y = x w^T + b: gx = g w, gw = g2^T x2 over the flattened rows, gb = g (summed down to the
 * bias by the engine). */
static lunar_status linear_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    lunar_tensor *x, *w, *gc = NULL, *xc = NULL, g2, x2, t;
    lunar_status st = LUNAR_OK;
    if (lunar_node_needs(n, 0)) {
        LUNAR_CHECK(lunar_node_saved(n, 1, &w));
        LUNAR_CHECK(lunar_matmul(&gi[0], g, w));
    }
    if (lunar_node_needs(n, 1)) {
        LUNAR_CHECK(lunar_node_saved(n, 0, &x));
        LUNAR_GOTO(as_rows(&g2, &gc, g));
        LUNAR_GOTO(as_rows(&x2, &xc, x));
        LUNAR_GOTO(mm_scaled(&gi[1], sview_t(&t, &g2), &x2, 1));
    }
    if (lunar_node_needs(n, 2)) lunar_tensor_retain(gi[2] = g);
done:
    lunar_tensor_release(gc);
    lunar_tensor_release(xc);
    return st;
}

lunar_status lunar_linear(lunar_tensor **out, lunar_tensor *x, lunar_tensor *weight,
                          lunar_tensor *bias) {
    *out = NULL;
    char sx[128], sw[128];
    LUNAR_CHECK(lunar_same_device("linear", x, weight));
    if (x->ndim < 1 || weight->ndim != 2)
        return lunar_fail(LUNAR_ERR_SHAPE, "linear: expects input [..., in] and weight [out, in] "
                                           "(got %s and %s)",
                          lunar_shape_str(sx, sizeof sx, x->ndim, x->shape),
                          lunar_shape_str(sw, sizeof sw, weight->ndim, weight->shape));
    if (!lunar_dtype_is_float(x->dtype) || x->dtype != weight->dtype ||
        (bias && bias->dtype != x->dtype))
        return lunar_fail(LUNAR_ERR_DTYPE, "linear: needs float tensors of one dtype (input %s, "
                                           "weight %s%s%s)",
                          lunar_dtype_name(x->dtype), lunar_dtype_name(weight->dtype),
                          bias ? ", bias " : "", bias ? lunar_dtype_name(bias->dtype) : "");
    int64_t K = x->shape[x->ndim - 1], N = weight->shape[0];
    if (K != weight->shape[1])
        return lunar_fail(LUNAR_ERR_SHAPE, "linear: input %s x weight %s^T: in_features differ "
                                           "(%lld vs %lld)",
                          lunar_shape_str(sx, sizeof sx, x->ndim, x->shape),
                          lunar_shape_str(sw, sizeof sw, 2, weight->shape), (long long)K,
                          (long long)weight->shape[1]);
    if (bias) {
        LUNAR_CHECK(lunar_same_device("linear", x, bias));
        int64_t bn = lunar_tensor_numel(bias);
        if (bias->ndim > 1 || (bn != N && bn != 1))
            return lunar_fail(LUNAR_ERR_SHAPE, "linear: bias %s does not fit out_features %lld",
                              lunar_shape_str(sx, sizeof sx, bias->ndim, bias->shape),
                              (long long)N);
    }
    int64_t oshape[LUNAR_MAX_DIMS];
    memcpy(oshape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    oshape[x->ndim - 1] = N;
    int64_t M = lunar_shape_numel(x->ndim - 1, x->shape), s2[2] = {M, N}, t2[2] = {N, 1};
    lunar_tensor x2, wt, c2, bvs, *bv = NULL, *xc = NULL;
    lunar_status st;
    LUNAR_GOTO(lunar_tensor_new(out, x->ndim, oshape, x->dtype, x));
    LUNAR_GOTO(as_rows(&x2, &xc, x));
    sview_t(&wt, weight);
    sview(&c2, *out, 2, s2, t2, 0);
    if (bias) { /* [N] or one element, broadcast over the rows */
        int64_t bs[2] = {0, bias->ndim == 1 && bias->shape[0] > 1 ? bias->strides[0] : 0};
        bv = sview(&bvs, bias, 2, s2, bs, bias->offset);
    }
    /* Rows get the bias first and the product on top (one pass over the output, BLAS's
     * beta = 1). A single row gets it after: the CPU splits a large one-row product between
     * two threads, and a bias written first by this thread moved each half's lines to the
     * other core and back (0.8 us of a 6 us 784x256 forward). The sums are the same. */
    bool bias_after = bv && M == 1;
    if (bv && !bias_after) LUNAR_GOTO(lunar_raw_copy(&c2, bv));
    LUNAR_GOTO(gemm2(&c2, &x2, &wt, 1, bv && !bias_after ? 1 : 0));
    if (bias_after)
        LUNAR_GOTO(LUNAR_KERNEL(lunar_tensor_backend(&c2), binary, LUNAR_OP_ADD, &c2, &c2, bv));
    lunar_tensor *in[3] = {x, weight, bias};
    lunar_node *n = lunar_node_begin("linear", linear_backward, 3, in);
    if (n) {
        if (lunar_node_needs(n, 1)) lunar_node_save(n, 0, x);
        if (lunar_node_needs(n, 0)) lunar_node_save(n, 1, weight);
        lunar_node_finish(n, *out);
    }
done:
    lunar_tensor_release(xc);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*out);
        *out = NULL;
    }
    return st;
}
