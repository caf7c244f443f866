/*
 * linalg.c (binding) - matrix products: matmul, mm, bmm, mv, dot, outer, addmm, linear.
 */
#include "binding.h"

typedef lunar_status (*pair_fn)(lunar_tensor **, lunar_tensor *, lunar_tensor *);

static int pair(lua_State *L, pair_fn fn) {
    lunar_tensor *r;
    LUNAR_LUA_TRY(L, fn(&r, lunar_lua_check(L, 1), lunar_lua_check(L, 2)));
    lunar_lua_push(L, r);
    return 1;
}

static int l_matmul(lua_State *L) { return pair(L, lunar_matmul); }
static int l_mm(lua_State *L) { return pair(L, lunar_mm); }
static int l_bmm(lua_State *L) { return pair(L, lunar_bmm); }
static int l_mv(lua_State *L) { return pair(L, lunar_mv); }
static int l_dot(lua_State *L) { return pair(L, lunar_dot); }
static int l_outer(lua_State *L) { return pair(L, lunar_outer); }

/* lunar.addmm(input, a, b, {beta = 1, alpha = 1}) = beta * input + alpha * a @ b */
static int l_addmm(lua_State *L) {
    lunar_tensor *in = lunar_lua_check(L, 1), *a = lunar_lua_check(L, 2);
    lunar_tensor *b = lunar_lua_check(L, 3), *r;
    int opts = lunar_lua_opts(L, 4);
    double beta = lunar_lua_optnumber(L, opts, "beta", 1);
    double alpha = lunar_lua_optnumber(L, opts, "alpha", 1);
    LUNAR_LUA_TRY(L, lunar_addmm(&r, in, a, b, beta, alpha));
    lunar_lua_push(L, r);
    return 1;
}

/* lunar.linear(x, weight [, bias]) = x @ weight^T + bias; weight is [out, in] */
static int l_linear(lua_State *L) {
    lunar_tensor *x = lunar_lua_check(L, 1), *w = lunar_lua_check(L, 2), *r;
    lunar_tensor *b = lua_isnoneornil(L, 3) ? NULL : lunar_lua_check(L, 3);
    LUNAR_LUA_TRY(L, lunar_linear(&r, x, w, b));
    lunar_lua_push(L, r);
    return 1;
}

static const luaL_Reg both[] = {
    {"matmul", l_matmul}, {"mm", l_mm},       {"bmm", l_bmm},       {"mv", l_mv},
    {"dot", l_dot},       {"outer", l_outer}, {"addmm", l_addmm},   {"linear", l_linear},
    {NULL, NULL},
};

void lunar_lua_open_linalg(lua_State *L) { lunar_lua_register(L, both, true, true); }
