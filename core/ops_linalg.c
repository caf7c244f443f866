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

/* t ([batch..., R, C], already broadcast) as the 3-d [B, R, C] the backend takes. */
static lunar_status as_batch3(lunar_tensor **out, lunar_tensor *t, int64_t B) {
    int nd = t->ndim, nb = nd - 2;
    int64_t r = t->shape[nd - 2], c = t->shape[nd - 1];
    int64_t rs = t->strides[nd - 2], cs = t->strides[nd - 1], bs;
    bool unit = cs == 1 || rs == 1 || r == 1 || c == 1;
    lunar_tensor *src = t;
    if (!unit || !one_batch_stride(t, nb, &bs)) {
        LUNAR_CHECK(lunar_raw_contiguous(&src, t));
        rs = src->strides[nd - 2];
        cs = src->strides[nd - 1];
        bs = r * c;
    } else {
        lunar_tensor_retain(src);
    }
    int64_t shape[3] = {B, r, c}, strides[3] = {bs, rs, cs};
    *out = lunar_tensor_alias(src, 3, shape, strides, src->offset);
    lunar_tensor_release(src);
    return *out ? LUNAR_OK : lunar_fail(LUNAR_ERR_MEMORY, "matmul: out of memory");
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
    lunar_tensor *a2, *b2, *va = NULL, *vb = NULL, *a3 = NULL, *b3 = NULL, *c3 = NULL, *c = NULL;
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
    LUNAR_GOTO(as_batch3(&a3, va, B));
    LUNAR_GOTO(as_batch3(&b3, vb, B));
    LUNAR_GOTO(lunar_tensor_new(&c, nb + 2, fc, a->dtype, a));
    int64_t c3s[3] = {B, M, N}, c3t[3] = {M * N, N, 1};
    c3 = lunar_tensor_alias(c, 3, c3s, c3t, 0);
    if (!c3) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "matmul: out of memory"));
    LUNAR_GOTO(lunar_tensor_backend(a)->gemm(c3, a3, b3, 1, 0));
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
    lunar_tensor_release(a3);
    lunar_tensor_release(b3);
    lunar_tensor_release(c3);
    lunar_tensor_release(c);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*out);
        *out = NULL;
    }
    return st;
}
