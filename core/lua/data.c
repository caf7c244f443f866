/*
 * data.c (binding) - the data family's file readers: lunar.read_idx and lunar.read_csv.
 * lunar.data (lua/lunar/data) builds data sets, loaders and splits on them.
 */
#include "binding.h"

#include <string.h>

#define CSV_RESULT_MT "lunar.csv_result"
#define MAX_SPEC 1024

/*
 * lunar.read_idx(path) -> tensor
 *
 * Reads an IDX file (the MNIST format), gzipped or plain: unsigned bytes give a uint8
 * tensor, signed bytes, shorts and ints an int32 one, floats float32, doubles float64, in
 * the shape the header gives. A truncated or corrupt file raises an error naming the path.
 *
 *   local images = lunar.read_idx("data/mnist10k-train-images-idx3-ubyte.gz") -- [8000, 28, 28]
 */
static int l_read_idx(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    lunar_tensor *t;
    LUNAR_LUA_TRY(L, lunar_read_idx(&t, path));
    lunar_lua_push(L, t);
    return 1;
}

static int csv_gc(lua_State *L) {
    lunar_csv **box = luaL_checkudata(L, 1, CSV_RESULT_MT);
    lunar_csv_free(*box);
    *box = NULL;
    return 0;
}

/* Appends the columns listed in opts[key] (names or 1-based indices, negative from the end)
 * with the given kind. */
static int add_spec(lua_State *L, int opts, const char *key, lunar_csv_kind kind,
                    lunar_csv_column *spec, int n, const char *path) {
    if (!opts) return n;
    lua_getfield(L, opts, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return n;
    }
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_newtable(L); /* a single name or index */
        lua_insert(L, -2);
        lua_rawseti(L, -2, 1);
    }
    lua_Integer len = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer k = 1; k <= len; k++) {
        if (n == MAX_SPEC) luaL_error(L, "read_csv: %s: more than %d columns in '%s'", path,
                                      MAX_SPEC, key);
        lua_rawgeti(L, -1, k);
        if (lua_type(L, -1) == LUA_TSTRING) {
            spec[n] = (lunar_csv_column){lua_tostring(L, -1), 0, kind};
            lua_pushvalue(L, -1); /* keeps the name alive in the anchor table below the result */
            lua_rawseti(L, 3, (lua_Integer)lua_rawlen(L, 3) + 1);
        } else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) != 0) {
            lua_Integer j = lua_tointeger(L, -1);
            spec[n] = (lunar_csv_column){NULL, j > 0 ? j - 1 : j, kind};
        } else {
            luaL_error(L, "read_csv: %s: option '%s' lists a %s; expected column names or "
                          "1-based indices",
                       path, key, luaL_typename(L, -1));
        }
        lua_pop(L, 1);
        n++;
    }
    lua_pop(L, 1);
    return n;
}

/*
 * lunar.read_csv(path [, opts]) -> data, names, levels
 *
 * Reads a CSV file with a header row into data, a [rows, cols] float tensor; names lists the
 * header. Empty, NA, N/A, nan and null fields read as NaN. Text in a numeric column is an
 * error naming the file, the line and the column. Options:
 *   text   columns (names or 1-based indices) of text labels: each distinct text becomes
 *          1, 2, ... in order of first appearance; levels[name] lists the texts in code order
 *   auto   columns read as numbers, or as text labels when some field is not a number
 *   dtype  "float32" (default) or "float64"
 * lunar.data.read_csv splits the table into features and a label.
 *
 *   local t, names, levels = lunar.read_csv("iris.csv", {text = {"species"}})
 */
static int l_read_csv(lua_State *L) {
    const char *path = luaL_checkstring(L, 1);
    lua_settop(L, 2);
    int opts = lunar_lua_opts(L, 2);
    if (!opts && !lua_isnil(L, 2))
        return luaL_error(L, "read_csv: expected an options table at argument 2, got a %s",
                          luaL_typename(L, 2));
    lunar_dtype dt = lunar_lua_dtype_from_name(L, lunar_lua_optstring(L, opts, "dtype",
                                                                      "float32"));
    lua_newtable(L); /* 3: anchors the column names that spec points to */
    lunar_csv_column *spec = lua_newuserdatauv(L, sizeof *spec * MAX_SPEC, 0); /* 4 */
    int n = add_spec(L, opts, "text", LUNAR_CSV_TEXT, spec, 0, path);
    n = add_spec(L, opts, "auto", LUNAR_CSV_AUTO, spec, n, path);
    lunar_csv **box = lua_newuserdatauv(L, sizeof *box, 0); /* 5 */
    *box = NULL;
    luaL_setmetatable(L, CSV_RESULT_MT); /* frees the result if a Lua error cuts us short */
    LUNAR_LUA_TRY(L, lunar_read_csv(box, path, n, spec, dt));
    lunar_csv *c = *box;
    lunar_lua_push(L, c->data);
    c->data = NULL; /* the userdata owns it now */
    lua_createtable(L, (int)c->cols, 0);
    for (int64_t j = 0; j < c->cols; j++) {
        lua_pushstring(L, c->names[j]);
        lua_rawseti(L, -2, (lua_Integer)j + 1);
    }
    lua_newtable(L);
    for (int64_t j = 0; j < c->cols; j++) {
        if (!c->levels[j]) continue;
        lua_createtable(L, (int)c->n_levels[j], 0);
        for (int64_t k = 0; k < c->n_levels[j]; k++) {
            lua_pushstring(L, c->levels[j][k]);
            lua_rawseti(L, -2, (lua_Integer)k + 1);
        }
        lua_setfield(L, -2, c->names[j]);
    }
    lunar_csv_free(c);
    *box = NULL;
    return 3;
}

static const luaL_Reg data_functions[] = {
    {"read_idx", l_read_idx},
    {"read_csv", l_read_csv},
    {NULL, NULL},
};

void lunar_lua_open_data(lua_State *L) {
    if (luaL_newmetatable(L, CSV_RESULT_MT)) {
        lua_pushcfunction(L, csv_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    lunar_lua_register(L, data_functions, false, true);
}
