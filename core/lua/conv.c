/*
 * conv.c (binding) - convolution and pooling: conv1d, conv2d, conv_transpose2d,
 * max_pool1d/2d, avg_pool1d/2d, lp_pool2d, adaptive_avg_pool2d. Sizes are an integer or a
 * pair {height, width}; options come in one table, as in PyTorch's keyword arguments.
 */
#include "binding.h"

#include <string.h>

/* An integer or {h, w} at stack index idx into v (an integer fills both). */
static void pair_at(lua_State *L, int idx, const char *fname, const char *key, int n,
                    int64_t *v) {
    if (lua_isinteger(L, idx)) {
        v[0] = v[1] = lua_tointeger(L, idx);
        return;
    }
    if (lua_istable(L, idx) && luaL_len(L, idx) == n) {
        for (int i = 0; i < n; i++) {
            lua_geti(L, idx, i + 1);
            int ok = lua_isinteger(L, -1);
            v[i] = lua_tointeger(L, -1);
            lua_pop(L, 1);
            if (!ok) break;
            if (i == n - 1) return;
        }
    }
    luaL_error(L, "%s: %s must be an integer%s (got %s)", fname, key,
               n == 2 ? " or a pair {h, w}" : "", luaL_typename(L, idx));
}

/* Field key of the options table (0 = none) as a pair; def when absent. */
static void opt_pair(lua_State *L, int opts, const char *fname, const char *key, int n,
                     int64_t def, int64_t *v) {
    v[0] = v[1] = def;
    if (!opts) return;
    if (lua_getfield(L, opts, key) != LUA_TNIL) pair_at(L, lua_gettop(L), fname, key, n, v);
    lua_pop(L, 1);
}

static lunar_conv_params conv_opts(lua_State *L, int opts, const char *fname, int n) {
    lunar_conv_params p = {{1, 1}, {0, 0}, {1, 1}, {0, 0}, 1, false};
    opt_pair(L, opts, fname, "stride", n, 1, p.stride);
    opt_pair(L, opts, fname, "dilation", n, 1, p.dilation);
    opt_pair(L, opts, fname, "output_padding", n, 0, p.output_padding);
    if (opts && lua_getfield(L, opts, "padding") == LUA_TSTRING) {
        const char *s = lua_tostring(L, -1);
        if (strcmp(s, "same") == 0) p.same = true;
        else if (strcmp(s, "valid") != 0)
            luaL_error(L, "%s: padding must be an integer, a pair, \"same\" or \"valid\" (got "
                          "\"%s\")", fname, s);
        lua_pop(L, 1);
    } else {
        if (opts) lua_pop(L, 1);
        opt_pair(L, opts, fname, "padding", n, 0, p.padding);
    }
    if (opts) {
        lua_Number g = lunar_lua_optnumber(L, opts, "groups", 1);
        if (g != (lua_Number)(int64_t)g)
            luaL_error(L, "%s: groups must be an integer (got %f)", fname, (double)g);
        p.groups = (int64_t)g;
    }
    return p;
}

typedef lunar_status (*conv_fn)(lunar_tensor **, lunar_tensor *, lunar_tensor *, lunar_tensor *,
                                const lunar_conv_params *);

static int conv(lua_State *L, conv_fn fn, const char *fname, int n) {
    lunar_tensor *x = lunar_lua_check(L, 1), *w = lunar_lua_check(L, 2), *r;
    lunar_tensor *b = lua_isnoneornil(L, 3) ? NULL : lunar_lua_check(L, 3);
    lunar_conv_params p = conv_opts(L, lunar_lua_opts(L, 4), fname, n);
    LUNAR_LUA_TRY(L, fn(&r, x, w, b, &p));
    lunar_lua_push(L, r);
    return 1;
}

/* lunar.conv2d(x, weight [, bias] [, {stride, padding, dilation, groups}]) */
static int l_conv2d(lua_State *L) { return conv(L, lunar_conv2d, "conv2d", 2); }
/* lunar.conv1d(x, weight [, bias] [, {stride, padding, dilation, groups}]) */
static int l_conv1d(lua_State *L) { return conv(L, lunar_conv1d, "conv1d", 1); }
/* lunar.conv_transpose2d(x, weight [, bias] [, {stride, padding, output_padding, groups,
 * dilation}]) */
static int l_conv_transpose2d(lua_State *L) {
    /* PyTorch 1.13's conv_transpose2d takes no padding strings, "valid" included */
    int opts = lunar_lua_opts(L, 4);
    if (opts && lua_getfield(L, opts, "padding") == LUA_TSTRING)
        luaL_error(L,
                   "conv_transpose2d: padding must be an integer or a pair {h, w} (got "
                   "\"%s\"): PyTorch has no \"same\" or \"valid\" for transposed "
                   "convolution",
                   lua_tostring(L, -1));
    if (opts) lua_pop(L, 1);
    return conv(L, lunar_conv_transpose2d, "conv_transpose2d", 2);
}

/* kernel at idx, then {stride = kernel, padding = 0, dilation = 1, ceil_mode = false,
 * count_include_pad = true} at idx + 1 */
static lunar_pool_params pool_opts(lua_State *L, int idx, const char *fname, int n, int *opts) {
    lunar_pool_params p = {{0, 0}, {0, 0}, {0, 0}, {1, 1}, false, true, 0};
    if (lua_isnoneornil(L, idx)) luaL_error(L, "%s: missing the kernel size", fname);
    pair_at(L, idx, fname, "kernel_size", n, p.kernel);
    *opts = lunar_lua_opts(L, idx + 1);
    opt_pair(L, *opts, fname, "stride", n, 0, p.stride);
    opt_pair(L, *opts, fname, "padding", n, 0, p.padding);
    opt_pair(L, *opts, fname, "dilation", n, 1, p.dilation);
    p.ceil_mode = lunar_lua_optbool(L, *opts, "ceil_mode", false);
    p.count_include_pad = lunar_lua_optbool(L, *opts, "count_include_pad", true);
    return p;
}

typedef lunar_status (*max_fn)(lunar_tensor **, lunar_tensor **, lunar_tensor *,
                               const lunar_pool_params *);

/* Indices go to Lua 1-based. */
static int max_pool(lua_State *L, max_fn fn, const char *fname, int n) {
    lunar_tensor *x = lunar_lua_check(L, 1), *r, *idx = NULL, *idx1 = NULL;
    int opts;
    lunar_pool_params p = pool_opts(L, 2, fname, n, &opts);
    bool want = lunar_lua_optbool(L, opts, "return_indices", false);
    LUNAR_LUA_TRY(L, fn(&r, want ? &idx : NULL, x, &p));
    lunar_lua_push(L, r);
    if (!want) return 1;
    lunar_status st = lunar_binary_scalar(&idx1, LUNAR_OP_ADD, idx, 1, false);
    lunar_tensor_release(idx);
    LUNAR_LUA_TRY(L, st);
    lunar_lua_push(L, idx1);
    return 2;
}

/* lunar.max_pool2d(x, kernel [, {stride, padding, dilation, ceil_mode, return_indices}]) */
static int l_max_pool2d(lua_State *L) { return max_pool(L, lunar_max_pool2d, "max_pool2d", 2); }
static int l_max_pool1d(lua_State *L) { return max_pool(L, lunar_max_pool1d, "max_pool1d", 1); }

typedef lunar_status (*avg_fn)(lunar_tensor **, lunar_tensor *, const lunar_pool_params *);

static int avg_pool(lua_State *L, avg_fn fn, const char *fname, int n) {
    lunar_tensor *x = lunar_lua_check(L, 1), *r;
    int opts;
    lunar_pool_params p = pool_opts(L, 2, fname, n, &opts);
    if (opts && lua_getfield(L, opts, "divisor_override") != LUA_TNIL) {
        /* PyTorch 1.13's avg_pool1d has no divisor_override: say so rather than ignore it */
        if (n == 1) luaL_error(L, "%s: takes no divisor_override (as in PyTorch)", fname);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) == 0)
            luaL_error(L, "%s: divisor_override must be a nonzero integer (got %s)", fname,
                       luaL_tolstring(L, -1, NULL));
        p.divisor_override = lua_tointeger(L, -1);
    }
    if (opts) lua_pop(L, 1);
    LUNAR_LUA_TRY(L, fn(&r, x, &p));
    lunar_lua_push(L, r);
    return 1;
}

/* lunar.avg_pool2d(x, kernel [, {stride, padding, ceil_mode, count_include_pad,
 * divisor_override}]) */
static int l_avg_pool2d(lua_State *L) { return avg_pool(L, lunar_avg_pool2d, "avg_pool2d", 2); }
static int l_avg_pool1d(lua_State *L) { return avg_pool(L, lunar_avg_pool1d, "avg_pool1d", 1); }

/* lunar.lp_pool2d(x, norm_type, kernel [, {stride, ceil_mode}]) */
static int l_lp_pool2d(lua_State *L) {
    lunar_tensor *x = lunar_lua_check(L, 1), *r;
    double norm = luaL_checknumber(L, 2);
    int opts;
    lunar_pool_params p = pool_opts(L, 3, "lp_pool2d", 2, &opts);
    LUNAR_LUA_TRY(L, lunar_lp_pool2d(&r, x, norm, &p));
    lunar_lua_push(L, r);
    return 1;
}

/* lunar.adaptive_avg_pool2d(x, size): size an integer or {oh, ow} */
static int l_adaptive_avg_pool2d(lua_State *L) {
    lunar_tensor *x = lunar_lua_check(L, 1), *r;
    int64_t s[2];
    pair_at(L, 2, "adaptive_avg_pool2d", "output_size", 2, s);
    LUNAR_LUA_TRY(L, lunar_adaptive_avg_pool2d(&r, x, s[0], s[1]));
    lunar_lua_push(L, r);
    return 1;
}

static const luaL_Reg fns[] = {
    {"conv1d", l_conv1d},
    {"conv2d", l_conv2d},
    {"conv_transpose2d", l_conv_transpose2d},
    {"max_pool1d", l_max_pool1d},
    {"max_pool2d", l_max_pool2d},
    {"avg_pool1d", l_avg_pool1d},
    {"avg_pool2d", l_avg_pool2d},
    {"lp_pool2d", l_lp_pool2d},
    {"adaptive_avg_pool2d", l_adaptive_avg_pool2d},
    {NULL, NULL},
};

void lunar_lua_open_conv(lua_State *L) { lunar_lua_register(L, fns, false, true); }
