/*
 * index.c (binding) - t[i] and t[i] = v.
 */
#include "binding.h"

/* t[i]: selects along dim 1 (1-based, negative from the end); a 1-d tensor gives a number */
int lunar_lua_index_get(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    if (!lua_isinteger(L, 2)) return luaL_error(L, "index: expected an integer (got %s)",
                                                luaL_typename(L, 2));
    if (t->ndim == 0) return luaL_error(L, "index: cannot index a 0-d tensor");
    lua_Integer i = lua_tointeger(L, 2);
    if (i < 0) i += t->shape[0] + 1;
    LUNAR_LUA_TRY(L, lunar_select(&r, t, 0, i - 1));
    if (r->ndim == 0) {
        lunar_lua_push(L, r);
        lua_getfield(L, -1, "item");
        lua_insert(L, -2);
        lua_call(L, 1, 1);
        return 1;
    }
    lunar_lua_push(L, r);
    return 1;
}

int lunar_lua_index_set(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    if (!lua_isinteger(L, 2)) return luaL_error(L, "index: expected an integer (got %s)",
                                                luaL_typename(L, 2));
    if (t->ndim == 0) return luaL_error(L, "index: cannot index a 0-d tensor");
    lua_Integer i = lua_tointeger(L, 2);
    if (i < 0) i += t->shape[0] + 1;
    LUNAR_LUA_TRY(L, lunar_select(&r, t, 0, i - 1));
    lunar_lua_push(L, r);
    lunar_tensor *src = lunar_lua_check_operand(L, 3, r);
    lunar_status st = lunar_copy_(r, src);
    lunar_tensor_release(src);
    if (st != LUNAR_OK) return lunar_lua_raise(L);
    return 0;
}

void lunar_lua_open_index(lua_State *L) { (void)L; }
