/*
 * shape.c (binding) - the shape family: cat, stack, split, chunk, flip, roll, tile,
 * repeat_tensor, tril, triu, pad. Dims are 1-based (negative counts from the end).
 *
 * `repeat` is a Lua keyword, so Torch's x.repeat(...) is x:repeat_tensor(...) (Torch7's
 * name); x:tile(...) is NumPy's and PyTorch's tile (fewer reps than dims pad with ones).
 */
#include "binding.h"

#include <string.h>

/* An integer or a list of integers at idx into out (at most max); returns the count. */
static int int_list(lua_State *L, int idx, int max, int64_t *out, const char *fname,
                    const char *what) {
    if (lua_isinteger(L, idx)) {
        out[0] = lua_tointeger(L, idx);
        return 1;
    }
    if (lua_type(L, idx) != LUA_TTABLE || lunar_lua_test(L, idx))
        return luaL_error(L, "%s: %s must be an integer or a list of integers (got %s)", fname,
                          what, luaL_typename(L, idx));
    int n = (int)lua_rawlen(L, idx);
    if (n > max) return luaL_error(L, "%s: at most %d %s (got %d)", fname, max, what, n);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        if (!lua_isinteger(L, -1))
            luaL_error(L, "%s: %s %d must be an integer (got %s)", fname, what, i,
                       luaL_typename(L, -1));
        out[i - 1] = lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
    return n;
}

/* The tensors of the list at idx, borrowed; the array lives in a userdata on the stack. */
static lunar_tensor **tensor_list(lua_State *L, int idx, int *n, const char *fname) {
    luaL_checktype(L, idx, LUA_TTABLE);
    int len = (int)lua_rawlen(L, idx);
    if (len < 1) luaL_error(L, "%s: needs a non-empty list of tensors", fname);
    lunar_tensor **ts = lua_newuserdatauv(L, sizeof *ts * (size_t)len, 0);
    for (int i = 1; i <= len; i++) {
        lua_rawgeti(L, idx, i);
        ts[i - 1] = lunar_lua_test(L, -1);
        if (!ts[i - 1])
            luaL_error(L, "%s: element %d of the list is a %s, not a tensor", fname, i,
                       luaL_typename(L, -1));
        lua_pop(L, 1); /* the list keeps it alive */
    }
    *n = len;
    return ts;
}

/* lunar.cat({a, b, ...}, dim = 1) */
static int l_cat(lua_State *L) {
    int n;
    lua_settop(L, 2); /* the list's array goes to 3 */
    lunar_tensor **ts = tensor_list(L, 1, &n, "cat"), *r;
    int dim = lunar_lua_dim(L, luaL_optinteger(L, 2, 1), ts[0]->ndim, "cat");
    LUNAR_LUA_TRY(L, lunar_cat(&r, n, ts, dim));
    lunar_lua_push(L, r);
    return 1;
}

/* lunar.stack({a, b, ...}, dim = 1): dim may be ndim + 1 (a new last dim) */
static int l_stack(lua_State *L) {
    int n;
    lua_settop(L, 2); /* the list's array goes to 3 */
    lunar_tensor **ts = tensor_list(L, 1, &n, "stack"), *r;
    int dim = lunar_lua_dim(L, luaL_optinteger(L, 2, 1), ts[0]->ndim + 1, "stack");
    LUNAR_LUA_TRY(L, lunar_stack(&r, n, ts, dim));
    lunar_lua_push(L, r);
    return 1;
}

static int push_parts(lua_State *L, lunar_tensor **parts, int64_t n) {
    lua_createtable(L, (int)n, 0);
    for (int64_t k = 0; k < n; k++) {
        lunar_lua_push(L, parts[k]);
        parts[k] = NULL; /* the userdata owns it now */
        lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
    lunar_tensors_free(parts, n);
    return 1;
}

/* x:split(size, dim = 1) or x:split({sizes...}, dim = 1): a list of views */
static int l_split(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), **parts;
    int dim = lunar_lua_dim(L, luaL_optinteger(L, 3, 1), t->ndim, "split");
    int64_t n;
    if (lua_isinteger(L, 2)) {
        LUNAR_LUA_TRY(L, lunar_split(&parts, &n, t, lua_tointeger(L, 2), dim));
    } else {
        luaL_checktype(L, 2, LUA_TTABLE);
        int64_t len = (int64_t)lua_rawlen(L, 2);
        int64_t *sizes = lua_newuserdatauv(L, sizeof(int64_t) * (size_t)(len ? len : 1), 0);
        for (int64_t i = 0; i < len; i++) {
            lua_rawgeti(L, 2, i + 1);
            if (!lua_isinteger(L, -1))
                return luaL_error(L, "split: size %d must be an integer (got %s)", (int)i + 1,
                                  luaL_typename(L, -1));
            sizes[i] = lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
        LUNAR_LUA_TRY(L, lunar_split_sizes(&parts, &n, t, len, sizes, dim));
    }
    return push_parts(L, parts, n);
}

/* x:chunk(n, dim = 1) */
static int l_chunk(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), **parts;
    lua_Integer chunks = luaL_checkinteger(L, 2);
    int dim = lunar_lua_dim(L, luaL_optinteger(L, 3, 1), t->ndim, "chunk");
    int64_t n;
    LUNAR_LUA_TRY(L, lunar_chunk(&parts, &n, t, chunks, dim));
    return push_parts(L, parts, n);
}

/* x:flip(1, 2) or x:flip({1, 2}) */
static int l_flip(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    int64_t dims[LUNAR_MAX_DIMS];
    int n = 0;
    if (lua_istable(L, 2)) {
        n = int_list(L, 2, LUNAR_MAX_DIMS, dims, "flip", "dims");
    } else {
        for (int i = 2; !lua_isnone(L, i); i++) {
            if (n == LUNAR_MAX_DIMS) return luaL_error(L, "flip: too many dims");
            dims[n++] = luaL_checkinteger(L, i);
        }
    }
    if (n == 0) return luaL_error(L, "flip: give the dims to flip");
    uint32_t mask = 0;
    for (int k = 0; k < n; k++) mask |= 1u << lunar_lua_dim(L, dims[k], t->ndim, "flip");
    LUNAR_LUA_TRY(L, lunar_flip(&r, t, mask));
    lunar_lua_push(L, r);
    return 1;
}

/* x:roll(shifts, dims): integers or lists of one length; no dims rolls the flattened x */
static int l_roll(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    int64_t shifts[LUNAR_MAX_DIMS], d64[LUNAR_MAX_DIMS];
    int dims[LUNAR_MAX_DIMS];
    int ns = int_list(L, 2, LUNAR_MAX_DIMS, shifts, "roll", "shifts");
    if (lua_isnoneornil(L, 3)) {
        if (ns != 1) return luaL_error(L, "roll: without dims, give one shift (got %d)", ns);
        LUNAR_LUA_TRY(L, lunar_roll(&r, t, 1, shifts, NULL));
    } else {
        int nd = int_list(L, 3, LUNAR_MAX_DIMS, d64, "roll", "dims");
        if (nd != ns)
            return luaL_error(L, "roll: %d shifts for %d dims (give one shift per dim)", ns, nd);
        for (int k = 0; k < nd; k++) dims[k] = lunar_lua_dim(L, d64[k], t->ndim, "roll");
        LUNAR_LUA_TRY(L, lunar_roll(&r, t, ns, shifts, dims));
    }
    lunar_lua_push(L, r);
    return 1;
}

typedef lunar_status (*reps_fn)(lunar_tensor **, lunar_tensor *, int, const int64_t *);

static int reps(lua_State *L, reps_fn fn) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    int64_t rs[LUNAR_MAX_DIMS];
    int n;
    lunar_lua_shape(L, 2, &n, rs);
    LUNAR_LUA_TRY(L, fn(&r, t, n, rs));
    lunar_lua_push(L, r);
    return 1;
}

/* x:tile(2, 3) or x:tile({2, 3}); x:repeat_tensor(...) is Torch's repeat */
static int l_tile(lua_State *L) { return reps(L, lunar_tile); }
static int l_repeat_tensor(lua_State *L) { return reps(L, lunar_repeat); }

static int l_tril(lua_State *L) {
    lunar_tensor *r;
    LUNAR_LUA_TRY(L, lunar_tril(&r, lunar_lua_check(L, 1), luaL_optinteger(L, 2, 0)));
    lunar_lua_push(L, r);
    return 1;
}

static int l_triu(lua_State *L) {
    lunar_tensor *r;
    LUNAR_LUA_TRY(L, lunar_triu(&r, lunar_lua_check(L, 1), luaL_optinteger(L, 2, 0)));
    lunar_lua_push(L, r);
    return 1;
}

/* lunar.pad(x, {left, right, top, bottom, ...}, {mode = "constant", value = 0}) */
static int l_pad(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    int64_t pads[2 * LUNAR_MAX_DIMS];
    if (!lua_istable(L, 2) || lunar_lua_test(L, 2))
        return luaL_error(L, "pad: pads must be a list {left, right, top, bottom, ...} (got %s)",
                          luaL_typename(L, 2));
    int n = int_list(L, 2, 2 * LUNAR_MAX_DIMS, pads, "pad", "pads");
    int opts = lunar_lua_opts(L, 3);
    const char *mode = lunar_lua_optstring(L, opts, "mode", "constant");
    double value = lunar_lua_optnumber(L, opts, "value", 0);
    lunar_pad_mode m;
    if (strcmp(mode, "constant") == 0) m = LUNAR_PAD_CONSTANT;
    else if (strcmp(mode, "reflect") == 0) m = LUNAR_PAD_REFLECT;
    else if (strcmp(mode, "replicate") == 0) m = LUNAR_PAD_REPLICATE;
    else return luaL_error(L, "pad: unknown mode '%s' (constant, reflect, replicate)", mode);
    if (m != LUNAR_PAD_CONSTANT && opts) {
        lua_getfield(L, opts, "value");
        if (!lua_isnil(L, -1)) return luaL_error(L, "pad: value is for constant mode only");
        lua_pop(L, 1);
    }
    LUNAR_LUA_TRY(L, lunar_pad(&r, t, n, pads, m, value));
    lunar_lua_push(L, r);
    return 1;
}

static const luaL_Reg both[] = {
    {"split", l_split}, {"chunk", l_chunk}, {"flip", l_flip},
    {"roll", l_roll},   {"tile", l_tile},   {"repeat_tensor", l_repeat_tensor},
    {"tril", l_tril},   {"triu", l_triu},   {"pad", l_pad},
    {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"cat", l_cat},
    {"stack", l_stack},
    {NULL, NULL},
};

void lunar_lua_open_shape(lua_State *L) {
    lunar_lua_register(L, both, true, true);
    lunar_lua_register(L, functions, false, true);
}
