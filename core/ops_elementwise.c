/*
 * ops_elementwise.c - the unary and binary op families, where, and the in-place variants:
 * dtype promotion, broadcasting, dispatch to the backend, and the backward rules.
 */
#include "lunar-impl.h"

#include <math.h>
#include <string.h>

static const char *unary_names[LUNAR_UNARY_COUNT] = {
    "neg",  "abs",  "sign",  "exp",   "expm1", "log",     "log1p", "sqrt",
    "rsqrt", "square", "sin", "cos",  "tanh",  "sigmoid", "relu",  "floor",
    "ceil", "round", "trunc", "clamp", "reciprocal", "erf", "logical_not"};
_Static_assert(LUNAR_UNARY_COUNT == 23, "name every unary op");

static const char *binary_names[LUNAR_BINARY_COUNT] = {
    "add", "sub", "mul", "div", "pow", "atan2", "maximum", "minimum", "fmod", "remainder",
    "eq",  "ne",  "lt",  "le",  "gt",  "ge",    "logical_and", "logical_or", "logical_xor"};
_Static_assert(LUNAR_BINARY_COUNT == 19, "name every binary op");

static bool unary_needs_float(lunar_unary_op op) {
    switch (op) {
    case LUNAR_OP_NEG: case LUNAR_OP_ABS: case LUNAR_OP_SIGN: case LUNAR_OP_SQUARE:
    case LUNAR_OP_RELU: case LUNAR_OP_FLOOR: case LUNAR_OP_CEIL: case LUNAR_OP_ROUND:
    case LUNAR_OP_TRUNC: case LUNAR_OP_CLAMP: case LUNAR_OP_LOGICAL_NOT:
        return false;
    default:
        return true;
    }
}

static bool is_compare(lunar_binary_op op) { return op >= LUNAR_OP_EQ && op <= LUNAR_OP_GE; }
static bool is_logical(lunar_binary_op op) { return op >= LUNAR_OP_LOGICAL_AND; }

/* ---- unary ---- */

/* where(x > 0, g, 0): one pass over g, where g * (x > 0) made the mask float first (a cast
 * and a product, each a pass); as PyTorch, g's NaN or inf gives 0 where x <= 0. */
static lunar_tensor *relu_grad(gx *c, lunar_tensor *g, lunar_tensor *x) {
    lunar_tensor *pos = gx_scal(c, LUNAR_OP_GT, x, 0), *zero = NULL, *r = NULL;
    if (!pos) return NULL;
    lunar_status st = lunar_full_like(&zero, 0, NULL, g->dtype, 0, g);
    if (st == LUNAR_OK) st = lunar_where(&r, pos, g, zero);
    lunar_tensor_release(zero);
    if (st != LUNAR_OK) {
        if (c->st == LUNAR_OK) c->st = st;
        return NULL;
    }
    return gx_add(c, r);
}

static lunar_status unary_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    lunar_unary_op op = (lunar_unary_op)n->i[0];
    gx c = {0};
    lunar_tensor *x = NULL, *y = NULL, *r = NULL;
    if (n->saved[0]) c.st = lunar_node_saved(n, 0, &x);
    if (c.st == LUNAR_OK && n->saved[1]) c.st = lunar_node_saved(n, 1, &y);
    if (c.st != LUNAR_OK) return c.st;
    switch (op) {
    case LUNAR_OP_NEG: r = gx_un(&c, LUNAR_OP_NEG, g); break;
    case LUNAR_OP_ABS: r = gx_mul(&c, g, gx_un(&c, LUNAR_OP_SIGN, x)); break;
    case LUNAR_OP_EXP: r = gx_mul(&c, g, y); break;
    case LUNAR_OP_EXPM1: r = gx_mul(&c, g, gx_scal(&c, LUNAR_OP_ADD, y, 1)); break;
    case LUNAR_OP_LOG: r = gx_bin(&c, LUNAR_OP_DIV, g, x); break;
    case LUNAR_OP_LOG1P: r = gx_bin(&c, LUNAR_OP_DIV, g, gx_scal(&c, LUNAR_OP_ADD, x, 1)); break;
    case LUNAR_OP_SQRT: r = gx_bin(&c, LUNAR_OP_DIV, g, gx_scal(&c, LUNAR_OP_MUL, y, 2)); break;
    case LUNAR_OP_RSQRT: /* -0.5 y^3 */
        r = gx_mul(&c, g, gx_scal(&c, LUNAR_OP_MUL, gx_mul(&c, y, gx_un(&c, LUNAR_OP_SQUARE, y)),
                                  -0.5));
        break;
    case LUNAR_OP_SQUARE: r = gx_mul(&c, g, gx_scal(&c, LUNAR_OP_MUL, x, 2)); break;
    case LUNAR_OP_SIN: r = gx_mul(&c, g, gx_un(&c, LUNAR_OP_COS, x)); break;
    case LUNAR_OP_COS:
        r = gx_mul(&c, g, gx_un(&c, LUNAR_OP_NEG, gx_un(&c, LUNAR_OP_SIN, x)));
        break;
    case LUNAR_OP_TANH: /* 1 - y^2 */
        r = gx_mul(&c, g, gx_scal(&c, LUNAR_OP_SUB, gx_un(&c, LUNAR_OP_SQUARE, y), 1));
        r = gx_un(&c, LUNAR_OP_NEG, r);
        break;
    case LUNAR_OP_SIGMOID: /* y (1 - y) */
        r = gx_mul(&c, g, gx_mul(&c, y, gx_un(&c, LUNAR_OP_NEG, gx_scal(&c, LUNAR_OP_SUB, y, 1))));
        break;
    case LUNAR_OP_RELU: r = relu_grad(&c, g, x); break;
    case LUNAR_OP_CLAMP: { /* gradient passes where lo <= x <= hi */
        lunar_tensor *in = gx_bin(&c, LUNAR_OP_LOGICAL_AND, gx_scal(&c, LUNAR_OP_GE, x, n->f[0]),
                                  gx_scal(&c, LUNAR_OP_LE, x, n->f[1]));
        r = gx_mul(&c, g, in);
        break;
    }
    case LUNAR_OP_RECIPROCAL:
        r = gx_mul(&c, g, gx_un(&c, LUNAR_OP_NEG, gx_un(&c, LUNAR_OP_SQUARE, y)));
        break;
    case LUNAR_OP_ERF: /* 2 / sqrt(pi) exp(-x^2) */
        r = gx_mul(&c, g, gx_scal(&c, LUNAR_OP_MUL,
                                  gx_un(&c, LUNAR_OP_EXP, gx_un(&c, LUNAR_OP_NEG,
                                                                gx_un(&c, LUNAR_OP_SQUARE, x))),
                                  1.1283791670955126));
        break;
    default: /* sign, floor, ceil, round, trunc: zero almost everywhere */
        r = gx_scal(&c, LUNAR_OP_MUL, g, 0);
        break;
    }
    gi[0] = gx_keep(&c, r);
    return gx_end(&c);
}

/* Which of x (slot 0) and y (slot 1) an op's backward rule reads. */
static void unary_save(lunar_node *n, lunar_unary_op op, lunar_tensor *x, lunar_tensor *y) {
    switch (op) {
    case LUNAR_OP_EXP: case LUNAR_OP_EXPM1: case LUNAR_OP_SQRT: case LUNAR_OP_RSQRT:
    case LUNAR_OP_TANH: case LUNAR_OP_SIGMOID: case LUNAR_OP_RECIPROCAL:
        lunar_node_save(n, 1, y);
        break;
    case LUNAR_OP_NEG: case LUNAR_OP_SIGN: case LUNAR_OP_FLOOR: case LUNAR_OP_CEIL:
    case LUNAR_OP_ROUND: case LUNAR_OP_TRUNC:
        break;
    default:
        lunar_node_save(n, 0, x);
        break;
    }
}

/* The dtype an op computes in for input dtype dt. As in PyTorch, bools go to int64 for
 * square and clamp, and neg/abs/relu/rounding refuse them (LUNAR_DTYPE_COUNT). */
static lunar_dtype unary_dtype(lunar_unary_op op, lunar_dtype dt) {
    if (op == LUNAR_OP_LOGICAL_NOT) return LUNAR_BOOL;
    if (unary_needs_float(op) && !lunar_dtype_is_float(dt)) return LUNAR_F32;
    if (dt == LUNAR_BOOL && op != LUNAR_OP_SIGN)
        return op == LUNAR_OP_SQUARE || op == LUNAR_OP_CLAMP ? LUNAR_I64 : LUNAR_DTYPE_COUNT;
    return dt;
}

lunar_status lunar_unary(lunar_tensor **out, lunar_unary_op op, lunar_tensor *x,
                         const double *params) {
    if ((unsigned)op >= LUNAR_UNARY_COUNT) return lunar_fail(LUNAR_ERR_ARG, "unary: bad op");
    const lunar_backend *be = lunar_tensor_backend(x);
    lunar_dtype dt = unary_dtype(op, x->dtype);
    if (dt == LUNAR_DTYPE_COUNT)
        return lunar_fail(LUNAR_ERR_DTYPE, "%s: not supported for bool tensors", unary_names[op]);
    lunar_tensor *in = x;
    if (dt != x->dtype) LUNAR_CHECK(lunar_raw_cast(&in, x, dt));
    lunar_status st = lunar_tensor_new(out, x->ndim, x->shape, dt, x);
    if (st == LUNAR_OK) st = LUNAR_KERNEL(be, unary, op, *out, in, params);
    if (st == LUNAR_OK && op != LUNAR_OP_LOGICAL_NOT) {
        lunar_node *n = lunar_node_begin(unary_names[op], unary_backward, 1, &x);
        if (n) {
            n->i[0] = op;
            if (params) {
                n->f[0] = params[0];
                n->f[1] = params[1];
            }
            unary_save(n, op, in, *out);
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

/* ---- binary ---- */

/* x, with 0 where mask is true (multiplying by the mask would keep NaNs and infinities). */
static lunar_tensor *zero_where(gx *c, lunar_tensor *mask, lunar_tensor *x) {
    if (!mask || !x || c->st != LUNAR_OK) return NULL;
    lunar_tensor *zero = NULL, *r = NULL;
    c->st = lunar_full_like(&zero, 0, NULL, x->dtype, 0, x);
    if (c->st == LUNAR_OK) c->st = lunar_where(&r, mask, zero, x);
    lunar_tensor_release(zero);
    return c->st == LUNAR_OK ? gx_add(c, r) : NULL;
}

static lunar_status binary_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    lunar_binary_op op = (lunar_binary_op)n->i[0];
    gx c = {0};
    lunar_tensor *a = NULL, *b = NULL, *y = NULL;
    if (n->saved[0]) c.st = lunar_node_saved(n, 0, &a);
    if (c.st == LUNAR_OK && n->saved[1]) c.st = lunar_node_saved(n, 1, &b);
    if (c.st == LUNAR_OK && n->saved[2]) c.st = lunar_node_saved(n, 2, &y);
    if (c.st != LUNAR_OK) return c.st;
    bool na = lunar_node_needs(n, 0), nb = lunar_node_needs(n, 1);
    lunar_tensor *ga = NULL, *gb = NULL;
    switch (op) {
    case LUNAR_OP_ADD:
        ga = g;
        gb = g;
        break;
    case LUNAR_OP_SUB:
        ga = g;
        if (nb) gb = gx_un(&c, LUNAR_OP_NEG, g);
        break;
    case LUNAR_OP_MUL:
        if (na) ga = gx_mul(&c, g, b);
        if (nb) gb = gx_mul(&c, g, a);
        break;
    case LUNAR_OP_DIV:
        if (na) ga = gx_bin(&c, LUNAR_OP_DIV, g, b);
        if (nb) /* -g a / b^2 = -g y / b */
            gb = gx_un(&c, LUNAR_OP_NEG, gx_bin(&c, LUNAR_OP_DIV, gx_mul(&c, g, y), b));
        break;
    case LUNAR_OP_POW:
        if (na) { /* g b a^(b-1), taken as 0 where b == 0 (a^0 is constant, even at a = 0) */
            lunar_tensor *d = gx_mul(&c, b, gx_bin(&c, LUNAR_OP_POW, a,
                                                   gx_scal(&c, LUNAR_OP_SUB, b, 1)));
            ga = gx_mul(&c, g, zero_where(&c, gx_scal(&c, LUNAR_OP_EQ, b, 0), d));
        }
        if (nb) /* g y log(a), taken as 0 where a == 0 (the limit for b > 0) */
            gb = gx_mul(&c, gx_mul(&c, g, y), zero_where(&c, gx_scal(&c, LUNAR_OP_EQ, a, 0),
                                                          gx_un(&c, LUNAR_OP_LOG, a)));
        break;
    case LUNAR_OP_ATAN2: { /* d/da = b / (a^2 + b^2), d/db = -a / (a^2 + b^2) */
        lunar_tensor *den = gx_bin(&c, LUNAR_OP_ADD, gx_un(&c, LUNAR_OP_SQUARE, a),
                                   gx_un(&c, LUNAR_OP_SQUARE, b));
        lunar_tensor *gd = gx_bin(&c, LUNAR_OP_DIV, g, den);
        if (na) ga = gx_mul(&c, gd, b);
        if (nb) gb = gx_un(&c, LUNAR_OP_NEG, gx_mul(&c, gd, a));
        break;
    }
    case LUNAR_OP_MAXIMUM:
    case LUNAR_OP_MINIMUM: { /* the winner takes g; a tie splits it, as PyTorch does */
        lunar_binary_op win = op == LUNAR_OP_MAXIMUM ? LUNAR_OP_GT : LUNAR_OP_LT;
        lunar_tensor *tie = gx_scal(&c, LUNAR_OP_MUL, gx_bin(&c, LUNAR_OP_EQ, a, b), 0.5);
        lunar_tensor *wa = gx_bin(&c, LUNAR_OP_ADD, gx_bin(&c, win, a, b), tie);
        lunar_tensor *wb = gx_bin(&c, LUNAR_OP_ADD, gx_bin(&c, win, b, a), tie);
        if (na) ga = gx_mul(&c, g, wa);
        if (nb) gb = gx_mul(&c, g, wb);
        break;
    }
    case LUNAR_OP_FMOD:
    case LUNAR_OP_REMAINDER: { /* a - q b with q = trunc(a/b) or floor(a/b) */
        ga = g;
        lunar_unary_op rnd = op == LUNAR_OP_FMOD ? LUNAR_OP_TRUNC : LUNAR_OP_FLOOR;
        if (nb)
            gb = gx_un(&c, LUNAR_OP_NEG,
                       gx_mul(&c, g, gx_un(&c, rnd, gx_bin(&c, LUNAR_OP_DIV, a, b))));
        break;
    }
    default:
        break;
    }
    if (na) gi[0] = gx_keep(&c, ga);
    if (nb) gi[1] = gx_keep(&c, gb);
    return gx_end(&c);
}

static int dtype_kind(lunar_dtype t) {
    return t == LUNAR_BOOL ? 0 : lunar_dtype_is_float(t) ? 2 : 1;
}

/* PyTorch's result type: a 0-d operand beside a dimensioned one decides the dtype only when
 * its kind (bool < integer < float) is higher, so float32 [n] + float64 0-d is float32. */
static lunar_dtype result_type(const lunar_tensor *a, const lunar_tensor *b) {
    if ((a->ndim == 0) == (b->ndim == 0)) return lunar_promote(a->dtype, b->dtype);
    const lunar_tensor *z = a->ndim == 0 ? a : b, *d = a->ndim == 0 ? b : a;
    return dtype_kind(z->dtype) > dtype_kind(d->dtype) ? z->dtype : d->dtype;
}

/* The dtype an op computes in, or LUNAR_DTYPE_COUNT when it refuses two bools. Bools add
 * as "or" and multiply as "and" (the kernels see bool), as in PyTorch. */
static lunar_dtype binary_dtype(lunar_binary_op op, const lunar_tensor *a, const lunar_tensor *b) {
    if (is_logical(op)) return LUNAR_BOOL;
    lunar_dtype dt = result_type(a, b);
    if ((op == LUNAR_OP_DIV || op == LUNAR_OP_ATAN2) && !lunar_dtype_is_float(dt))
        return LUNAR_F32;
    if (dt == LUNAR_BOOL && !is_compare(op) && op != LUNAR_OP_ADD && op != LUNAR_OP_MUL &&
        op != LUNAR_OP_MAXIMUM && op != LUNAR_OP_MINIMUM)
        return LUNAR_DTYPE_COUNT;
    return dt;
}

/* Casts x to dt unless it already is; *owned tells whether the result must be released. */
static lunar_status as_dtype(lunar_tensor **out, lunar_tensor *x, lunar_dtype dt) {
    if (x->dtype == dt) {
        *out = x;
        return LUNAR_OK;
    }
    return lunar_raw_cast(out, x, dt);
}

/* Records the node of a float binary op: a, b are the inputs, ca, cb the operands the
 * kernel saw (after casts). */
static void record_binary(lunar_binary_op op, lunar_tensor *a, lunar_tensor *b,
                          lunar_tensor *ca, lunar_tensor *cb, lunar_tensor *out) {
    lunar_tensor *in[2] = {a, b};
    lunar_node *n = lunar_node_begin(binary_names[op], binary_backward, 2, in);
    if (!n) return;
    n->i[0] = op;
    bool keep_a = op != LUNAR_OP_ADD && op != LUNAR_OP_SUB;
    bool keep_b = keep_a;
    if (op == LUNAR_OP_FMOD || op == LUNAR_OP_REMAINDER) keep_a = keep_b = lunar_node_needs(n, 1);
    if (keep_a) lunar_node_save(n, 0, ca);
    if (keep_b) lunar_node_save(n, 1, cb);
    if (op == LUNAR_OP_DIV || op == LUNAR_OP_POW) lunar_node_save(n, 2, out);
    lunar_node_finish(n, out);
}

lunar_status lunar_binary(lunar_tensor **out, lunar_binary_op op, lunar_tensor *a,
                          lunar_tensor *b) {
    if ((unsigned)op >= LUNAR_BINARY_COUNT) return lunar_fail(LUNAR_ERR_ARG, "binary: bad op");
    const char *name = binary_names[op];
    *out = NULL;
    LUNAR_CHECK(lunar_same_device(name, a, b));
    int nd;
    int64_t shape[LUNAR_MAX_DIMS];
    lunar_dtype dt;
    lunar_status st;
    /* the common case, float arithmetic on operands of one shape and dtype, skips the
     * promotion and broadcasting set-up: it is most of a tiny op's time in the core */
    if (a->dtype == b->dtype && lunar_dtype_is_float(a->dtype) && op <= LUNAR_OP_REMAINDER &&
        lunar_shape_equal(a->ndim, a->shape, b->ndim, b->shape)) {
        LUNAR_CHECK(lunar_tensor_new(out, a->ndim, a->shape, a->dtype, a));
        st = LUNAR_KERNEL(lunar_tensor_backend(a), binary, op, *out, a, b);
        if (st == LUNAR_OK) record_binary(op, a, b, a, b, *out);
        else {
            lunar_tensor_release(*out);
            *out = NULL;
        }
        return st;
    }
    LUNAR_CHECK(lunar_broadcast_shape(name, a->ndim, a->shape, b->ndim, b->shape, &nd, shape));
    dt = binary_dtype(op, a, b);
    if (dt == LUNAR_DTYPE_COUNT)
        return lunar_fail(LUNAR_ERR_DTYPE, "%s: not supported for two bool tensors", name);
    lunar_dtype odt = is_compare(op) || is_logical(op) ? LUNAR_BOOL : dt;
    lunar_tensor *ca = NULL, *cb = NULL, *va = NULL, *vb = NULL;
    LUNAR_GOTO(as_dtype(&ca, a, dt));
    LUNAR_GOTO(as_dtype(&cb, b, dt));
    LUNAR_GOTO(lunar_tensor_new(out, nd, shape, odt, a));
    bool sa = lunar_shape_equal(nd, shape, ca->ndim, ca->shape);
    bool sb = lunar_shape_equal(nd, shape, cb->ndim, cb->shape);
    va = sa ? ca : lunar_broadcast_view(ca, nd, shape);
    vb = sb ? cb : lunar_broadcast_view(cb, nd, shape);
    if (!va || !vb) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "%s: out of memory", name));
    LUNAR_GOTO(LUNAR_KERNEL(lunar_tensor_backend(a), binary, op, *out, va, vb));
    if (odt != LUNAR_BOOL) record_binary(op, a, b, ca, cb, *out);
done:
    if (va && va != ca) lunar_tensor_release(va);
    if (vb && vb != cb) lunar_tensor_release(vb);
    if (ca && ca != a) lunar_tensor_release(ca);
    if (cb && cb != b) lunar_tensor_release(cb);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*out);
        *out = NULL;
    }
    return st;
}

/* The dtype a Lua number takes next to a tensor of dtype dt. */
static lunar_dtype scalar_dtype(lunar_dtype dt, double v) {
    if (lunar_dtype_is_float(dt)) return dt;
    if (v == floor(v) && fabs(v) < 9.2e18) return dt == LUNAR_BOOL ? LUNAR_I64 : dt;
    return LUNAR_F32;
}

lunar_status lunar_binary_scalar(lunar_tensor **out, lunar_binary_op op, lunar_tensor *a,
                                 double b, bool scalar_first) {
    lunar_tensor *s;
    *out = NULL;
    lunar_dtype dt = scalar_dtype(a->dtype, b);
    LUNAR_CHECK(lunar_tensor_new(&s, 0, NULL, dt, a));
    lunar_status st = LUNAR_KERNEL(lunar_tensor_backend(a), fill, s, b);
    if (st == LUNAR_OK)
        st = scalar_first ? lunar_binary(out, op, s, a) : lunar_binary(out, op, a, s);
    lunar_tensor_release(s);
    return st;
}

/* ---- where ---- */

static lunar_status where_backward(lunar_node *n, lunar_tensor *g, lunar_tensor **gi) {
    lunar_tensor *cond, *zero = NULL;
    LUNAR_CHECK(lunar_node_saved(n, 0, &cond));
    LUNAR_CHECK(lunar_full_like(&zero, 0, NULL, g->dtype, 0, g));
    lunar_status st = LUNAR_OK;
    if (lunar_node_needs(n, 1)) st = lunar_where(&gi[1], cond, g, zero);
    if (st == LUNAR_OK && lunar_node_needs(n, 2)) st = lunar_where(&gi[2], cond, zero, g);
    lunar_tensor_release(zero);
    return st;
}

lunar_status lunar_where(lunar_tensor **out, lunar_tensor *cond, lunar_tensor *a,
                         lunar_tensor *b) {
    *out = NULL;
    LUNAR_CHECK(lunar_same_device("where", cond, a));
    LUNAR_CHECK(lunar_same_device("where", a, b));
    int n1, nd;
    int64_t s1[LUNAR_MAX_DIMS], shape[LUNAR_MAX_DIMS];
    LUNAR_CHECK(
        lunar_broadcast_shape("where", cond->ndim, cond->shape, a->ndim, a->shape, &n1, s1));
    LUNAR_CHECK(lunar_broadcast_shape("where", n1, s1, b->ndim, b->shape, &nd, shape));
    lunar_dtype dt = lunar_promote(a->dtype, b->dtype);
    lunar_tensor *cc = NULL, *ca = NULL, *cb = NULL, *vc = NULL, *va = NULL, *vb = NULL;
    lunar_status st;
    LUNAR_GOTO(as_dtype(&cc, cond, LUNAR_BOOL));
    LUNAR_GOTO(as_dtype(&ca, a, dt));
    LUNAR_GOTO(as_dtype(&cb, b, dt));
    LUNAR_GOTO(lunar_tensor_new(out, nd, shape, dt, a));
    vc = lunar_broadcast_view(cc, nd, shape);
    va = lunar_broadcast_view(ca, nd, shape);
    vb = lunar_broadcast_view(cb, nd, shape);
    if (!vc || !va || !vb) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "where: out of memory"));
    LUNAR_GOTO(LUNAR_KERNEL(lunar_tensor_backend(a), where, *out, vc, va, vb));
    lunar_tensor *in[3] = {cond, a, b};
    lunar_node *n = lunar_node_begin("where", where_backward, 3, in);
    if (n) {
        lunar_node_save(n, 0, cc);
        lunar_node_finish(n, *out);
    }
done:
    lunar_tensor_release(vc);
    lunar_tensor_release(va);
    lunar_tensor_release(vb);
    if (cc && cc != cond) lunar_tensor_release(cc);
    if (ca && ca != a) lunar_tensor_release(ca);
    if (cb && cb != b) lunar_tensor_release(cb);
    if (st != LUNAR_OK) {
        lunar_tensor_release(*out);
        *out = NULL;
    }
    return st;
}

/* ---- in place ---- */

lunar_status lunar_fill_(lunar_tensor *t, double value) {
    LUNAR_CHECK(lunar_check_inplace("fill_", t));
    LUNAR_CHECK(LUNAR_KERNEL(lunar_tensor_backend(t), fill, t, value));
    lunar_tensor_bump_version(t);
    return LUNAR_OK;
}

/* Broadcasts src to dst's shape exactly (dst's shape never changes in place). */
static lunar_status inplace_source(const char *op, lunar_tensor *dst, lunar_tensor *src,
                                   lunar_tensor **view) {
    int nd;
    int64_t shape[LUNAR_MAX_DIMS];
    LUNAR_CHECK(lunar_same_device(op, dst, src));
    LUNAR_CHECK(
        lunar_broadcast_shape(op, dst->ndim, dst->shape, src->ndim, src->shape, &nd, shape));
    if (!lunar_shape_equal(nd, shape, dst->ndim, dst->shape)) {
        char a[128], b[128];
        return lunar_fail(LUNAR_ERR_SHAPE, "%s: a tensor of shape %s cannot be written into %s",
                          op, lunar_shape_str(a, sizeof a, src->ndim, src->shape),
                          lunar_shape_str(b, sizeof b, dst->ndim, dst->shape));
    }
    *view = lunar_broadcast_view(src, dst->ndim, dst->shape);
    return *view ? LUNAR_OK : lunar_fail(LUNAR_ERR_MEMORY, "%s: out of memory", op);
}

lunar_status lunar_copy_(lunar_tensor *dst, lunar_tensor *src) {
    LUNAR_CHECK(lunar_check_inplace("copy_", dst));
    lunar_tensor *v;
    LUNAR_CHECK(inplace_source("copy_", dst, src, &v));
    lunar_status st = LUNAR_KERNEL(lunar_tensor_backend(dst), copy, dst, v);
    lunar_tensor_release(v);
    if (st == LUNAR_OK) lunar_tensor_bump_version(dst);
    return st;
}

lunar_status lunar_unary_(lunar_tensor *t, lunar_unary_op op, const double *params) {
    if ((unsigned)op >= LUNAR_UNARY_COUNT) return lunar_fail(LUNAR_ERR_ARG, "unary_: bad op");
    LUNAR_CHECK(lunar_check_inplace(unary_names[op], t));
    if (unary_dtype(op, t->dtype) != t->dtype)
        return lunar_fail(LUNAR_ERR_DTYPE, "%s_: the result is %s and cannot be stored in place "
                                           "into a %s tensor",
                          unary_names[op], lunar_dtype_name(unary_dtype(op, t->dtype)),
                          lunar_dtype_name(t->dtype));
    LUNAR_CHECK(LUNAR_KERNEL(lunar_tensor_backend(t), unary, op, t, t, params));
    lunar_tensor_bump_version(t);
    return LUNAR_OK;
}

lunar_status lunar_binary_(lunar_tensor *t, lunar_binary_op op, lunar_tensor *b) {
    if ((unsigned)op >= LUNAR_BINARY_COUNT) return lunar_fail(LUNAR_ERR_ARG, "binary_: bad op");
    const char *name = binary_names[op];
    LUNAR_CHECK(lunar_check_inplace(name, t));
    lunar_dtype dt = binary_dtype(op, t, b);
    bool direct = dt == t->dtype && !is_compare(op) && !is_logical(op);
    if (!direct) { /* compute out of place, then cast into t */
        lunar_tensor *r;
        LUNAR_CHECK(lunar_binary(&r, op, t, b));
        lunar_status st = lunar_shape_equal(r->ndim, r->shape, t->ndim, t->shape)
                              ? LUNAR_OK
                              : lunar_fail(LUNAR_ERR_SHAPE, "%s_: the result does not fit in "
                                                            "place", name);
        if (st == LUNAR_OK && dtype_kind(r->dtype) > dtype_kind(t->dtype)) /* no truncation */
            st = lunar_fail(LUNAR_ERR_DTYPE, "%s_: the result is %s and cannot be stored in "
                                             "place into a %s tensor",
                            name, lunar_dtype_name(r->dtype), lunar_dtype_name(t->dtype));
        if (st == LUNAR_OK) st = LUNAR_KERNEL(lunar_tensor_backend(t), copy, t, r);
        lunar_tensor_release(r);
        if (st == LUNAR_OK) lunar_tensor_bump_version(t);
        return st;
    }
    lunar_tensor *cb = NULL, *v = NULL;
    lunar_status st;
    LUNAR_GOTO(as_dtype(&cb, b, dt));
    LUNAR_GOTO(inplace_source(name, t, cb, &v));
    LUNAR_GOTO(LUNAR_KERNEL(lunar_tensor_backend(t), binary, op, t, t, v));
    lunar_tensor_bump_version(t);
done:
    lunar_tensor_release(v);
    if (cb && cb != b) lunar_tensor_release(cb);
    return st;
}
