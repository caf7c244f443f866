/*
 * ops_reduce.c - reductions over a set of dims (sum, mean, prod, max, min, all, any,
 * logsumexp, norm, var), max/min along one dim with indices, and the scans (cumsum,
 * cumprod): output dtypes, keepdim, and the backward rules.
 */
#include "lunar-impl.h"

#include <math.h>
#include <string.h>

static const char *reduce_names[LUNAR_REDUCE_COUNT] = {
    "sum", "mean", "prod", "max", "min", "all", "any", "logsumexp", "norm", "var"};
_Static_assert(LUNAR_REDUCE_COUNT == 10, "name every reduction");

static lunar_dtype reduce_dtype(lunar_reduce_op op, lunar_dtype dt) {
    switch (op) {
    case LUNAR_OP_SUM:
    case LUNAR_OP_PROD: return lunar_dtype_is_float(dt) ? dt : LUNAR_I64;
    case LUNAR_OP_MAX:
    case LUNAR_OP_MIN: return dt;
    case LUNAR_OP_ALL:
    case LUNAR_OP_ANY: return LUNAR_BOOL;
    default: return lunar_dtype_is_float(dt) ? dt : LUNAR_F32;
    }
}

/* g (the output's gradient) with the reduced dims put back as size 1, then expanded to x. */
static lunar_status expand_back(lunar_tensor **out, lunar_tensor *g, const lunar_edge *in,
                                uint32_t mask) {
    int64_t kshape[LUNAR_MAX_DIMS];
    for (int d = 0; d < in->ndim; d++) kshape[d] = (mask >> d) & 1 ? 1 : in->shape[d];
    lunar_tensor *k;
    LUNAR_CHECK(lunar_reshape(&k, g, in->ndim, kshape));
    lunar_status st = lunar_expand(out, k, in->ndim, in->shape);
    lunar_tensor_release(k);
    return st;
}

static lunar_status reduce_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    lunar_reduce_op op = (lunar_reduce_op)n->i[0];
    uint32_t mask = (uint32_t)n->i[1];
    int64_t count = n->i[2];
    double param = n->f[0];
    const lunar_edge *in = &n->next[0];
    gx c = {0};
    lunar_tensor *x = NULL, *y = NULL, *ge = NULL, *ye = NULL, *r = NULL;
    if (n->saved[0]) c.st = lunar_node_saved(n, 0, &x);
    if (c.st == LUNAR_OK && n->saved[1]) c.st = lunar_node_saved(n, 1, &y);
    if (c.st == LUNAR_OK) c.st = expand_back(&ge, g, in, mask);
    gx_add(&c, ge);
    if (c.st == LUNAR_OK && y) {
        c.st = expand_back(&ye, y, in, mask);
        gx_add(&c, ye);
    }
    if (c.st != LUNAR_OK) return gx_end(&c);
    switch (op) {
    case LUNAR_OP_SUM: r = ge; break;
    case LUNAR_OP_MEAN: r = gx_scal(&c, LUNAR_OP_DIV, ge, (double)(count ? count : 1)); break;
    case LUNAR_OP_PROD: { /* prod of the others: y / x where the group has no zero; with
                           * one zero only that element gets the prod of the rest; else 0 */
        lunar_tensor *isz = gx_scal(&c, LUNAR_OP_EQ, x, 0), *one = NULL, *x1 = NULL;
        lunar_tensor *nz = NULL, *p1 = NULL, *q = NULL, *pe = NULL;
        if (c.st == LUNAR_OK) c.st = lunar_full_like(&one, 0, NULL, x->dtype, 1, x);
        gx_add(&c, one);
        if (c.st == LUNAR_OK) c.st = lunar_where(&x1, isz, one, x);
        gx_add(&c, x1);
        if (c.st == LUNAR_OK) c.st = lunar_reduce(&nz, LUNAR_OP_SUM, isz, mask, true, 0);
        gx_add(&c, nz);
        if (c.st == LUNAR_OK) c.st = lunar_reduce(&p1, LUNAR_OP_PROD, x1, mask, true, 0);
        gx_add(&c, p1);
        lunar_tensor *none = gx_scal(&c, LUNAR_OP_EQ, nz, 0);
        lunar_tensor *only = gx_bin(&c, LUNAR_OP_LOGICAL_AND, isz,
                                    gx_scal(&c, LUNAR_OP_EQ, nz, 1));
        lunar_tensor *zero = gx_scal(&c, LUNAR_OP_MUL, one, 0);
        if (c.st == LUNAR_OK) c.st = lunar_where(&pe, only, p1, zero);
        gx_add(&c, pe);
        lunar_tensor *ratio = gx_bin(&c, LUNAR_OP_DIV, p1, x1);
        if (c.st == LUNAR_OK) c.st = lunar_where(&q, none, ratio, pe);
        gx_add(&c, q);
        r = gx_mul(&c, ge, q);
        break;
    }
    case LUNAR_OP_MAX:
    case LUNAR_OP_MIN: { /* ties share the gradient evenly */
        lunar_tensor *hit = gx_bin(&c, LUNAR_OP_EQ, x, ye), *cnt = NULL;
        if (c.st == LUNAR_OK) {
            c.st = lunar_reduce(&cnt, LUNAR_OP_SUM, hit, mask, true, 0);
            gx_add(&c, cnt);
        }
        r = gx_bin(&c, LUNAR_OP_DIV, gx_mul(&c, ge, hit), cnt);
        break;
    }
    case LUNAR_OP_LOGSUMEXP:
        r = gx_mul(&c, ge, gx_un(&c, LUNAR_OP_EXP, gx_bin(&c, LUNAR_OP_SUB, x, ye)));
        break;
    case LUNAR_OP_NORM:
        if (param == 1) {
            r = gx_mul(&c, ge, gx_un(&c, LUNAR_OP_SIGN, x));
        } else if (isinf(param)) { /* like max of |x|, with x's sign */
            lunar_tensor *ax = gx_un(&c, LUNAR_OP_ABS, x);
            lunar_tensor *hit = gx_bin(&c, LUNAR_OP_EQ, ax, ye), *cnt = NULL;
            if (c.st == LUNAR_OK) {
                c.st = lunar_reduce(&cnt, LUNAR_OP_SUM, hit, mask, true, 0);
                gx_add(&c, cnt);
            }
            r = gx_mul(&c, gx_bin(&c, LUNAR_OP_DIV, gx_mul(&c, ge, hit), cnt),
                       gx_un(&c, LUNAR_OP_SIGN, x));
        } else { /* g sign(x) |x|^(p-1) / y^(p-1), 0 where y == 0 */
            lunar_tensor *num = gx_mul(&c, gx_un(&c, LUNAR_OP_SIGN, x),
                                       gx_scal(&c, LUNAR_OP_POW, gx_un(&c, LUNAR_OP_ABS, x),
                                               param - 1));
            lunar_tensor *den = gx_scal(&c, LUNAR_OP_POW, ye, param - 1);
            lunar_tensor *q = gx_bin(&c, LUNAR_OP_DIV, num, den);
            lunar_tensor *zero = gx_scal(&c, LUNAR_OP_MUL, q, 0), *safe = NULL;
            lunar_tensor *y0 = gx_scal(&c, LUNAR_OP_EQ, ye, 0);
            if (c.st == LUNAR_OK) {
                c.st = lunar_where(&safe, y0, zero, q);
                gx_add(&c, safe);
            }
            r = gx_mul(&c, ge, safe);
        }
        break;
    case LUNAR_OP_VAR: { /* 2 (x - mean) / (N - correction) */
        lunar_tensor *mean = NULL, *me = NULL;
        if (c.st == LUNAR_OK) {
            c.st = lunar_reduce(&mean, LUNAR_OP_MEAN, x, mask, true, 0);
            gx_add(&c, mean);
        }
        if (c.st == LUNAR_OK) {
            c.st = lunar_expand(&me, mean, in->ndim, in->shape);
            gx_add(&c, me);
        }
        double dof = (double)count - param;
        r = gx_mul(&c, ge, gx_scal(&c, LUNAR_OP_MUL, gx_bin(&c, LUNAR_OP_SUB, x, me),
                                   2.0 / (dof > 0 ? dof : NAN)));
        break;
    }
    default:
        break;
    }
    gi[0] = gx_keep(&c, r);
    return gx_end(&c);
}

lunar_status lunar_reduce(lunar_tensor **out, lunar_reduce_op op, lunar_tensor *x,
                          uint32_t dims, bool keepdim, double param) {
    *out = NULL;
    if ((unsigned)op >= LUNAR_REDUCE_COUNT) return lunar_fail(LUNAR_ERR_ARG, "reduce: bad op");
    const char *name = reduce_names[op];
    char sbuf[128];
    uint32_t all = x->ndim ? (uint32_t)((1u << x->ndim) - 1) : 0;
    if (dims & ~all)
        return lunar_fail(LUNAR_ERR_INDEX, "%s: dim out of range for a %d-d tensor", name,
                          x->ndim);
    if (dims == 0) dims = all;
    /* like PyTorch: these have no integer result and do not guess a float dtype */
    if ((op == LUNAR_OP_MEAN || op == LUNAR_OP_NORM || op == LUNAR_OP_VAR) &&
        !lunar_dtype_is_float(x->dtype))
        return lunar_fail(LUNAR_ERR_DTYPE, "%s: needs a float tensor (got %s); convert with "
                          ":float() or :double()", name, lunar_dtype_name(x->dtype));
    lunar_dtype dt = reduce_dtype(op, x->dtype);
    int64_t kshape[LUNAR_MAX_DIMS], count = 1;
    for (int d = 0; d < x->ndim; d++) {
        bool r = (dims >> d) & 1;
        kshape[d] = r ? 1 : x->shape[d];
        if (r) count *= x->shape[d];
    }
    if ((op == LUNAR_OP_MAX || op == LUNAR_OP_MIN) && count == 0)
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: cannot reduce over an empty dim of %s", name,
                          lunar_shape_str(sbuf, sizeof sbuf, x->ndim, x->shape));
    lunar_tensor *in = x, *k = NULL;
    lunar_status st;
    bool float_op = dt != x->dtype && lunar_dtype_is_float(dt);
    if (float_op) LUNAR_CHECK(lunar_raw_cast(&in, x, dt));
    st = lunar_tensor_new(&k, x->ndim, kshape, dt, x);
    if (st == LUNAR_OK) {
        if (x->ndim == 0) st = lunar_raw_copy(k, in); /* a 0-d tensor reduces to itself */
        else st = LUNAR_KERNEL(lunar_tensor_backend(x), reduce, op, k, in, dims, param);
    }
    if (st == LUNAR_OK) {
        if (keepdim) {
            *out = k;
            k = NULL;
        } else {
            int64_t shape[LUNAR_MAX_DIMS], strides[LUNAR_MAX_DIMS];
            int nd = 0;
            for (int d = 0; d < x->ndim; d++)
                if (!((dims >> d) & 1)) shape[nd++] = x->shape[d];
            lunar_contiguous_strides(nd, shape, strides);
            *out = lunar_tensor_alias(k, nd, shape, strides, 0);
            if (!*out) st = lunar_fail(LUNAR_ERR_MEMORY, "%s: out of memory", name);
        }
    }
    if (st == LUNAR_OK && lunar_dtype_is_float(dt)) {
        lunar_node *n = lunar_node_begin(name, reduce_backward, 1, &x);
        if (n) {
            n->i[0] = op;
            n->i[1] = dims;
            n->i[2] = count;
            n->f[0] = param;
            if (op != LUNAR_OP_SUM && op != LUNAR_OP_MEAN) lunar_node_save(n, 0, in);
            if (op == LUNAR_OP_MAX || op == LUNAR_OP_MIN ||
                op == LUNAR_OP_LOGSUMEXP || op == LUNAR_OP_NORM)
                lunar_node_save(n, 1, *out);
            lunar_node_finish(n, *out);
        }
    }
    lunar_tensor_release(k);
    if (in != x) lunar_tensor_release(in);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*out);
        *out = NULL;
    }
    return st;
}

/* ---- max/min along one dim ---- */

/* The reduced dim put back (size 1) into a tensor reduced without keepdim. */
static lunar_status unsqueeze_if(lunar_tensor **out, lunar_tensor *t, int dim, bool squeezed) {
    if (squeezed) return lunar_unsqueeze(out, t, dim);
    lunar_tensor_retain(t);
    *out = t;
    return LUNAR_OK;
}

/* The gradient goes to the returned index only: g where arange(len) == index along dim. */
static lunar_status max_dim_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    int dim = (int)n->i[0];
    bool squeezed = n->i[1] != 0;
    const lunar_edge *in = &n->next[0];
    gx c = {0};
    if (in->ndim == 0) { /* a 0-d input is its own max */
        gi[0] = gx_keep(&c, g);
        return gx_end(&c);
    }
    lunar_tensor *idx = NULL, *gk = NULL, *ar = NULL, *arv = NULL, *zero = NULL, *r = NULL;
    c.st = lunar_node_saved(n, 0, &idx); /* [..., 1, ...] */
    if (c.st == LUNAR_OK) c.st = unsqueeze_if(&gk, g, dim, squeezed);
    gx_add(&c, gk);
    if (c.st == LUNAR_OK) c.st = lunar_tensor_new(&ar, 1, &in->shape[dim], LUNAR_I64, g);
    gx_add(&c, ar); /* arange(len) on g's device, like idx */
    if (c.st == LUNAR_OK) c.st = LUNAR_KERNEL(lunar_tensor_backend(g), arange, ar, 0, 1);
    if (c.st == LUNAR_OK) { /* [1, ..., len, ..., 1] */
        int64_t shape[LUNAR_MAX_DIMS];
        for (int d = 0; d < in->ndim; d++) shape[d] = d == dim ? in->shape[d] : 1;
        c.st = lunar_reshape(&arv, ar, in->ndim, shape);
        gx_add(&c, arv);
    }
    lunar_tensor *hit = gx_bin(&c, LUNAR_OP_EQ, arv, idx); /* x's shape by broadcasting */
    if (c.st == LUNAR_OK) c.st = lunar_full_like(&zero, 0, NULL, g->dtype, 0, g);
    gx_add(&c, zero);
    if (c.st == LUNAR_OK) { /* where, not a product: an inf in g must not become nan */
        c.st = lunar_where(&r, hit, gk, zero);
        gx_add(&c, r);
    }
    gi[0] = gx_keep(&c, r);
    return gx_end(&c);
}

lunar_status lunar_max_dim(lunar_tensor **values, lunar_tensor **indices, lunar_tensor *x,
                           int dim, bool keepdim, bool is_min) {
    *values = *indices = NULL;
    const char *name = is_min ? "min" : "max";
    char sbuf[128];
    LUNAR_CHECK(lunar_wrap_dim(name, &dim, x->ndim));
    /* a 0-d tensor is its own max, at index 0: work on it as [1] */
    int nd = x->ndim ? x->ndim : 1;
    int64_t xshape[LUNAR_MAX_DIMS], xstrides[LUNAR_MAX_DIMS], kshape[LUNAR_MAX_DIMS];
    if (x->ndim) {
        memcpy(xshape, x->shape, sizeof(int64_t) * (size_t)nd);
        memcpy(xstrides, x->strides, sizeof(int64_t) * (size_t)nd);
    } else {
        xshape[0] = 1;
        xstrides[0] = 1;
    }
    if (xshape[dim] == 0)
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: cannot reduce over the empty dim %d of %s", name,
                          dim + 1, lunar_shape_str(sbuf, sizeof sbuf, x->ndim, x->shape));
    memcpy(kshape, xshape, sizeof(int64_t) * (size_t)nd);
    kshape[dim] = 1;
    lunar_tensor *xv = lunar_tensor_alias(x, nd, xshape, xstrides, x->offset);
    lunar_tensor *v = NULL, *ix = NULL;
    if (!xv) return lunar_fail(LUNAR_ERR_MEMORY, "%s: out of memory", name);
    lunar_status st = lunar_tensor_new(&v, nd, kshape, x->dtype, x);
    if (st == LUNAR_OK) st = lunar_tensor_new(&ix, nd, kshape, LUNAR_I64, x);
    if (st == LUNAR_OK) {
        const lunar_backend *be = lunar_tensor_backend(x);
        st = be->arg_reduce ? be->arg_reduce(v, ix, xv, dim, is_min)
                            : lunar_fail(LUNAR_ERR_UNSUPPORTED, "%s: no kernel on %s", name,
                                         be->name);
    }
    /* the result's geometry: keepdim keeps x's dims; otherwise dim goes (and 0-d stays 0-d) */
    bool squeezed = !keepdim || x->ndim == 0;
    if (st == LUNAR_OK) {
        int on = 0;
        int64_t oshape[LUNAR_MAX_DIMS], ostrides[LUNAR_MAX_DIMS];
        for (int d = 0; d < x->ndim; d++)
            if (d != dim || !squeezed) oshape[on++] = kshape[d];
        lunar_contiguous_strides(on, oshape, ostrides);
        *values = lunar_tensor_alias(v, on, oshape, ostrides, 0);
        *indices = lunar_tensor_alias(ix, on, oshape, ostrides, 0);
        if (!*values || !*indices) st = lunar_fail(LUNAR_ERR_MEMORY, "%s: out of memory", name);
    }
    if (st == LUNAR_OK && lunar_dtype_is_float(x->dtype)) {
        lunar_node *n = lunar_node_begin(name, max_dim_backward, 1, &x);
        if (n) {
            n->i[0] = dim;
            n->i[1] = squeezed && x->ndim > 0;
            lunar_node_save(n, 0, ix);
            lunar_node_finish(n, *values);
        }
    }
    lunar_tensor_release(xv);
    lunar_tensor_release(v);
    lunar_tensor_release(ix);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*values);
        lunar_tensor_release(*indices);
        *values = *indices = NULL;
    }
    return st;
}

/* ---- scans: cumsum and cumprod ---- */

static lunar_status scan_op(lunar_tensor **out, lunar_tensor *x, int dim, bool is_prod);

/* sum_{j >= i} t_j along dim, as sum(t) - cumsum(t) + t: composed, so any backend has it */
static lunar_tensor *gx_revcumsum(gx *c, lunar_tensor *t, int dim, int ndim) {
    if (!t || c->st != LUNAR_OK) return NULL;
    lunar_tensor *s = NULL, *cs = NULL;
    c->st = lunar_reduce(&s, LUNAR_OP_SUM, t, ndim ? 1u << dim : 0, true, 0);
    gx_add(c, s);
    if (c->st == LUNAR_OK) c->st = scan_op(&cs, t, dim, false);
    gx_add(c, cs);
    return gx_bin(c, LUNAR_OP_ADD, gx_bin(c, LUNAR_OP_SUB, s, cs), t);
}

/* cumsum: gx = revcumsum(g). cumprod: gx_k = sum_{j >= k} g_j y_j / x_k, which needs care
 * where x has zeros: before a lane's first zero the quotient is right; at the first zero
 * the term is revcumsum(g y') with y' the cumprod of x with that zero set to 1; after it
 * every y_j has a zero factor other than x_k, so the gradient is 0. */
static lunar_status scan_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    int dim = (int)n->i[0];
    bool is_prod = n->i[1] != 0;
    int nd = n->next[0].ndim;
    gx c = {0};
    if (!is_prod) {
        gi[0] = gx_keep(&c, gx_revcumsum(&c, g, dim, nd));
        return gx_end(&c);
    }
    lunar_tensor *x = NULL, *y = NULL, *one = NULL, *zero = NULL, *nz = NULL, *x1 = NULL;
    lunar_tensor *y1 = NULL, *a = NULL, *b = NULL, *ab = NULL, *r = NULL;
    c.st = lunar_node_saved(n, 0, &x);
    if (c.st == LUNAR_OK) c.st = lunar_node_saved(n, 1, &y);
    if (c.st == LUNAR_OK) c.st = lunar_full_like(&one, 0, NULL, x->dtype, 1, x);
    gx_add(&c, one);
    if (c.st == LUNAR_OK) c.st = lunar_full_like(&zero, 0, NULL, x->dtype, 0, x);
    gx_add(&c, zero);
    lunar_tensor *isz = gx_scal(&c, LUNAR_OP_EQ, x, 0);
    if (c.st == LUNAR_OK) c.st = scan_op(&nz, isz, dim, false); /* zeros seen so far */
    gx_add(&c, nz);
    lunar_tensor *before = gx_scal(&c, LUNAR_OP_EQ, nz, 0);
    lunar_tensor *first = gx_bin(&c, LUNAR_OP_LOGICAL_AND, isz, gx_scal(&c, LUNAR_OP_EQ, nz, 1));
    if (c.st == LUNAR_OK) c.st = lunar_where(&x1, first, one, x);
    gx_add(&c, x1);
    if (c.st == LUNAR_OK) c.st = scan_op(&y1, x1, dim, true);
    gx_add(&c, y1);
    lunar_tensor *safe_x = NULL;
    if (c.st == LUNAR_OK) c.st = lunar_where(&safe_x, isz, one, x);
    gx_add(&c, safe_x);
    lunar_tensor *q = gx_bin(&c, LUNAR_OP_DIV, gx_revcumsum(&c, gx_mul(&c, g, y), dim, nd),
                             safe_x);
    if (c.st == LUNAR_OK) c.st = lunar_where(&a, before, q, zero);
    gx_add(&c, a);
    b = gx_revcumsum(&c, gx_mul(&c, g, y1), dim, nd);
    if (c.st == LUNAR_OK) c.st = lunar_where(&ab, first, b, a);
    gx_add(&c, ab);
    r = ab;
    gi[0] = gx_keep(&c, r);
    return gx_end(&c);
}

static lunar_status scan_op(lunar_tensor **out, lunar_tensor *x, int dim, bool is_prod) {
    *out = NULL;
    const char *name = is_prod ? "cumprod" : "cumsum";
    LUNAR_CHECK(lunar_wrap_dim(name, &dim, x->ndim));
    /* like PyTorch: integer and bool inputs give int64 */
    lunar_dtype dt = lunar_dtype_is_float(x->dtype) ? x->dtype : LUNAR_I64;
    lunar_tensor *in = x;
    if (dt != x->dtype) LUNAR_CHECK(lunar_raw_cast(&in, x, dt));
    lunar_status st = lunar_tensor_new(out, x->ndim, x->shape, dt, x);
    if (st == LUNAR_OK) {
        if (x->ndim == 0) {
            st = lunar_raw_copy(*out, in);
        } else {
            const lunar_backend *be = lunar_tensor_backend(x);
            st = be->scan ? be->scan(*out, in, dim, is_prod)
                          : lunar_fail(LUNAR_ERR_UNSUPPORTED, "%s: no kernel on %s", name,
                                       be->name);
        }
    }
    if (st == LUNAR_OK && lunar_dtype_is_float(dt)) {
        lunar_node *n = lunar_node_begin(name, scan_backward, 1, &x);
        if (n) {
            n->i[0] = dim;
            n->i[1] = is_prod;
            if (is_prod) {
                lunar_node_save(n, 0, in);
                lunar_node_save(n, 1, *out);
            }
            lunar_node_finish(n, *out);
        }
    }
    if (in != x) lunar_tensor_release(in);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*out);
        *out = NULL;
    }
    return st;
}

lunar_status lunar_cumsum(lunar_tensor **out, lunar_tensor *x, int dim) {
    return scan_op(out, x, dim, false);
}

lunar_status lunar_cumprod(lunar_tensor **out, lunar_tensor *x, int dim) {
    return scan_op(out, x, dim, true);
}
