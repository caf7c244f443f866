/*
 * tensor.c (binding) - tensor creation from Lua values, metadata, conversion back to Lua,
 * views, the __index/__newindex dispatch and the autograd properties.
 */
#include "binding.h"

#include <string.h>
#include <time.h>

/* ---- Lua values in, Lua values out ---- */

static void push_element(lua_State *L, lunar_dtype dt, const char *p) {
    switch (dt) {
    case LUNAR_BOOL: lua_pushboolean(L, *(const uint8_t *)p != 0); break;
    case LUNAR_U8: lua_pushinteger(L, *(const uint8_t *)p); break;
    case LUNAR_I32: lua_pushinteger(L, *(const int32_t *)p); break;
    case LUNAR_I64: lua_pushinteger(L, *(const int64_t *)p); break;
    case LUNAR_F32: lua_pushnumber(L, *(const float *)p); break;
    case LUNAR_F64: lua_pushnumber(L, *(const double *)p); break;
    default: lua_pushnil(L); break;
    }
}

/* A host copy of t (contiguous, on the CPU) that the caller releases. */
static lunar_tensor *host_contiguous(lua_State *L, lunar_tensor *t) {
    lunar_tensor *c;
    if (lunar_tensor_backend(t) != &lunar_cpu_backend) /* a device tensor: copy it over */
        LUNAR_LUA_TRY(L, lunar_raw_to(&c, t, &lunar_cpu_backend, 0));
    else
        LUNAR_LUA_TRY(L, lunar_raw_contiguous(&c, t));
    return c;
}

static void push_table(lua_State *L, const lunar_tensor *t, int d, const char *p) {
    if (d == t->ndim) {
        push_element(L, t->dtype, p);
        return;
    }
    luaL_checkstack(L, 4, "totable: nesting too deep");
    int64_t n = t->shape[d];
    lua_createtable(L, n > 0x7fffffff ? 0 : (int)n, 0);
    int64_t step = t->strides[d] * (int64_t)lunar_dtype_size(t->dtype);
    for (int64_t i = 0; i < n; i++) {
        push_table(L, t, d + 1, p + i * step);
        lua_rawseti(L, -2, i + 1);
    }
}

static int t_totable(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1);
    lunar_tensor *c = host_contiguous(L, t);
    push_table(L, c, 0, lunar_tensor_data(c));
    lunar_tensor_release(c);
    return 1;
}

static int t_item(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1);
    if (lunar_tensor_numel(t) != 1) {
        char s[128];
        return luaL_error(L, "item: the tensor has %d elements (shape %s); item needs exactly 1",
                          (int)lunar_tensor_numel(t),
                          lunar_shape_str(s, sizeof s, t->ndim, t->shape));
    }
    lunar_tensor *c = host_contiguous(L, t);
    push_element(L, c->dtype, lunar_tensor_data(c));
    lunar_tensor_release(c);
    return 1;
}

/* Walks a nested table to find its shape; kind collects what the leaves are
 * (1 integer, 2 float, 4 boolean). */
static void table_shape(lua_State *L, int idx, int d, int *ndim, int64_t *shape, int *kind) {
    int len = (int)lua_rawlen(L, idx);
    if (d >= LUNAR_MAX_DIMS)
        luaL_error(L, "tensor: more than %d levels of nesting", LUNAR_MAX_DIMS);
    shape[d] = len;
    *ndim = d + 1;
    if (len == 0) return;
    lua_rawgeti(L, idx, 1);
    if (lua_type(L, -1) == LUA_TTABLE) table_shape(L, lua_gettop(L), d + 1, ndim, shape, kind);
    lua_pop(L, 1);
}

/* Writes the leaves of a nested table (checking that it is not ragged) into dst. */
static char *table_fill(lua_State *L, int idx, int d, int ndim, const int64_t *shape,
                        lunar_dtype dt, char *dst, int *kind) {
    int len = (int)lua_rawlen(L, idx);
    if (len != shape[d])
        luaL_error(L, "tensor: ragged nested table (dim %d has %d and %d elements)", d + 1,
                   (int)shape[d], len);
    luaL_checkstack(L, 4, "tensor: nesting too deep");
    size_t es = lunar_dtype_size(dt);
    for (int i = 1; i <= len; i++) {
        lua_rawgeti(L, idx, i);
        int ty = lua_type(L, -1);
        if (d + 1 < ndim) {
            if (ty != LUA_TTABLE)
                luaL_error(L, "tensor: ragged nested table (expected a table at depth %d, got %s)",
                           d + 2, lua_typename(L, ty));
            dst = table_fill(L, lua_gettop(L), d + 1, ndim, shape, dt, dst, kind);
        } else {
            double v;
            if (ty == LUA_TBOOLEAN) {
                v = lua_toboolean(L, -1);
                *kind |= 4;
            } else if (ty == LUA_TNUMBER) {
                *kind |= lua_isinteger(L, -1) ? 1 : 2;
                if (lua_isinteger(L, -1) && dt == LUNAR_I64) {
                    *(int64_t *)dst = lua_tointeger(L, -1);
                    dst += es;
                    lua_pop(L, 1);
                    continue;
                }
                v = lua_tonumber(L, -1);
            } else {
                luaL_error(L, "tensor: elements must be numbers or booleans (got %s at depth %d)",
                           lua_typename(L, ty), d + 1);
                v = 0;
            }
            switch (dt) {
            case LUNAR_BOOL: *(uint8_t *)dst = v != 0; break;
            case LUNAR_U8: *(uint8_t *)dst = (uint8_t)v; break;
            case LUNAR_I32: *(int32_t *)dst = (int32_t)v; break;
            case LUNAR_I64: *(int64_t *)dst = (int64_t)v; break;
            case LUNAR_F32: *(float *)dst = (float)v; break;
            case LUNAR_F64: *(double *)dst = v; break;
            default: break;
            }
            dst += es;
        }
        lua_pop(L, 1);
    }
    return dst;
}

/* The dtype of the leaves: int64 for integers, bool for booleans, else the default. */
static int leaf_kind(lua_State *L, int idx, int ndim) {
    for (int d = 0; d < ndim; d++) {
        if (lua_type(L, idx) != LUA_TTABLE || lua_rawlen(L, idx) == 0) return 0;
        lua_rawgeti(L, idx, 1);
        idx = lua_gettop(L);
    }
    int kind = lua_type(L, idx) == LUA_TBOOLEAN ? 4 : (lua_isinteger(L, idx) ? 1 : 2);
    return kind;
}

static void apply_requires_grad(lua_State *L, lunar_tensor *t, int opts) {
    if (lunar_lua_optbool(L, opts, "requires_grad", false))
        if (lunar_tensor_set_requires_grad(t, true) != LUNAR_OK) {
            lunar_tensor_release(t);
            lunar_lua_raise(L);
        }
}

/* lunar.tensor(data [, {dtype=, device=, requires_grad=}]) */
static int l_tensor(lua_State *L) {
    int opts = lunar_lua_opts(L, 2);
    lunar_tensor *src = lunar_lua_test(L, 1), *t;
    const lunar_backend *be;
    int dev;
    lunar_lua_target_device(L, opts, src, &be, &dev);
    if (src) {
        lunar_dtype dt = src->dtype;
        const char *name = opts ? lunar_lua_optstring(L, opts, "dtype", NULL) : NULL;
        if (name) dt = lunar_lua_dtype_from_name(L, name);
        else if (!opts) dt = lunar_lua_optdtype(L, 2, src->dtype);
        LUNAR_LUA_TRY(L, lunar_raw_cast(&t, src, dt));
    } else if (lua_type(L, 1) == LUA_TNUMBER || lua_type(L, 1) == LUA_TBOOLEAN) {
        int kind = lua_isboolean(L, 1) ? 4 : (lua_isinteger(L, 1) ? 1 : 2);
        lunar_dtype def = kind == 4   ? LUNAR_BOOL
                          : kind == 1 ? LUNAR_I64
                                      : lunar_lua_default_dtype();
        const char *name = lunar_lua_optstring(L, opts, "dtype", NULL);
        lunar_dtype dt = name ? lunar_lua_dtype_from_name(L, name) : def;
        LUNAR_LUA_TRY(L, lunar_scalar(&t, lua_isboolean(L, 1) ? lua_toboolean(L, 1)
                                                              : lua_tonumber(L, 1), dt));
        if (dt == LUNAR_I64 && lua_isinteger(L, 1))
            *(int64_t *)lunar_tensor_data(t) = lua_tointeger(L, 1);
    } else {
        luaL_checktype(L, 1, LUA_TTABLE);
        int ndim = 0, kind = 0;
        int64_t shape[LUNAR_MAX_DIMS];
        int top = lua_gettop(L);
        table_shape(L, 1, 0, &ndim, shape, &kind);
        lua_settop(L, top);
        kind = leaf_kind(L, 1, ndim);
        lua_settop(L, top);
        lunar_dtype def = kind == 4   ? LUNAR_BOOL
                          : kind == 1 ? LUNAR_I64
                                      : lunar_lua_default_dtype();
        const char *name = lunar_lua_optstring(L, opts, "dtype", NULL);
        lunar_dtype dt = name ? lunar_lua_dtype_from_name(L, name) : def;
        LUNAR_LUA_TRY(L, lunar_empty(&t, ndim, shape, dt));
        lunar_lua_push(L, t); /* anchored, so an error below frees it */
        int seen = 0;
        if (lunar_tensor_numel(t) > 0)
            table_fill(L, 1, 0, ndim, shape, dt, lunar_tensor_data(t), &seen);
        if (!name && (seen & 2) && dt == LUNAR_I64) { /* integers first, floats later */
            lunar_tensor *f;
            LUNAR_LUA_TRY(L, lunar_empty(&f, ndim, shape, lunar_lua_default_dtype()));
            lunar_lua_push(L, f);
            table_fill(L, 1, 0, ndim, shape, f->dtype, lunar_tensor_data(f), &seen);
            t = f;
        }
        lunar_tensor_retain(t);
        lua_settop(L, top);
    }
    lunar_lua_place(L, &t, be, dev);
    apply_requires_grad(L, t, opts);
    lunar_lua_push(L, t);
    return 1;
}

/* ---- creation by shape ---- */

typedef enum { C_EMPTY, C_ZEROS, C_ONES, C_FULL } creation;

static int create(lua_State *L, creation kind, bool like) {
    int ndim, idx = 1;
    int64_t shape[LUNAR_MAX_DIMS];
    lunar_dtype dt = lunar_lua_default_dtype();
    if (like) {
        lunar_tensor *x = lunar_lua_check(L, 1);
        ndim = x->ndim;
        memcpy(shape, x->shape, sizeof(int64_t) * (size_t)ndim);
        dt = x->dtype;
        idx = 2;
    } else {
        idx = lunar_lua_shape(L, 1, &ndim, shape);
    }
    double value = 0;
    if (kind == C_FULL) {
        if (lua_type(L, idx) == LUA_TBOOLEAN) {
            value = lua_toboolean(L, idx);
            if (!like) dt = LUNAR_BOOL;
        } else {
            value = luaL_checknumber(L, idx);
            if (!like && lua_isinteger(L, idx)) dt = LUNAR_I64;
        }
        idx++;
    } else if (kind == C_ONES) {
        value = 1;
    }
    int opts = lunar_lua_opts(L, idx);
    if (!opts && !lua_isnoneornil(L, idx))
        return luaL_error(L, "expected a shape and an options table, got a %s at argument %d",
                          luaL_typename(L, idx), idx);
    const char *name = lunar_lua_optstring(L, opts, "dtype", NULL);
    if (name) dt = lunar_lua_dtype_from_name(L, name);
    const lunar_backend *be;
    int dev;
    lunar_lua_target_device(L, opts, like ? lunar_lua_check(L, 1) : NULL, &be, &dev);
    lunar_tensor *t;
    if (be != &lunar_cpu_backend) { /* made and filled on the device, no host copy */
        LUNAR_LUA_TRY(L, lunar_tensor_new_on(&t, ndim, shape, dt, be, dev));
        if (kind != C_EMPTY && be->fill(t, value) != LUNAR_OK) {
            lunar_tensor_release(t);
            return lunar_lua_raise(L);
        }
    } else if (kind == C_EMPTY) {
        LUNAR_LUA_TRY(L, lunar_empty(&t, ndim, shape, dt));
    } else {
        LUNAR_LUA_TRY(L, lunar_full(&t, ndim, shape, dt, value));
    }
    apply_requires_grad(L, t, opts);
    lunar_lua_push(L, t);
    return 1;
}

static int l_empty(lua_State *L) { return create(L, C_EMPTY, false); }
static int l_zeros(lua_State *L) { return create(L, C_ZEROS, false); }
static int l_ones(lua_State *L) { return create(L, C_ONES, false); }
static int l_full(lua_State *L) { return create(L, C_FULL, false); }
static int l_empty_like(lua_State *L) { return create(L, C_EMPTY, true); }
static int l_zeros_like(lua_State *L) { return create(L, C_ZEROS, true); }
static int l_ones_like(lua_State *L) { return create(L, C_ONES, true); }
static int l_full_like(lua_State *L) { return create(L, C_FULL, true); }

/* lunar.arange([start,] stop [, step] [, {dtype=}]): like PyTorch, stop excluded */
static int l_arange(lua_State *L) {
    int n = 0;
    while (lua_type(L, n + 1) == LUA_TNUMBER) n++;
    if (n == 0 || n > 3)
        return luaL_error(L, "arange: expected 1 to 3 numbers (start, stop, step)");
    bool all_int = true;
    for (int i = 1; i <= n; i++) all_int &= lua_isinteger(L, i) != 0;
    double start = n >= 2 ? lua_tonumber(L, 1) : 0;
    double stop = n >= 2 ? lua_tonumber(L, 2) : lua_tonumber(L, 1);
    double step = n == 3 ? lua_tonumber(L, 3) : 1;
    int opts = lunar_lua_opts(L, n + 1);
    const char *name = lunar_lua_optstring(L, opts, "dtype", NULL);
    lunar_dtype dt = name ? lunar_lua_dtype_from_name(L, name)
                          : (all_int ? LUNAR_I64 : lunar_lua_default_dtype());
    const lunar_backend *be;
    int dev;
    lunar_lua_target_device(L, opts, NULL, &be, &dev);
    lunar_tensor *t;
    LUNAR_LUA_TRY(L, lunar_arange(&t, start, stop, step, dt));
    lunar_lua_place(L, &t, be, dev);
    apply_requires_grad(L, t, opts);
    lunar_lua_push(L, t);
    return 1;
}

static int l_linspace(lua_State *L) {
    double start = luaL_checknumber(L, 1), stop = luaL_checknumber(L, 2);
    lua_Integer n = luaL_checkinteger(L, 3);
    int opts = lunar_lua_opts(L, 4);
    const char *name = lunar_lua_optstring(L, opts, "dtype", NULL);
    lunar_dtype dt = name ? lunar_lua_dtype_from_name(L, name) : lunar_lua_default_dtype();
    const lunar_backend *be;
    int dev;
    lunar_lua_target_device(L, opts, NULL, &be, &dev);
    lunar_tensor *t;
    LUNAR_LUA_TRY(L, lunar_linspace(&t, start, stop, n, dt));
    lunar_lua_place(L, &t, be, dev);
    apply_requires_grad(L, t, opts);
    lunar_lua_push(L, t);
    return 1;
}

static int l_eye(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    lua_Integer m = lua_type(L, 2) == LUA_TNUMBER ? luaL_checkinteger(L, 2) : n;
    int opts = lunar_lua_opts(L, lua_type(L, 2) == LUA_TNUMBER ? 3 : 2);
    const char *name = lunar_lua_optstring(L, opts, "dtype", NULL);
    lunar_dtype dt = name ? lunar_lua_dtype_from_name(L, name) : lunar_lua_default_dtype();
    const lunar_backend *be;
    int dev;
    lunar_lua_target_device(L, opts, NULL, &be, &dev);
    lunar_tensor *t;
    LUNAR_LUA_TRY(L, lunar_eye(&t, n, m, dt));
    lunar_lua_place(L, &t, be, dev);
    lunar_lua_push(L, t);
    return 1;
}

static int l_is_tensor(lua_State *L) {
    lua_pushboolean(L, lunar_lua_test(L, 1) != NULL);
    return 1;
}

static int l_set_default_dtype(lua_State *L) {
    lunar_dtype dt = lunar_lua_dtype_from_name(L, luaL_checkstring(L, 1));
    if (!lunar_dtype_is_float(dt))
        return luaL_error(L, "set_default_dtype: needs a float dtype (got %s)",
                          lunar_dtype_name(dt));
    lunar_lua_set_default_dtype(dt);
    return 0;
}

static int l_get_default_dtype(lua_State *L) {
    lua_pushstring(L, lunar_dtype_name(lunar_lua_default_dtype()));
    return 1;
}

/* lunar.clock(): monotonic wall time in seconds, because os.clock counts CPU time (of every
 * thread) and os.time has a resolution of a second; benchmarks need the wall clock. */
static int l_clock(lua_State *L) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec * 1e-9);
    return 1;
}

/* ---- metadata ---- */

static int t_size(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        int d = lunar_lua_checkdim(L, 2, t->ndim);
        lua_pushinteger(L, t->ndim ? t->shape[d] : 1);
        return 1;
    }
    lua_createtable(L, t->ndim, 0);
    for (int d = 0; d < t->ndim; d++) {
        lua_pushinteger(L, t->shape[d]);
        lua_rawseti(L, -2, d + 1);
    }
    return 1;
}

static int t_stride(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        int d = lunar_lua_checkdim(L, 2, t->ndim);
        lua_pushinteger(L, t->ndim ? t->strides[d] : 1);
        return 1;
    }
    lua_createtable(L, t->ndim, 0);
    for (int d = 0; d < t->ndim; d++) {
        lua_pushinteger(L, t->strides[d]);
        lua_rawseti(L, -2, d + 1);
    }
    return 1;
}

static int t_dim(lua_State *L) {
    lua_pushinteger(L, lunar_lua_check(L, 1)->ndim);
    return 1;
}

static int t_numel(lua_State *L) {
    lua_pushinteger(L, lunar_tensor_numel(lunar_lua_check(L, 1)));
    return 1;
}

static int t_dtype(lua_State *L) {
    lua_pushstring(L, lunar_dtype_name(lunar_lua_check(L, 1)->dtype));
    return 1;
}

static int t_storage_offset(lua_State *L) {
    lua_pushinteger(L, lunar_lua_check(L, 1)->offset);
    return 1;
}

static int t_is_contiguous(lua_State *L) {
    lua_pushboolean(L, lunar_tensor_is_contiguous(lunar_lua_check(L, 1)));
    return 1;
}

static int t_is_same_storage(lua_State *L) {
    lua_pushboolean(L, lunar_tensor_same_storage(lunar_lua_check(L, 1), lunar_lua_check(L, 2)));
    return 1;
}

static int t_len(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1);
    if (t->ndim == 0) return luaL_error(L, "#: a 0-d tensor has no length");
    lua_pushinteger(L, t->shape[0]);
    return 1;
}

/* t:type() names the dtype; t:type(dtype) casts (as :to(dtype) does) */
static int cast_to(lua_State *L, lunar_dtype dt) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    LUNAR_LUA_TRY(L, lunar_to_dtype(&r, t, dt));
    lunar_lua_push(L, r);
    return 1;
}

static int t_type(lua_State *L) {
    if (lua_isnoneornil(L, 2)) return t_dtype(L);
    return cast_to(L, lunar_lua_dtype_from_name(L, luaL_checkstring(L, 2)));
}

static int t_float(lua_State *L) { return cast_to(L, LUNAR_F32); }
static int t_double(lua_State *L) { return cast_to(L, LUNAR_F64); }
static int t_int(lua_State *L) { return cast_to(L, LUNAR_I32); }
static int t_long(lua_State *L) { return cast_to(L, LUNAR_I64); }
static int t_byte(lua_State *L) { return cast_to(L, LUNAR_U8); }
static int t_bool(lua_State *L) { return cast_to(L, LUNAR_BOOL); }

/* t:to(dtype) or t:to(device): a name ("cpu", "opencl:2") or a lunar.device() handle */
static int t_to(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    const char *what = lunar_lua_device_name(L, 2);
    if (!lunar_lua_is_device_name(what)) return cast_to(L, lunar_lua_dtype_from_name(L, what));
    LUNAR_LUA_TRY(L, lunar_to_device(&r, t, what));
    lunar_lua_push(L, r);
    return 1;
}

/* ---- views and copies ---- */

static int t_contiguous(lua_State *L) {
    lunar_tensor *r;
    LUNAR_LUA_TRY(L, lunar_contiguous(&r, lunar_lua_check(L, 1)));
    lunar_lua_push(L, r);
    return 1;
}

static int t_clone(lua_State *L) {
    lunar_tensor *r;
    LUNAR_LUA_TRY(L, lunar_clone(&r, lunar_lua_check(L, 1)));
    lunar_lua_push(L, r);
    return 1;
}

static int t_detach(lua_State *L) {
    lunar_tensor *r;
    LUNAR_LUA_TRY(L, lunar_detach(&r, lunar_lua_check(L, 1)));
    lunar_lua_push(L, r);
    return 1;
}

static int reshape_like(lua_State *L, bool view) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    int ndim = 0;
    int64_t shape[LUNAR_MAX_DIMS];
    if (lua_type(L, 2) == LUA_TTABLE) {
        lunar_lua_shape(L, 2, &ndim, shape);
    } else {
        /* integers, -1 allowed for one inferred size */
        for (int i = 2; lua_type(L, i) == LUA_TNUMBER; i++) {
            if (ndim == LUNAR_MAX_DIMS) return luaL_error(L, "reshape: at most 8 dims");
            shape[ndim++] = luaL_checkinteger(L, i);
        }
    }
    if (lua_type(L, 2) == LUA_TTABLE) { /* lunar_lua_shape refuses -1: read again */
        ndim = (int)lua_rawlen(L, 2);
        for (int i = 0; i < ndim && i < LUNAR_MAX_DIMS; i++) {
            lua_rawgeti(L, 2, i + 1);
            shape[i] = lua_tointeger(L, -1);
            lua_pop(L, 1);
        }
    }
    LUNAR_LUA_TRY(L, view ? lunar_view(&r, t, ndim, shape) : lunar_reshape(&r, t, ndim, shape));
    lunar_lua_push(L, r);
    return 1;
}

static int t_view(lua_State *L) { return reshape_like(L, true); }
static int t_reshape(lua_State *L) { return reshape_like(L, false); }

static int t_transpose(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    int d0 = lunar_lua_checkdim(L, 2, t->ndim), d1 = lunar_lua_checkdim(L, 3, t->ndim);
    LUNAR_LUA_TRY(L, lunar_transpose(&r, t, d0, d1));
    lunar_lua_push(L, r);
    return 1;
}

/* t:t(): the transpose of a matrix (a vector stays itself) */
static int t_t(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    if (t->ndim > 2)
        return luaL_error(L, "t: expects at most 2 dims (got %d); use transpose", t->ndim);
    if (t->ndim < 2) {
        lua_settop(L, 1);
        return 1;
    }
    LUNAR_LUA_TRY(L, lunar_transpose(&r, t, 0, 1));
    lunar_lua_push(L, r);
    return 1;
}

static int t_permute(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    int perm[LUNAR_MAX_DIMS], n = 0;
    bool table = lua_type(L, 2) == LUA_TTABLE;
    int count = table ? (int)lua_rawlen(L, 2) : lua_gettop(L) - 1;
    if (count != t->ndim)
        return luaL_error(L, "permute: %d dims given for a %d-d tensor", count, t->ndim);
    for (int i = 0; i < count; i++) {
        lua_Integer d;
        if (table) {
            lua_rawgeti(L, 2, i + 1);
            d = luaL_checkinteger(L, -1);
            lua_pop(L, 1);
        } else {
            d = luaL_checkinteger(L, i + 2);
        }
        perm[n++] = lunar_lua_dim(L, d, t->ndim, "permute");
    }
    LUNAR_LUA_TRY(L, lunar_permute(&r, t, perm));
    lunar_lua_push(L, r);
    return 1;
}

/* t:narrow(dim, start, length), start 1-based */
static int t_narrow(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    int d = lunar_lua_checkdim(L, 2, t->ndim);
    lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
    if (start < 0 && t->ndim) start += t->shape[d] + 1;
    LUNAR_LUA_TRY(L, lunar_narrow(&r, t, d, start - 1, len));
    lunar_lua_push(L, r);
    return 1;
}

/* t:select(dim, index), index 1-based (negative from the end) */
static int t_select(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    int d = lunar_lua_checkdim(L, 2, t->ndim);
    lua_Integer i = luaL_checkinteger(L, 3);
    if (i < 0 && t->ndim) i += t->shape[d] + 1;
    LUNAR_LUA_TRY(L, lunar_select(&r, t, d, i - 1));
    lunar_lua_push(L, r);
    return 1;
}

static int t_expand(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    int64_t shape[LUNAR_MAX_DIMS];
    int ndim = 0;
    bool table = lua_type(L, 2) == LUA_TTABLE;
    int count = table ? (int)lua_rawlen(L, 2) : lua_gettop(L) - 1;
    if (count > LUNAR_MAX_DIMS) return luaL_error(L, "expand: at most 8 dims");
    for (int i = 0; i < count; i++) {
        if (table) {
            lua_rawgeti(L, 2, i + 1);
            shape[ndim++] = luaL_checkinteger(L, -1);
            lua_pop(L, 1);
        } else {
            shape[ndim++] = luaL_checkinteger(L, i + 2);
        }
    }
    LUNAR_LUA_TRY(L, lunar_expand(&r, t, ndim, shape));
    lunar_lua_push(L, r);
    return 1;
}

static int t_expand_as(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *o = lunar_lua_check(L, 2), *r;
    LUNAR_LUA_TRY(L, lunar_expand(&r, t, o->ndim, o->shape));
    lunar_lua_push(L, r);
    return 1;
}

static int t_view_as(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *o = lunar_lua_check(L, 2), *r;
    LUNAR_LUA_TRY(L, lunar_reshape(&r, t, o->ndim, o->shape));
    lunar_lua_push(L, r);
    return 1;
}

static int t_squeeze(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    int d = lua_isnoneornil(L, 2) ? LUNAR_ALL_DIMS : lunar_lua_checkdim(L, 2, t->ndim);
    LUNAR_LUA_TRY(L, lunar_squeeze(&r, t, d));
    lunar_lua_push(L, r);
    return 1;
}

static int t_unsqueeze(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    int d = lunar_lua_dim(L, luaL_checkinteger(L, 2), t->ndim + 1, "unsqueeze");
    LUNAR_LUA_TRY(L, lunar_unsqueeze(&r, t, d));
    lunar_lua_push(L, r);
    return 1;
}

static int t_unfold(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    int d = lunar_lua_checkdim(L, 2, t->ndim);
    LUNAR_LUA_TRY(L, lunar_unfold(&r, t, d, luaL_checkinteger(L, 3), luaL_checkinteger(L, 4)));
    lunar_lua_push(L, r);
    return 1;
}

static int t_flatten(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    int s = lunar_lua_optdim(L, 2, t->ndim, 0), e = lunar_lua_optdim(L, 3, t->ndim, t->ndim - 1);
    if (t->ndim == 0) {
        int64_t one = 1;
        LUNAR_LUA_TRY(L, lunar_reshape(&r, t, 1, &one));
        lunar_lua_push(L, r);
        return 1;
    }
    if (e < s) return luaL_error(L, "flatten: end dim %d comes before start dim %d", e + 1, s + 1);
    int64_t shape[LUNAR_MAX_DIMS];
    int n = 0;
    for (int d = 0; d < s; d++) shape[n++] = t->shape[d];
    int64_t m = 1;
    for (int d = s; d <= e; d++) m *= t->shape[d];
    shape[n++] = m;
    for (int d = e + 1; d < t->ndim; d++) shape[n++] = t->shape[d];
    LUNAR_LUA_TRY(L, lunar_reshape(&r, t, n, shape));
    lunar_lua_push(L, r);
    return 1;
}

/* ---- __index / __newindex ---- */

int lunar_lua_index_get(lua_State *L);  /* index.c: t[i], t[{...}] */
int lunar_lua_index_set(lua_State *L);  /* index.c: t[i] = v */

static int t_index(lua_State *L) {
    if (lua_type(L, 2) == LUA_TSTRING) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
        lua_pop(L, 1);
        lunar_tensor *t = lunar_lua_check(L, 1);
        const char *k = lua_tostring(L, 2);
        if (strcmp(k, "grad") == 0) {
            lunar_tensor *g = lunar_tensor_grad(t);
            lunar_tensor_retain(g);
            lunar_lua_push(L, g);
        } else if (strcmp(k, "requires_grad") == 0) {
            lua_pushboolean(L, lunar_tensor_requires_grad(t));
        } else if (strcmp(k, "is_leaf") == 0) {
            lua_pushboolean(L, lunar_tensor_is_leaf(t));
        } else if (strcmp(k, "grad_fn") == 0) {
            const char *n = lunar_tensor_grad_fn_name(t);
            if (n) lua_pushstring(L, n);
            else lua_pushnil(L);
        } else if (strcmp(k, "shape") == 0) {
            lua_settop(L, 1);
            return t_size(L);
        } else if (strcmp(k, "ndim") == 0) {
            lua_pushinteger(L, t->ndim);
        } else {
            lua_pushnil(L);
        }
        return 1;
    }
    return lunar_lua_index_get(L);
}

static int t_newindex(lua_State *L) {
    if (lua_type(L, 2) == LUA_TSTRING) {
        lunar_tensor *t = lunar_lua_check(L, 1);
        const char *k = lua_tostring(L, 2);
        if (strcmp(k, "grad") == 0) {
            lunar_tensor *g = lua_isnil(L, 3) ? NULL : lunar_lua_check(L, 3);
            if (g && !lunar_shape_equal(g->ndim, g->shape, t->ndim, t->shape))
                return luaL_error(L, "grad: assigned gradient has a different shape");
            lunar_tensor_set_grad(t, g);
            return 0;
        }
        if (strcmp(k, "requires_grad") == 0) {
            LUNAR_LUA_TRY(L, lunar_tensor_set_requires_grad(t, lua_toboolean(L, 3)));
            return 0;
        }
        return luaL_error(L, "tensor: cannot set field '%s' (tensors take no new fields)", k);
    }
    return lunar_lua_index_set(L);
}

static int t_requires_grad_(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1);
    LUNAR_LUA_TRY(L, lunar_tensor_set_requires_grad(t, lua_isnone(L, 2) || lua_toboolean(L, 2)));
    lua_settop(L, 1);
    return 1;
}

static const luaL_Reg both[] = {
    {"totable", t_totable},     {"item", t_item},
    {"size", t_size},           {"stride", t_stride},
    {"dim", t_dim},             {"numel", t_numel},
    {"dtype", t_dtype},         {"storage_offset", t_storage_offset},
    {"is_contiguous", t_is_contiguous},
    {"is_same_storage", t_is_same_storage},
    {"type", t_type},           {"float", t_float},
    {"double", t_double},       {"int", t_int},
    {"long", t_long},           {"byte", t_byte},
    {"bool", t_bool},           {"to", t_to},
    {"contiguous", t_contiguous}, {"clone", t_clone},
    {"detach", t_detach},       {"view", t_view},
    {"reshape", t_reshape},     {"transpose", t_transpose},
    {"t", t_t},                 {"permute", t_permute},
    {"narrow", t_narrow},       {"select", t_select},
    {"expand", t_expand},       {"expand_as", t_expand_as},
    {"view_as", t_view_as},     {"squeeze", t_squeeze},
    {"unsqueeze", t_unsqueeze}, {"unfold", t_unfold},
    {"flatten", t_flatten},     {"requires_grad_", t_requires_grad_},
    {NULL, NULL},
};

static const luaL_Reg functions[] = {
    {"tensor", l_tensor},         {"empty", l_empty},
    {"zeros", l_zeros},           {"ones", l_ones},
    {"full", l_full},             {"empty_like", l_empty_like},
    {"zeros_like", l_zeros_like}, {"ones_like", l_ones_like},
    {"full_like", l_full_like},   {"arange", l_arange},
    {"linspace", l_linspace},     {"eye", l_eye},
    {"is_tensor", l_is_tensor},   {"set_default_dtype", l_set_default_dtype},
    {"get_default_dtype", l_get_default_dtype},
    {"clock", l_clock},
    {NULL, NULL},
};

void lunar_lua_open_tensor(lua_State *L) {
    lunar_lua_register(L, both, true, true);
    lunar_lua_register(L, functions, false, true);
    luaL_getmetatable(L, LUNAR_TENSOR_MT);
    lua_pushvalue(L, 2);
    lua_pushcclosure(L, t_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, t_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, t_len);
    lua_setfield(L, -2, "__len");
    lua_pop(L, 1);
}
