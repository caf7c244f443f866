/*
 * ops_reduce.c - reductions over a set of dims (sum, mean, prod, max, min, all, any,
 * logsumexp, norm, var): output dtypes, keepdim, and the backward rules.
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
    case LUNAR_OP_PROD: r = gx_bin(&c, LUNAR_OP_DIV, gx_mul(&c, ge, ye), x); break;
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
    uint32_t all = x->ndim ? (uint32_t)((1u << x->ndim) - 1) : 0;
    if (dims & ~all)
        return lunar_fail(LUNAR_ERR_INDEX, "%s: dim out of range for a %d-d tensor", name,
                          x->ndim);
    if (dims == 0) dims = all;
    lunar_dtype dt = reduce_dtype(op, x->dtype);
    int64_t kshape[LUNAR_MAX_DIMS], count = 1;
    for (int d = 0; d < x->ndim; d++) {
        bool r = (dims >> d) & 1;
        kshape[d] = r ? 1 : x->shape[d];
        if (r) count *= x->shape[d];
    }
    if ((op == LUNAR_OP_MAX || op == LUNAR_OP_MIN) && count == 0)
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: cannot reduce over an empty dim", name);
    lunar_tensor *in = x, *k = NULL;
    lunar_status st;
    bool float_op = dt != x->dtype && lunar_dtype_is_float(dt);
    if (float_op) LUNAR_CHECK(lunar_raw_cast(&in, x, dt));
    st = lunar_tensor_new(&k, x->ndim, kshape, dt, x);
    if (st == LUNAR_OK) {
        if (x->ndim == 0) st = lunar_raw_copy(k, in); /* a 0-d tensor reduces to itself */
        else st = lunar_tensor_backend(x)->reduce(op, k, in, dims, param);
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
            if (op == LUNAR_OP_PROD || op == LUNAR_OP_MAX || op == LUNAR_OP_MIN ||
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
