/*
 * autograd.c (binding) - backward, grad mode (no_grad as a call wrapper or a to-be-closed
 * guard), autograd.grad, and gradient hooks that call Lua functions.
 */
#include "binding.h"

#include <stdlib.h>

/* loss:backward([grad] [, retain_graph]) or loss:backward({grad =, retain_graph =}) */
static int t_backward(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1);
    lunar_tensor *g = lunar_lua_test(L, 2);
    int opts = g ? lunar_lua_opts(L, 3) : lunar_lua_opts(L, 2);
    bool retain = lunar_lua_optbool(L, opts, "retain_graph", false);
    int pos = g || lua_isnil(L, 2) ? 3 : 2; /* backward(grad, true) or backward(nil, true) */
    if (lua_isboolean(L, pos)) retain = lua_toboolean(L, pos);
    if (!g && opts) {
        lua_getfield(L, opts, "grad");
        g = lunar_lua_test(L, -1);
        lua_pop(L, 1);
    }
    LUNAR_LUA_TRY(L, lunar_backward(t, g, retain));
    return 0;
}

/* ---- grad mode ---- */

#define GUARD_MT "lunar.GradGuard"

static int guard_close(lua_State *L) {
    int *prev = luaL_checkudata(L, 1, GUARD_MT);
    if (*prev >= 0) lunar_set_grad_enabled(*prev);
    *prev = -1;
    return 0;
}

/* Runs fn(...) with grad mode set to on, restoring it even when fn raises. */
static int with_grad_mode(lua_State *L, bool on) {
    if (lua_isnoneornil(L, 1)) { /* local _ <close> = lunar.no_grad() */
        int *prev = lua_newuserdatauv(L, sizeof *prev, 0);
        *prev = lunar_set_grad_enabled(on);
        luaL_setmetatable(L, GUARD_MT);
        return 1;
    }
    luaL_checktype(L, 1, LUA_TFUNCTION);
    bool prev = lunar_set_grad_enabled(on);
    int base = lua_gettop(L);
    int st = lua_pcall(L, base - 1, LUA_MULTRET, 0);
    lunar_set_grad_enabled(prev);
    if (st != LUA_OK) return lua_error(L);
    return lua_gettop(L);
}

static int l_no_grad(lua_State *L) { return with_grad_mode(L, false); }
static int l_enable_grad(lua_State *L) { return with_grad_mode(L, true); }

static int l_set_grad_enabled(lua_State *L) {
    lua_pushboolean(L, lunar_set_grad_enabled(lua_toboolean(L, 1)));
    return 1;
}

static int l_is_grad_enabled(lua_State *L) {
    lua_pushboolean(L, lunar_grad_enabled());
    return 1;
}

/* ---- autograd.grad(outputs, inputs [, {grad_outputs =, retain_graph =}]) ---- */

static int collect(lua_State *L, int idx, lunar_tensor ***out, const char *what) {
    if (lunar_lua_test(L, idx)) {
        *out = malloc(sizeof **out);
        (*out)[0] = lunar_lua_check(L, idx);
        return 1;
    }
    luaL_checktype(L, idx, LUA_TTABLE);
    int n = (int)lua_rawlen(L, idx);
    if (n == 0) luaL_error(L, "autograd.grad: no %s", what);
    *out = malloc(sizeof **out * (size_t)n);
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, idx, i + 1);
        (*out)[i] = lunar_lua_test(L, -1);
        lua_pop(L, 1);
        if (!(*out)[i]) {
            free(*out);
            luaL_error(L, "autograd.grad: %s %d is not a tensor", what, i + 1);
        }
    }
    return n;
}

static int l_grad(lua_State *L) {
    bool single = lunar_lua_test(L, 2) != NULL;
    lunar_tensor **outs, **ins, **gouts = NULL;
    int n_out = collect(L, 1, &outs, "output");
    int n_in = collect(L, 2, &ins, "input");
    int opts = lunar_lua_opts(L, 3);
    bool retain = lunar_lua_optbool(L, opts, "retain_graph", false);
    if (opts) {
        lua_getfield(L, opts, "grad_outputs");
        if (!lua_isnil(L, -1)) collect(L, lua_gettop(L), &gouts, "grad_output");
        lua_pop(L, 1);
    }
    lunar_tensor **grads = calloc((size_t)n_in, sizeof *grads);
    lunar_status st = lunar_autograd_grad(n_out, outs, gouts, n_in, ins, grads, retain);
    free(outs);
    free(ins);
    free(gouts);
    if (st != LUNAR_OK) {
        free(grads);
        return lunar_lua_raise(L);
    }
    if (single) {
        lunar_lua_push(L, grads[0]);
    } else {
        lua_createtable(L, n_in, 0);
        for (int i = 0; i < n_in; i++) {
            lunar_lua_push(L, grads[i]);
            lua_rawseti(L, -2, i + 1);
        }
    }
    free(grads);
    return 1;
}

/* ---- hooks ---- */

typedef struct lua_hook {
    lua_State *L;
    int ref;
} lua_hook;

static lua_State *hook_state;

static lunar_status call_hook(void *ud, lunar_tensor *grad, lunar_tensor **replacement) {
    lua_hook *h = ud;
    lua_State *L = hook_state ? hook_state : h->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->ref);
    lunar_tensor_retain(grad);
    lunar_lua_push(L, grad);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        lunar_status st = lunar_fail(LUNAR_ERR_AUTOGRAD, "hook: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return st;
    }
    lunar_tensor *r = lunar_lua_test(L, -1);
    if (r) {
        if (!lunar_shape_equal(r->ndim, r->shape, grad->ndim, grad->shape)) {
            lua_pop(L, 1);
            return lunar_fail(LUNAR_ERR_SHAPE, "hook: returned a gradient of another shape");
        }
        lunar_tensor_retain(r);
        *replacement = r;
    } else if (!lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return lunar_fail(LUNAR_ERR_AUTOGRAD, "hook: must return a tensor or nil");
    }
    lua_pop(L, 1);
    return LUNAR_OK;
}

static void drop_hook(void *ud) {
    lua_hook *h = ud;
    luaL_unref(h->L, LUA_REGISTRYINDEX, h->ref);
    free(h);
}

/* t:register_hook(fn): fn(grad) runs when t's gradient is computed; it may return a
 * replacement. Hooks on a tensor live as long as the tensor (or its graph). */
static int t_register_hook(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    if (!lunar_tensor_requires_grad(t))
        return luaL_error(L, "register_hook: the tensor does not require grad");
    lua_hook *ud = malloc(sizeof *ud);
    lunar_hook *hk = malloc(sizeof *hk);
    if (!ud || !hk) {
        free(ud);
        free(hk);
        return luaL_error(L, "register_hook: out of memory");
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    ud->L = lua_tothread(L, -1);
    lua_pop(L, 1);
    lua_pushvalue(L, 2);
    ud->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    hk->fn = call_hook;
    hk->drop = drop_hook;
    hk->ud = ud;
    lunar_hook **list = t->grad_fn ? &t->grad_fn->hooks : &t->hooks;
    hk->next = NULL;
    while (*list) list = &(*list)->next;
    *list = hk;
    return 0;
}

static const luaL_Reg methods[] = {
    {"backward", t_backward},
    {"register_hook", t_register_hook},
    {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"no_grad", l_no_grad},
    {"enable_grad", l_enable_grad},
    {"set_grad_enabled", l_set_grad_enabled},
    {"is_grad_enabled", l_is_grad_enabled},
    {"autograd_grad", l_grad},
    {NULL, NULL},
};

void lunar_lua_open_autograd(lua_State *L) {
    lunar_lua_register(L, methods, true, false);
    lunar_lua_register(L, functions, false, true);
    luaL_newmetatable(L, GUARD_MT);
    lua_pushcfunction(L, guard_close);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, guard_close);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);
}
