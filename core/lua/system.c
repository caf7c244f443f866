/*
 * system.c (binding) - threads and memory: what governs the process rather than a tensor.
 */
#include "binding.h"

/* lunar.set_num_threads(n): our OpenMP loops and OpenBLAS both use n threads. */
static int l_set_num_threads(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    if (n < 1) return luaL_error(L, "set_num_threads: n must be >= 1 (got %d)", (int)n);
    lunar_set_num_threads((int)n);
    return 0;
}

static int l_get_num_threads(lua_State *L) {
    lua_pushinteger(L, lunar_get_num_threads());
    return 1;
}

/* lunar.blas_core(): the kernel set OpenBLAS runs ("SkylakeX", "Haswell", ...), or nil
 * when lunar was built against another BLAS */
static int l_blas_core(lua_State *L) {
    const char *name = lunar_blas_core();
    if (name)
        lua_pushstring(L, name);
    else
        lua_pushnil(L);
    return 1;
}

/* lunar.memory_stats(): {live = bytes held by tensors, cached = bytes kept for reuse} */
static int l_memory_stats(lua_State *L) {
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, lunar_live_bytes());
    lua_setfield(L, -2, "live");
    lua_pushinteger(L, lunar_cached_bytes());
    lua_setfield(L, -2, "cached");
    return 1;
}

/* lunar.empty_cache(): returns the host allocator's cached blocks and the OpenCL buffer
 * pools to the system. */
static int l_empty_cache(lua_State *L) {
    (void)L;
    lunar_empty_cache();
    lunar_opencl_empty_cache();
    return 0;
}

static const luaL_Reg functions[] = {
    {"set_num_threads", l_set_num_threads},
    {"get_num_threads", l_get_num_threads},
    {"blas_core", l_blas_core},
    {"memory_stats", l_memory_stats},
    {"empty_cache", l_empty_cache},
    {NULL, NULL},
};

void lunar_lua_open_system(lua_State *L) { lunar_lua_register(L, functions, false, true); }
