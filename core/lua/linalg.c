/*
 * linalg.c (binding) - matrix products.
 */
#include "binding.h"

static int l_matmul(lua_State *L) {
    lunar_tensor *r;
    LUNAR_LUA_TRY(L, lunar_matmul(&r, lunar_lua_check(L, 1), lunar_lua_check(L, 2)));
    lunar_lua_push(L, r);
    return 1;
}

static const luaL_Reg both[] = {
    {"matmul", l_matmul},
    {NULL, NULL},
};

void lunar_lua_open_linalg(lua_State *L) { lunar_lua_register(L, both, true, true); }
