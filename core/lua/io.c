/*
 * io.c (binding) - the io family: lunar.save and lunar.load of safetensors files.
 */
#include "binding.h"

#include <string.h>

#define ST_RESULT_MT "lunar.safetensors_result"
#define MAX_NESTING 32 /* state dicts nest a few levels; deeper is a cycle or a mistake */

/* Lua strings may hold NULs; the file's names and values are C strings. */
static const char *check_clean_string(lua_State *L, int idx, const char *path, const char *what) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    if (strlen(s) != len) luaL_error(L, "save: %s: %s '%s' contains a NUL byte", path, what, s);
    return s;
}

/* Appends (prefix .. key) -> value pairs of the table at idx, descending into sub-tables,
 * to the arrays `names` and `tensors` (stack indices). */
static void flatten(lua_State *L, int idx, const char *prefix, int names, int tensors, int depth,
                    const char *path) {
    if (depth > MAX_NESTING)
        luaL_error(L, "save: %s: tables nested more than %d deep at '%s' (a cycle?)", path,
                   MAX_NESTING, prefix);
    luaL_checkstack(L, 8, "save: nesting too deep");
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        /* the key is copied to a string first: lua_next needs the original key unchanged */
        int kt = lua_type(L, -2);
        if (kt == LUA_TSTRING) lua_pushvalue(L, -2);
        else if (kt == LUA_TNUMBER && lua_isinteger(L, -2))
            lua_pushfstring(L, "%I", (LUAI_UACINT)lua_tointeger(L, -2));
        else
            luaL_error(L, "save: %s: a key of type %s under '%s' (names must be strings)", path,
                       luaL_typename(L, -2), prefix[0] ? prefix : "(top)");
        if (prefix[0]) {
            lua_pushfstring(L, "%s.%s", prefix, lua_tostring(L, -1));
            lua_remove(L, -2);
        }
        const char *name = check_clean_string(L, -1, path, "name");
        if (lunar_lua_test(L, -2)) {
            lua_rawseti(L, names, (lua_Integer)lua_rawlen(L, names) + 1);
            lua_rawseti(L, tensors, (lua_Integer)lua_rawlen(L, tensors) + 1);
            continue; /* the key is on top again */
        }
        if (lua_type(L, -2) == LUA_TTABLE) {
            flatten(L, lua_absindex(L, -2), name, names, tensors, depth + 1, path);
            lua_pop(L, 2);
            continue;
        }
        luaL_error(L, "save: %s: '%s' is a %s; expected a tensor or a table of tensors", path,
                   name, luaL_typename(L, -2));
    }
}

/*
 * lunar.save(path, tensors [, metadata])
 *
 * Writes tensors to path as a safetensors file that PyTorch (safetensors.torch.load_file)
 * and every other safetensors reader loads; byte-identical to a writer that sorts its keys.
 *   tensors   a tensor (stored under the name "tensor"), or a table name -> tensor; nested
 *             tables are flattened with dotted names: {fc = {weight = W}} -> "fc.weight"
 *   metadata  optional table of string keys -> strings (numbers are converted with tostring)
 * The file appears atomically (temp file, fsync, rename): after an error path is untouched.
 *
 *   lunar.save("model.safetensors", model:state_dict(), {epoch = 3})
 *   lunar.save("x.safetensors", lunar.randn(2, 3))
 */
static int l_save(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    lua_settop(L, 3);
    lua_newtable(L); /* 4: names */
    lua_newtable(L); /* 5: tensors */
    if (lunar_lua_test(L, 2)) {
        lua_pushstring(L, "tensor");
        lua_rawseti(L, 4, 1);
        lua_pushvalue(L, 2);
        lua_rawseti(L, 5, 1);
    } else if (lua_type(L, 2) == LUA_TTABLE) {
        flatten(L, 2, "", 4, 5, 0, path);
    } else {
        return luaL_error(L, "save: %s: expected a tensor or a table of tensors (got %s)", path,
                          luaL_typename(L, 2));
    }
    lua_newtable(L); /* 6: metadata keys */
    lua_newtable(L); /* 7: metadata values */
    if (!lua_isnil(L, 3)) {
        if (lua_type(L, 3) != LUA_TTABLE)
            return luaL_error(L, "save: %s: metadata must be a table of strings (got %s)", path,
                              luaL_typename(L, 3));
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            if (lua_type(L, -2) != LUA_TSTRING)
                return luaL_error(L, "save: %s: metadata keys must be strings (got %s)", path,
                                  luaL_typename(L, -2));
            const char *key = check_clean_string(L, -2, path, "metadata key");
            int vt = lua_type(L, -1);
            if (vt != LUA_TSTRING && vt != LUA_TNUMBER)
                return luaL_error(L, "save: %s: metadata '%s' must be a string or a number "
                                     "(got %s)",
                                  path, key, luaL_typename(L, -1));
            luaL_tolstring(L, -1, NULL); /* a new string; the table's number stays as it was */
            check_clean_string(L, -1, path, "metadata value");
            lua_rawseti(L, 7, (lua_Integer)lua_rawlen(L, 7) + 1);
            lua_pop(L, 1);
            lua_pushvalue(L, -1);
            lua_rawseti(L, 6, (lua_Integer)lua_rawlen(L, 6) + 1);
        }
    }
    /* the C arrays live in a userdata, so a Lua error below cannot leak them; the strings
     * and tensors they point to stay anchored in tables 4-7 */
    lua_Integer n = (lua_Integer)lua_rawlen(L, 4), n_meta = (lua_Integer)lua_rawlen(L, 6);
    const char **strs = lua_newuserdatauv(L, sizeof *strs * (size_t)(n + 2 * n_meta + 1), 0);
    lunar_tensor **ts = lua_newuserdatauv(L, sizeof *ts * (size_t)(n + 1), 0);
    for (lua_Integer i = 0; i < n; i++) {
        lua_rawgeti(L, 4, i + 1);
        strs[i] = lua_tostring(L, -1);
        lua_rawgeti(L, 5, i + 1);
        ts[i] = lunar_lua_check(L, -1);
        lua_pop(L, 2);
    }
    for (lua_Integer i = 0; i < n_meta; i++) {
        lua_rawgeti(L, 6, i + 1);
        strs[n + i] = lua_tostring(L, -1);
        lua_rawgeti(L, 7, i + 1);
        strs[n + n_meta + i] = lua_tostring(L, -1);
        lua_pop(L, 2);
    }
    LUNAR_LUA_TRY(L, lunar_save_safetensors(path, n, strs, ts, n_meta, strs + n,
                                            strs + n + n_meta));
    return 0;
}

static int result_gc(lua_State *L) {
    lunar_safetensors **box = luaL_checkudata(L, 1, ST_RESULT_MT);
    lunar_safetensors_free(*box);
    *box = NULL;
    return 0;
}

/*
 * lunar.load(path) -> tensors, metadata
 *
 * Reads a safetensors file: tensors is a table name -> tensor (names as stored, dotted
 * names are not unflattened), metadata a table of strings (empty when the file has none).
 * Every length and offset is checked; a corrupt file raises an error naming load, the path
 * and the problem. Reads F32, F64, I32, I64, U8 and BOOL.
 *
 *   local sd, meta = lunar.load("model.safetensors")
 *   model:load_state_dict(sd); print(meta.epoch)
 */
static int l_load(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    lunar_safetensors **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = NULL;
    luaL_setmetatable(L, ST_RESULT_MT); /* frees the result if a Lua error cuts us short */
    LUNAR_LUA_TRY(L, lunar_load_safetensors(box, path));
    lunar_safetensors *r = *box;
    lua_createtable(L, 0, r->n > 0x7fffffff ? 0 : (int)r->n);
    for (int64_t k = 0; k < r->n; k++) {
        lunar_lua_push(L, r->tensors[k]);
        r->tensors[k] = NULL; /* the userdata owns it now */
        lua_setfield(L, -2, r->names[k]);
    }
    lua_createtable(L, 0, r->n_meta > 0x7fffffff ? 0 : (int)r->n_meta);
    for (int64_t k = 0; k < r->n_meta; k++) {
        lua_pushstring(L, r->meta_values[k]);
        lua_setfield(L, -2, r->meta_keys[k]);
    }
    lunar_safetensors_free(r);
    *box = NULL;
    return 2;
}

static const luaL_Reg io_functions[] = {
    {"save", l_save},
    {"load", l_load},
    {NULL, NULL},
};

void lunar_lua_open_io(lua_State *L) {
    if (luaL_newmetatable(L, ST_RESULT_MT)) {
        lua_pushcfunction(L, result_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lunar_lua_register(L, io_functions, false, true);
}
