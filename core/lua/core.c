/*
 * core.c - luaopen_lunar_core: the module table, the tensor metatable, and the helpers
 * every binding file uses (argument checks, pushing tensors, raising errors).
 */
#include "binding.h"

#include <string.h>

static lunar_dtype default_dtype = LUNAR_F32;
static lua_State *main_state;
/* A full collection runs when live tensor bytes pass this: 1.5x what survived the last one,
 * at least 16 MB. A training step's temporaries are then freed within a few steps, and their
 * blocks come back from the cache warm (bench/train.lua mlp, 1 thread: 59k -> 71k samples/s,
 * peak RSS 80 -> 29 MB, against a 64 MB floor and 2x). */
#define GC_FLOOR ((int64_t)16 << 20)
static int64_t gc_threshold = GC_FLOOR;
/* Between full collections, one incremental step of the collector each time the live tensor
 * bytes have grown by GC_STEP_BYTES: Lua paces itself by the 48-byte boxes it sees, so a loop
 * of small ops piled up ~10^4 dead tensors (their structs and data) per cycle, a working set
 * that pushed a batch-1 MLP's weights out of the cache (bench/train.lua infer: 31 -> 16 us
 * once the Lua side allocated a little less; tiny add ~0.26 -> ~0.20 us). */
#define GC_STEP_BYTES ((int64_t)32 << 10)
static int64_t step_mark; /* live bytes after the last step or collection */
/* The tensor metatable by registry index: luaL_testudata looks it up by name, and the
 * string lookup (with its strcmp) was a tenth of a tiny op's instructions. */
static int mt_ref = LUA_NOREF;
static const void *mt_ptr; /* the same metatable, for a check that pushes nothing extra */

lunar_dtype lunar_lua_default_dtype(void) { return default_dtype; }
void lunar_lua_set_default_dtype(lunar_dtype dt) { default_dtype = dt; }

int lunar_lua_raise(lua_State *L) { return luaL_error(L, "%s", lunar_last_error()); }

lunar_tensor *lunar_lua_test(lua_State *L, int idx) {
    lunar_tensor **box = lua_touserdata(L, idx);
    if (!box || !lua_getmetatable(L, idx)) return NULL;
    bool same = lua_topointer(L, -1) == mt_ptr;
    lua_pop(L, 1);
    if (!same) return NULL;
    if (!*box) luaL_error(L, "tensor used after it was closed");
    return *box;
}

lunar_tensor *lunar_lua_check(lua_State *L, int idx) {
    lunar_tensor *t = lunar_lua_test(L, idx);
    if (!t) luaL_typeerror(L, idx, "tensor");
    return t;
}

lunar_tensor *lunar_lua_check_operand(lua_State *L, int idx, const lunar_tensor *like) {
    lunar_tensor *t = lunar_lua_test(L, idx);
    if (t) {
        lunar_tensor_retain(t);
        return t;
    }
    if (lua_isboolean(L, idx)) {
        LUNAR_LUA_TRY(L, lunar_scalar(&t, lua_toboolean(L, idx), LUNAR_BOOL));
        return t;
    }
    if (!lua_isnumber(L, idx)) luaL_typeerror(L, idx, "tensor or number");
    /* a number takes like's dtype, unless that would lose it: a float beside an integer
     * tensor stays a float, and a number beside a bool tensor is not a bool (bool:add_(2)
     * must refuse, as in PyTorch) */
    lunar_dtype dt = lua_isinteger(L, idx) ? LUNAR_I64 : default_dtype;
    if (like && like->dtype != LUNAR_BOOL &&
        (lunar_dtype_is_float(like->dtype) || lua_isinteger(L, idx)))
        dt = like->dtype;
    LUNAR_LUA_TRY(L, lunar_tensor_new(&t, 0, NULL, dt, like));
    if (LUNAR_KERNEL(lunar_tensor_backend(t), fill, t, lua_tonumber(L, idx)) != LUNAR_OK) {
        lunar_tensor_release(t);
        lunar_lua_raise(L);
    }
    return t;
}

void lunar_lua_push(lua_State *L, lunar_tensor *t) {
    if (!t) {
        lua_pushnil(L);
        return;
    }
    /* Lua's collector cannot see tensor memory: step it when the live bytes have grown */
    int64_t live = lunar_live_bytes();
    if (live > gc_threshold) {
        lua_gc(L, LUA_GCCOLLECT);
        live = lunar_live_bytes();
        gc_threshold = live + live / 2 > GC_FLOOR ? live + live / 2 : GC_FLOOR;
        step_mark = live;
    } else if (live > step_mark + GC_STEP_BYTES) {
        lua_gc(L, LUA_GCSTEP, 0); /* one basic step */
        step_mark = lunar_live_bytes();
    } else if (live < step_mark) {
        step_mark = live;
    }
    lunar_tensor **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = t;
    lua_rawgeti(L, LUA_REGISTRYINDEX, mt_ref);
    lua_setmetatable(L, -2);
}

/* ---- arguments ---- */

int lunar_lua_dim(lua_State *L, lua_Integer d, int ndim, const char *fname) {
    int n = ndim > 0 ? ndim : 1;
    if (d == 0 || d > n || d < -n)
        return luaL_error(L, "%s: dim %d out of range for a %d-d tensor (dims are 1-based; "
                             "negative counts from the end)",
                          fname, (int)d, ndim);
    return d > 0 ? (int)d - 1 : (int)d + n;
}

static const char *current_function(lua_State *L) {
    lua_Debug ar;
    if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.name) return ar.name;
    return "?";
}

int lunar_lua_checkdim(lua_State *L, int idx, int ndim) {
    return lunar_lua_dim(L, luaL_checkinteger(L, idx), ndim, current_function(L));
}

int lunar_lua_optdim(lua_State *L, int idx, int ndim, int def) {
    if (lua_isnoneornil(L, idx)) return def;
    return lunar_lua_checkdim(L, idx, ndim);
}

static const struct {
    const char *name;
    lunar_dtype dt;
} dtype_names[] = {
    {"float32", LUNAR_F32}, {"float", LUNAR_F32},  {"float64", LUNAR_F64}, {"double", LUNAR_F64},
    {"int32", LUNAR_I32},   {"int", LUNAR_I32},    {"int64", LUNAR_I64},   {"long", LUNAR_I64},
    {"uint8", LUNAR_U8},    {"byte", LUNAR_U8},    {"bool", LUNAR_BOOL},
};

lunar_dtype lunar_lua_dtype_from_name(lua_State *L, const char *name) {
    for (size_t i = 0; i < sizeof dtype_names / sizeof dtype_names[0]; i++)
        if (strcmp(name, dtype_names[i].name) == 0) return dtype_names[i].dt;
    return (lunar_dtype)luaL_error(L, "unknown dtype '%s' (float32, float64, int32, int64, "
                                      "uint8, bool)",
                                   name);
}

lunar_dtype lunar_lua_optdtype(lua_State *L, int idx, lunar_dtype def) {
    if (lua_isnoneornil(L, idx)) return def;
    return lunar_lua_dtype_from_name(L, luaL_checkstring(L, idx));
}

int lunar_lua_opts(lua_State *L, int idx) {
    if (lua_type(L, idx) != LUA_TTABLE) return 0;
    return lua_absindex(L, idx);
}

bool lunar_lua_optbool(lua_State *L, int opts, const char *key, bool def) {
    if (!opts) return def;
    lua_getfield(L, opts, key);
    bool v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

lua_Number lunar_lua_optnumber(lua_State *L, int opts, const char *key, lua_Number def) {
    if (!opts) return def;
    lua_getfield(L, opts, key);
    lua_Number v = def;
    if (!lua_isnil(L, -1)) {
        if (!lua_isnumber(L, -1))
            luaL_error(L, "option '%s' must be a number (got %s)", key, luaL_typename(L, -1));
        v = lua_tonumber(L, -1);
    }
    lua_pop(L, 1);
    return v;
}

const char *lunar_lua_optstring(lua_State *L, int opts, const char *key, const char *def) {
    if (!opts) return def;
    lua_getfield(L, opts, key);
    const char *v = def;
    if (!lua_isnil(L, -1)) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "option '%s' must be a string (got %s)", key, luaL_typename(L, -1));
        v = lua_tostring(L, -1); /* the options table keeps the string alive */
    }
    lua_pop(L, 1);
    return v;
}

int lunar_lua_shape(lua_State *L, int idx, int *ndim, int64_t *shape) {
    int n = 0;
    if (lua_type(L, idx) == LUA_TTABLE && lua_rawlen(L, idx) > 0) {
        int len = (int)lua_rawlen(L, idx);
        if (len > LUNAR_MAX_DIMS) luaL_error(L, "shape: at most %d dims", LUNAR_MAX_DIMS);
        for (int i = 1; i <= len; i++) {
            lua_rawgeti(L, idx, i);
            if (!lua_isinteger(L, -1))
                luaL_error(L, "shape: size %d must be an integer (got %s)", i,
                           luaL_typename(L, -1));
            shape[n++] = lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        idx++;
    } else {
        while (lua_type(L, idx) == LUA_TNUMBER) {
            if (!lua_isinteger(L, idx))
                luaL_error(L, "shape: size %d must be an integer (got %s)", n + 1,
                           lua_tostring(L, idx));
            if (n == LUNAR_MAX_DIMS) luaL_error(L, "shape: at most %d dims", LUNAR_MAX_DIMS);
            shape[n++] = lua_tointeger(L, idx);
            idx++;
        }
    }
    for (int d = 0; d < n; d++)
        if (shape[d] < 0) luaL_error(L, "shape: negative size %d in dim %d", (int)shape[d], d + 1);
    *ndim = n;
    return idx;
}

void lunar_lua_register(lua_State *L, const luaL_Reg *fns, bool methods, bool functions) {
    for (; fns->name; fns++) {
        if (methods) {
            lua_pushcfunction(L, fns->func);
            lua_setfield(L, 2, fns->name);
        }
        if (functions) {
            lua_pushcfunction(L, fns->func);
            lua_setfield(L, 1, fns->name);
        }
    }
}

/* ---- memory pressure ---- */

static void collect_on_oom(void) {
    if (main_state) lua_gc(main_state, LUA_GCCOLLECT);
}

/* ---- the metatable ---- */

static int tensor_release(lua_State *L) {
    lunar_tensor **box = lua_touserdata(L, 1); /* only ever a tensor's __gc or __close */
    if (!box) return 0;
    lunar_tensor_release(*box); /* __gc and __close share this; the NULL makes it idempotent */
    *box = NULL;
    return 0;
}

int luaopen_lunar_core(lua_State *L) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_MAINTHREAD);
    main_state = lua_tothread(L, -1);
    lua_pop(L, 1);
    lunar_oom_handler = collect_on_oom;

    lua_settop(L, 0);
    lua_newtable(L); /* 1: the module */
    lua_newtable(L); /* 2: the methods */
    luaL_newmetatable(L, LUNAR_TENSOR_MT); /* 3 */
    lua_pushcfunction(L, tensor_release);
    lua_setfield(L, 3, "__gc");
    lua_pushcfunction(L, tensor_release);
    lua_setfield(L, 3, "__close");
    lua_pushstring(L, "lunar.Tensor");
    lua_setfield(L, 3, "__name");
    mt_ptr = lua_topointer(L, -1);
    mt_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* pops the metatable; the registry keeps it */

    lunar_lua_open_tensor(L);
    lunar_lua_open_ops(L);
    lunar_lua_open_reduce(L);
    lunar_lua_open_linalg(L);
    lunar_lua_open_shape(L);
    lunar_lua_open_index(L);
    lunar_lua_open_random(L);
    lunar_lua_open_io(L);
    lunar_lua_open_autograd(L);
    lunar_lua_open_system(L);
    lunar_lua_open_conv(L);
    lunar_lua_open_data(L);
    lunar_lua_open_optim(L);
    lunar_lua_open_nn(L);
    lunar_lua_open_device(L);

    lua_pushvalue(L, 2);
    lua_setfield(L, 1, "Tensor"); /* the methods table: Lua code adds methods here */
    luaL_getmetatable(L, LUNAR_TENSOR_MT);
    lua_setfield(L, 1, "metatable");
    lua_pushstring(L, LUNAR_VERSION);
    lua_setfield(L, 1, "version");
    lua_settop(L, 1);
    return 1;
}
