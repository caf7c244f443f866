/*
 * nn.c (binding) - softmax, log_softmax, cross_entropy, nll_loss, batch_norm, layer_norm,
 * group_norm. Class targets and ignore_index are 1-based here (class c is column c) and
 * 0-based in C; the conversion happens once, in loss_args.
 */
#include "binding.h"

#include <string.h>

static int softmax_common(lua_State *L, bool log_) {
    lunar_tensor *x = lunar_lua_check(L, 1), *r;
    int dim = x->ndim ? lunar_lua_optdim(L, 2, x->ndim, x->ndim - 1) : 0;
    LUNAR_LUA_TRY(L, log_ ? lunar_log_softmax(&r, x, dim) : lunar_softmax(&r, x, dim));
    lunar_lua_push(L, r);
    return 1;
}

/* lunar.softmax(x [, dim = -1]) */
static int l_softmax(lua_State *L) { return softmax_common(L, false); }
/* lunar.log_softmax(x [, dim = -1]) */
static int l_log_softmax(lua_State *L) { return softmax_common(L, true); }

/* A tensor field of the options table at opts, or NULL when absent. */
static lunar_tensor *opt_tensor(lua_State *L, int opts, const char *key, const char *fname) {
    if (!opts) return NULL;
    lua_getfield(L, opts, key);
    lunar_tensor *t = NULL;
    if (!lua_isnil(L, -1)) {
        t = lunar_lua_test(L, -1);
        if (!t) luaL_error(L, "%s: %s must be a tensor (got %s)", fname, key,
                           luaL_typename(L, -1));
    }
    lua_pop(L, 1); /* the options table keeps it alive */
    return t;
}

/* Reads (input, target [, opts]) for a loss; the 0-based class target is left on the stack
 * (or the float target as given). */
static lunar_tensor *loss_args(lua_State *L, const char *fname, lunar_loss_opts *o) {
    lunar_tensor *t = lunar_lua_check(L, 2), *r;
    int opts = lunar_lua_opts(L, 3);
    o->weight = opt_tensor(L, opts, "weight", fname);
    lua_Number ig = lunar_lua_optnumber(L, opts, "ignore_index", -100);
    o->ignore_index = (int64_t)ig - 1;
    o->label_smoothing = lunar_lua_optnumber(L, opts, "label_smoothing", 0);
    o->class_base = 1;
    const char *red = lunar_lua_optstring(L, opts, "reduction", "mean");
    if (strcmp(red, "mean") == 0) o->reduction = LUNAR_REDUCTION_MEAN;
    else if (strcmp(red, "sum") == 0) o->reduction = LUNAR_REDUCTION_SUM;
    else if (strcmp(red, "none") == 0) o->reduction = LUNAR_REDUCTION_NONE;
    else luaL_error(L, "%s: reduction must be 'mean', 'sum' or 'none' (got '%s')", fname, red);
    if (lunar_dtype_is_float(t->dtype)) {
        if (opts) {
            lua_getfield(L, opts, "ignore_index");
            bool given = !lua_isnil(L, -1);
            lua_pop(L, 1);
            if (given) luaL_error(L, "%s: ignore_index needs class targets, not probabilities",
                                  fname);
        }
        return t;
    }
    if (t->dtype == LUNAR_BOOL)
        luaL_error(L, "%s: target must be class indices (int64) or probabilities (float), "
                   "not bool", fname);
    LUNAR_LUA_TRY(L, lunar_binary_scalar(&r, LUNAR_OP_SUB, t, 1, false));
    lunar_lua_push(L, r);
    return r;
}

/* lunar.cross_entropy(logits, target [, {weight, ignore_index = -100, reduction = "mean",
 * label_smoothing = 0}]) */
static int l_cross_entropy(lua_State *L) {
    lunar_loss_opts o;
    lunar_tensor *x = lunar_lua_check(L, 1), *t = loss_args(L, "cross_entropy", &o), *r;
    LUNAR_LUA_TRY(L, lunar_cross_entropy(&r, x, t, &o));
    lunar_lua_push(L, r);
    return 1;
}

/* lunar.nll_loss(log_probs, target [, {weight, ignore_index = -100, reduction = "mean"}]) */
static int l_nll_loss(lua_State *L) {
    lunar_loss_opts o;
    lunar_tensor *x = lunar_lua_check(L, 1), *t = loss_args(L, "nll_loss", &o), *r;
    if (lunar_dtype_is_float(t->dtype))
        return luaL_error(L, "nll_loss: target must be class indices (got %s)",
                          lunar_dtype_name(t->dtype));
    LUNAR_LUA_TRY(L, lunar_nll_loss(&r, x, t, &o));
    lunar_lua_push(L, r);
    return 1;
}

static lunar_tensor *opt_arg(lua_State *L, int idx) {
    return lua_isnoneornil(L, idx) ? NULL : lunar_lua_check(L, idx);
}

/* lunar.batch_norm(x, running_mean, running_var [, weight, bias, {training = false,
 * momentum = 0.1, eps = 1e-5}]); running stats and affine parameters may be nil */
static int l_batch_norm(lua_State *L) {
    lunar_tensor *x = lunar_lua_check(L, 1), *r;
    lunar_tensor *rm = opt_arg(L, 2), *rv = opt_arg(L, 3), *w = opt_arg(L, 4), *b = opt_arg(L, 5);
    int opts = lunar_lua_opts(L, 6);
    bool training = lunar_lua_optbool(L, opts, "training", false);
    double momentum = lunar_lua_optnumber(L, opts, "momentum", 0.1);
    double eps = lunar_lua_optnumber(L, opts, "eps", 1e-5);
    LUNAR_LUA_TRY(L, lunar_batch_norm(&r, x, rm, rv, w, b, training, momentum, eps));
    lunar_lua_push(L, r);
    return 1;
}

/* lunar.layer_norm(x, normalized_shape [, weight, bias, eps = 1e-5]); normalized_shape is
 * an integer or a table of them */
static int l_layer_norm(lua_State *L) {
    lunar_tensor *x = lunar_lua_check(L, 1), *r;
    int64_t shape[LUNAR_MAX_DIMS];
    int n = 0;
    if (lua_isinteger(L, 2)) {
        shape[n++] = lua_tointeger(L, 2);
    } else if (lua_istable(L, 2)) {
        lunar_lua_shape(L, 2, &n, shape);
    } else {
        return luaL_error(L, "layer_norm: normalized_shape must be an integer or a table "
                          "(got %s)", luaL_typename(L, 2));
    }
    LUNAR_LUA_TRY(L, lunar_layer_norm(&r, x, n, shape, opt_arg(L, 3), opt_arg(L, 4),
                                      luaL_optnumber(L, 5, 1e-5)));
    lunar_lua_push(L, r);
    return 1;
}

/* lunar.group_norm(x, groups [, weight, bias, eps = 1e-5]) */
static int l_group_norm(lua_State *L) {
    lunar_tensor *x = lunar_lua_check(L, 1), *r;
    lua_Integer g = luaL_checkinteger(L, 2);
    LUNAR_LUA_TRY(L, lunar_group_norm(&r, x, g, opt_arg(L, 3), opt_arg(L, 4),
                                      luaL_optnumber(L, 5, 1e-5)));
    lunar_lua_push(L, r);
    return 1;
}

static const luaL_Reg both[] = {
    {"softmax", l_softmax}, {"log_softmax", l_log_softmax}, {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"cross_entropy", l_cross_entropy}, {"nll_loss", l_nll_loss},
    {"batch_norm", l_batch_norm},       {"layer_norm", l_layer_norm},
    {"group_norm", l_group_norm},       {NULL, NULL},
};

void lunar_lua_open_nn(lua_State *L) {
    lunar_lua_register(L, both, true, true);
    lunar_lua_register(L, functions, false, true);
}
