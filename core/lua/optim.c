/*
 * optim.c (binding) - the fused optimizer step that lua/lunar/optim drives:
 *   lunar.optim_step(kind, param, grad, {s1, s2, s3}, hyper) -> mu_product
 * kind is "sgd", "adagrad", "adadelta", "rmsprop", "adam", "adamax" or "nadam"; the state
 * table holds the kind's slots (core/lunar.h) with nils where unused; hyper holds lr,
 * weight_decay, eps, momentum, dampening, beta1, beta2, lr_decay, momentum_decay,
 * mu_product, step and the flags nesterov, maximize, centered, amsgrad, decoupled.
 */
#include "binding.h"

#include <string.h>

static const char *const kinds[] = {
    "sgd", "adagrad", "adadelta", "rmsprop", "adam", "adamax", "nadam", NULL,
};

static int l_optim_step(lua_State *L) {
    lunar_optim_kind kind = (lunar_optim_kind)luaL_checkoption(L, 1, NULL, kinds);
    lunar_tensor *param = lunar_lua_check(L, 2);
    lunar_tensor *grad = lunar_lua_check(L, 3);
    luaL_checktype(L, 4, LUA_TTABLE);
    luaL_checktype(L, 5, LUA_TTABLE);
    lunar_tensor *state[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 3; k++) {
        lua_rawgeti(L, 4, k + 1);
        if (!lua_isnil(L, -1)) {
            state[k] = lunar_lua_test(L, -1);
            if (!state[k]) return luaL_error(L, "optim_step: state %d is not a tensor", k + 1);
        }
        lua_pop(L, 1);
    }
    lunar_optim_hyper h;
    memset(&h, 0, sizeof h);
    h.lr = lunar_lua_optnumber(L, 5, "lr", 0);
    h.weight_decay = lunar_lua_optnumber(L, 5, "weight_decay", 0);
    h.eps = lunar_lua_optnumber(L, 5, "eps", 0);
    h.momentum = lunar_lua_optnumber(L, 5, "momentum", 0);
    h.dampening = lunar_lua_optnumber(L, 5, "dampening", 0);
    h.beta1 = lunar_lua_optnumber(L, 5, "beta1", 0);
    h.beta2 = lunar_lua_optnumber(L, 5, "beta2", 0);
    h.lr_decay = lunar_lua_optnumber(L, 5, "lr_decay", 0);
    h.momentum_decay = lunar_lua_optnumber(L, 5, "momentum_decay", 0);
    h.mu_product = lunar_lua_optnumber(L, 5, "mu_product", 1);
    h.step = (int64_t)lunar_lua_optnumber(L, 5, "step", 1);
    h.nesterov = lunar_lua_optbool(L, 5, "nesterov", false);
    h.maximize = lunar_lua_optbool(L, 5, "maximize", false);
    h.centered = lunar_lua_optbool(L, 5, "centered", false);
    h.amsgrad = lunar_lua_optbool(L, 5, "amsgrad", false);
    h.decoupled = lunar_lua_optbool(L, 5, "decoupled", false);
    LUNAR_LUA_TRY(L, lunar_optim_step(kind, param, grad, state, &h));
    lua_pushnumber(L, h.mu_product);
    return 1;
}

static const luaL_Reg optim_functions[] = {
    {"optim_step", l_optim_step},
    {NULL, NULL},
};

void lunar_lua_open_optim(lua_State *L) { lunar_lua_register(L, optim_functions, false, true); }
