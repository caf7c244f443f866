/*
 * gx.c - a tiny expression helper for backward rules: temporaries are collected and the
 * first error is kept, so a rule reads as its formula.
 */
#include "lunar-impl.h"

lunar_tensor *gx_add(gx *c, lunar_tensor *t) {
    if (!t) return NULL;
    if (c->n == (int)(sizeof c->tmp / sizeof c->tmp[0])) {
        lunar_tensor_release(t);
        c->st = lunar_fail(LUNAR_ERR_MEMORY, "backward: expression too long");
        return NULL;
    }
    c->tmp[c->n++] = t;
    return t;
}

static lunar_tensor *gx_result(gx *c, lunar_status st, lunar_tensor *t) {
    if (st != LUNAR_OK) {
        if (c->st == LUNAR_OK) c->st = st;
        return NULL;
    }
    return gx_add(c, t);
}

lunar_tensor *gx_bin(gx *c, lunar_binary_op op, lunar_tensor *a, lunar_tensor *b) {
    if (!a || !b || c->st != LUNAR_OK) return NULL;
    lunar_tensor *t = NULL;
    lunar_status st = lunar_binary(&t, op, a, b);
    return gx_result(c, st, t);
}

lunar_tensor *gx_mul(gx *c, lunar_tensor *a, lunar_tensor *b) {
    return gx_bin(c, LUNAR_OP_MUL, a, b);
}

lunar_tensor *gx_scal(gx *c, lunar_binary_op op, lunar_tensor *a, double s) {
    if (!a || c->st != LUNAR_OK) return NULL;
    lunar_tensor *t = NULL;
    lunar_status st = lunar_binary_scalar(&t, op, a, s, false);
    return gx_result(c, st, t);
}

lunar_tensor *gx_un(gx *c, lunar_unary_op op, lunar_tensor *x) {
    if (!x || c->st != LUNAR_OK) return NULL;
    lunar_tensor *t = NULL;
    lunar_status st = lunar_unary(&t, op, x, NULL);
    return gx_result(c, st, t);
}

lunar_tensor *gx_keep(gx *c, lunar_tensor *t) {
    if (!t) return NULL;
    for (int i = c->n - 1; i >= 0; i--)
        if (c->tmp[i] == t) {
            c->tmp[i] = c->tmp[--c->n];
            return t;
        }
    lunar_tensor_retain(t); /* not a temporary (an input): hand out a new reference */
    return t;
}

lunar_status gx_end(gx *c) {
    for (int i = 0; i < c->n; i++) lunar_tensor_release(c->tmp[i]);
    c->n = 0;
    return c->st;
}
