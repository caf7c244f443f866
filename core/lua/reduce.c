/*
 * reduce.c (binding) - reductions: sum, mean, prod, max, min, all, any, logsumexp, norm,
 * var, std, max/min (with indices along a dim), argmax/argmin, cumsum, cumprod.
 * Dims are 1-based: x:sum() reduces everything, x:sum(2) one dim, x:sum({1, 3}) several;
 * keepdim comes as a boolean after
 * the dims or as {keepdim = true}.
 */
#include "binding.h"

#include <math.h>
#include <string.h>

/* Reads dims at idx (nil, integer or table of integers) into a mask. */
static uint32_t dims_mask(lua_State *L, int idx, int ndim, const char *fname) {
    uint32_t mask = 0;
    if (lua_isnoneornil(L, idx)) return 0;
    if (lua_type(L, idx) == LUA_TTABLE && !lunar_lua_test(L, idx) && lua_rawlen(L, idx) > 0) {
        int n = (int)lua_rawlen(L, idx);
        for (int i = 1; i <= n; i++) {
            lua_rawgeti(L, idx, i);
            if (!lua_isinteger(L, -1)) luaL_error(L, "%s: dims must be integers", fname);
            mask |= 1u << lunar_lua_dim(L, lua_tointeger(L, -1), ndim, fname);
            lua_pop(L, 1);
        }
        return mask;
    }
    if (!lua_isinteger(L, idx)) luaL_error(L, "%s: dim must be an integer or a table of integers "
                                              "(got %s)", fname, luaL_typename(L, idx));
    if (ndim == 0) return 0; /* a 0-d tensor: dim 1 or -1 means "itself" */
    return 1u << lunar_lua_dim(L, lua_tointeger(L, idx), ndim, fname);
}

/* keepdim: a boolean at idx, or an options table at idx with keepdim */
static bool keepdim_arg(lua_State *L, int idx) {
    if (lua_isboolean(L, idx)) return lua_toboolean(L, idx);
    return lunar_lua_optbool(L, lunar_lua_opts(L, idx), "keepdim", false);
}

static int reduce(lua_State *L, lunar_reduce_op op, const char *fname, double param) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    bool opts_first = lunar_lua_opts(L, 2) != 0 && lua_rawlen(L, 2) == 0;
    uint32_t mask = opts_first ? 0 : dims_mask(L, 2, t->ndim, fname);
    bool keep = keepdim_arg(L, opts_first ? 2 : 3);
    if (lunar_reduce(&r, op, t, mask, keep, param) != LUNAR_OK) {
        /* amax/amin share max/min's core op: say which function the user called */
        const char *msg = lunar_last_error();
        size_t n = strlen(fname);
        if (strncmp(msg, fname, n) == 0 && msg[n] == ':') return lunar_lua_raise(L);
        return luaL_error(L, "%s: %s", fname, msg);
    }
    lunar_lua_push(L, r);
    return 1;
}

static int l_sum(lua_State *L) { return reduce(L, LUNAR_OP_SUM, "sum", 0); }
static int l_mean(lua_State *L) { return reduce(L, LUNAR_OP_MEAN, "mean", 0); }
static int l_prod(lua_State *L) { return reduce(L, LUNAR_OP_PROD, "prod", 0); }
static int l_all(lua_State *L) { return reduce(L, LUNAR_OP_ALL, "all", 0); }
static int l_any(lua_State *L) { return reduce(L, LUNAR_OP_ANY, "any", 0); }
static int l_logsumexp(lua_State *L) { return reduce(L, LUNAR_OP_LOGSUMEXP, "logsumexp", 0); }
static int l_amax(lua_State *L) { return reduce(L, LUNAR_OP_MAX, "amax", 0); }
static int l_amin(lua_State *L) { return reduce(L, LUNAR_OP_MIN, "amin", 0); }

/* x:norm(p = 2, dims, keepdim) */
static int l_norm(lua_State *L) {
    double p = 2;
    if (lua_type(L, 2) == LUA_TNUMBER && !lua_isinteger(L, 2)) p = lua_tonumber(L, 2);
    else if (lua_isinteger(L, 2)) p = (double)lua_tointeger(L, 2);
    else if (lua_type(L, 2) == LUA_TSTRING && strcmp(lua_tostring(L, 2), "inf") == 0) p = INFINITY;
    else if (!lua_isnoneornil(L, 2)) return luaL_typeerror(L, 2, "number or 'inf'");
    if (p < 0) return luaL_error(L, "norm: p must be >= 0 (got %f)", p);
    if (lua_gettop(L) >= 2) lua_remove(L, 2);
    return reduce(L, LUNAR_OP_NORM, "norm", p);
}

/* x:var(dims, {unbiased = true, keepdim = false}); correction = 1 when unbiased */
static int var_std(lua_State *L, bool is_std) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    const char *fname = is_std ? "std" : "var";
    int opts = lunar_lua_opts(L, 2) && lua_rawlen(L, 2) == 0 ? 2 : lunar_lua_opts(L, 3);
    uint32_t mask = opts == 2 ? 0 : dims_mask(L, 2, t->ndim, fname);
    bool unbiased = lunar_lua_optbool(L, opts, "unbiased", true);
    if (lua_isboolean(L, 3)) unbiased = lua_toboolean(L, 3);
    bool keep = lunar_lua_optbool(L, opts, "keepdim", false);
    if (lua_isboolean(L, 4)) keep = lua_toboolean(L, 4);
    double correction = lunar_lua_optnumber(L, opts, "correction", unbiased ? 1 : 0);
    LUNAR_LUA_TRY(L, lunar_reduce(&r, LUNAR_OP_VAR, t, mask, keep, correction));
    if (is_std) {
        lunar_tensor *s;
        lunar_status st = lunar_unary(&s, LUNAR_OP_SQRT, r, NULL);
        lunar_tensor_release(r);
        if (st != LUNAR_OK) return lunar_lua_raise(L);
        r = s;
    }
    lunar_lua_push(L, r);
    return 1;
}

static int l_var(lua_State *L) { return var_std(L, false); }
static int l_std(lua_State *L) { return var_std(L, true); }

/* x:max() reduces everything; x:max(dim [, keepdim]) returns values and 1-based indices */
static int max_min(lua_State *L, bool is_min) {
    lunar_tensor *t = lunar_lua_check(L, 1);
    const char *fname = is_min ? "min" : "max";
    if (lua_isnoneornil(L, 2)) return reduce(L, is_min ? LUNAR_OP_MIN : LUNAR_OP_MAX, fname, 0);
    if (lunar_lua_test(L, 2)) /* x:max(y): element-wise, as PyTorch allows */
        return luaL_error(L, "%s: for the element-wise %s of two tensors use %s", fname, fname,
                          is_min ? "minimum" : "maximum");
    int dim = t->ndim ? lunar_lua_checkdim(L, 2, t->ndim) : 0;
    bool keep = keepdim_arg(L, 3);
    lunar_tensor *v, *idx;
    LUNAR_LUA_TRY(L, lunar_max_dim(&v, &idx, t, dim, keep, is_min));
    lunar_lua_push(L, v);
    /* indices are 1-based in Lua */
    lunar_tensor *one;
    lunar_status st = lunar_binary_scalar(&one, LUNAR_OP_ADD, idx, 1, false);
    lunar_tensor_release(idx);
    if (st != LUNAR_OK) return lunar_lua_raise(L);
    lunar_lua_push(L, one);
    return 2;
}

static int l_max(lua_State *L) { return max_min(L, false); }
static int l_min(lua_State *L) { return max_min(L, true); }

static int arg(lua_State *L, bool is_min) {
    lunar_tensor *t = lunar_lua_check(L, 1), *v, *idx, *flat = NULL, *one;
    bool keep = keepdim_arg(L, 3);
    int dim = 0;
    lunar_tensor *src = t;
    if (lua_isnoneornil(L, 2)) { /* over the flattened tensor */
        int64_t n = lunar_tensor_numel(t);
        LUNAR_LUA_TRY(L, lunar_reshape(&flat, t, 1, &n));
        src = flat;
        keep = false;
    } else if (t->ndim) {
        dim = lunar_lua_checkdim(L, 2, t->ndim);
    }
    lunar_status st = lunar_max_dim(&v, &idx, src, dim, keep, is_min);
    lunar_tensor_release(flat);
    if (st != LUNAR_OK) return lunar_lua_raise(L);
    lunar_tensor_release(v);
    st = lunar_binary_scalar(&one, LUNAR_OP_ADD, idx, 1, false);
    lunar_tensor_release(idx);
    if (st != LUNAR_OK) return lunar_lua_raise(L);
    lunar_lua_push(L, one);
    return 1;
}

static int l_argmax(lua_State *L) { return arg(L, false); }
static int l_argmin(lua_State *L) { return arg(L, true); }

/* x:cumsum(dim), x:cumprod(dim): the dim is required, as in PyTorch */
static int scan(lua_State *L, bool is_prod) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r = NULL;
    const char *fname = is_prod ? "cumprod" : "cumsum";
    if (!lua_isinteger(L, 2))
        return luaL_error(L, "%s: dim must be an integer (got %s)", fname, luaL_typename(L, 2));
    int dim = lunar_lua_dim(L, lua_tointeger(L, 2), t->ndim, fname);
    LUNAR_LUA_TRY(L, (is_prod ? lunar_cumprod : lunar_cumsum)(&r, t, dim));
    lunar_lua_push(L, r);
    return 1;
}

static int l_cumsum(lua_State *L) { return scan(L, false); }
static int l_cumprod(lua_State *L) { return scan(L, true); }


static const luaL_Reg module_only[] = {
    {NULL, NULL},
};

static const luaL_Reg both[] = {
    {"sum", l_sum},   {"mean", l_mean},         {"prod", l_prod}, {"all", l_all},
    {"any", l_any},   {"logsumexp", l_logsumexp}, {"amax", l_amax}, {"amin", l_amin},
    {"norm", l_norm}, {"var", l_var},           {"std", l_std},   {"max", l_max},
    {"min", l_min},   {"argmax", l_argmax},     {"argmin", l_argmin},
    {"cumsum", l_cumsum}, {"cumprod", l_cumprod},
    {NULL, NULL},
};

void lunar_lua_open_reduce(lua_State *L) {
    lunar_lua_register(L, both, true, true);
    lunar_lua_register(L, module_only, false, true);
}
