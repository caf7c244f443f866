/*
 * index.c (binding) - the indexing syntax and the indexing family.
 *
 * Syntax (Torch7's, 1-based, negative counts from the end):
 *   t[i]                  select along dim 1: a view, or a Lua number for a 1-d tensor
 *   t[{i, j}]             several dims at once; fully indexed gives a number
 *   t[{ {a, b}, j }]      a range a..b (inclusive) keeps the dim; {} is all of it, {a} is a..a
 *   t[{ {}, idx }]        an index tensor in the table: index_select along that dim (a copy)
 *   t[mask]               bool tensor: masked_select (a 1-d copy)
 *   t[idx]                int64/int32 tensor: index_select along dim 1 (a copy)
 *   t[...] = v            writes through the same view (v broadcast), or masked_fill /
 *                         masked_scatter_ / index_copy_ for masks and index tensors
 * Methods: gather, scatter(_), scatter_add(_), index_select, index_add(_), index_copy_,
 * index_fill_, masked_fill(_), masked_select, masked_scatter_, nonzero, count_nonzero,
 * one_hot, sort, topk, unique. Index tensors given and returned are 1-based.
 *
 * Every temporary tensor is pushed on the Lua stack as soon as it exists, so that a Lua
 * error part-way frees it.
 */
#include "binding.h"

/* Pushes t (the stack owns it) and returns it. */
static lunar_tensor *anchor(lua_State *L, lunar_tensor *t) {
    lunar_lua_push(L, t);
    return t;
}

/* The 1-based index tensor at idx as a 0-based one, anchored on the stack. */
static lunar_tensor *check_index(lua_State *L, int idx, const char *fname) {
    lunar_tensor *t = lunar_lua_test(L, idx), *r;
    if (!t) {
        luaL_error(L, "%s: index must be an int64 tensor (got %s)", fname, luaL_typename(L, idx));
        return NULL;
    }
    if (t->dtype != LUNAR_I64 && t->dtype != LUNAR_I32)
        luaL_error(L, "%s: index must be int64 or int32 (got %s)", fname,
                   lunar_dtype_name(t->dtype));
    LUNAR_LUA_TRY(L, lunar_binary_scalar(&r, LUNAR_OP_SUB, t, 1, false));
    return anchor(L, r);
}

/* A tensor or a number (as a 0-d tensor of like's dtype) at idx, anchored. */
static lunar_tensor *check_value(lua_State *L, int idx, const lunar_tensor *like) {
    return anchor(L, lunar_lua_check_operand(L, idx, like));
}

/* Pushes a 0-based index tensor as a 1-based one; takes over t. */
static void push_index(lua_State *L, lunar_tensor *t) {
    lunar_tensor *r;
    anchor(L, t);
    LUNAR_LUA_TRY(L, lunar_binary_scalar(&r, LUNAR_OP_ADD, t, 1, false));
    lua_pop(L, 1);
    lunar_lua_push(L, r);
}

/* r is read after st is computed (arguments have no order of evaluation in C). */
static int push_result(lua_State *L, lunar_status st, lunar_tensor **r) {
    if (st != LUNAR_OK) return lunar_lua_raise(L);
    lunar_lua_push(L, *r);
    return 1;
}

/* ---- t[...] ---- */

/* A Lua position (1-based, negative from the end) in a dim of size n as 0-based; a position
 * outside [1, n] is left outside [0, n). */
static int64_t position(lua_Integer i, int64_t n) { return i < 0 ? i + n : i - 1; }

/* Whether the value at idx is a number with an integral value (x[n / 2] is fine). */
static bool is_position(lua_State *L, int idx, lua_Integer *i) {
    int ok = 0;
    *i = 0;
    if (lua_type(L, idx) == LUA_TNUMBER) *i = lua_tointegerx(L, idx, &ok);
    return ok != 0;
}

static lua_Integer table_int(lua_State *L, int t, int k) {
    lua_Integer v = 0;
    lua_rawgeti(L, t, k);
    if (!is_position(L, -1, &v))
        luaL_error(L, "index: range bounds must be integers (got %s)", luaL_typename(L, -1));
    lua_pop(L, 1);
    return v;
}

/* Applies the table key at idx to t: returns a view (a copy where an entry is an index
 * tensor, which write refuses), anchored on the stack. *scalar tells whether every dim was
 * selected by an integer (the caller may return a number). */
static lunar_tensor *table_view(lua_State *L, lunar_tensor *t, int key, bool write,
                                bool *scalar) {
    int n = (int)lua_rawlen(L, key);
    if (n > t->ndim)
        luaL_error(L, "index: %d indices for a %d-d tensor", n, t->ndim);
    lunar_tensor *cur = t;
    lunar_tensor_retain(cur);
    anchor(L, cur);
    int d = 0, top = lua_gettop(L);
    for (int k = 1; k <= n; k++) {
        lunar_tensor *r;
        lua_rawgeti(L, key, k);
        int ty = lua_type(L, -1);
        lua_Integer i = 0;
        if (is_position(L, -1, &i)) {
            int64_t size = cur->shape[d], p = position(i, size);
            if (p < 0 || p >= size)
                luaL_error(L, "index: index %d out of range for dim %d of size %d", (int)i, k,
                           (int)size);
            LUNAR_LUA_TRY(L, lunar_select(&r, cur, d, p));
        } else if (ty == LUA_TTABLE && !lunar_lua_test(L, -1)) {
            int len = (int)lua_rawlen(L, -1), sub = lua_gettop(L);
            int64_t size = cur->shape[d], a = 0, b = size - 1;
            if (len > 2) luaL_error(L, "index: a range is {first, last} (got %d numbers)", len);
            if (len >= 1) a = b = position(table_int(L, sub, 1), size);
            if (len == 2) b = position(table_int(L, sub, 2), size);
            if (a < 0 || a > size || b < a - 1 || b >= size)
                luaL_error(L, "index: range {%d, %d} out of range for dim %d of size %d",
                           (int)(a + 1), (int)(b + 1), k, (int)size);
            LUNAR_LUA_TRY(L, lunar_narrow(&r, cur, d, a, b - a + 1));
            d++;
        } else if (lunar_lua_test(L, -1) && !write) { /* an index tensor: a copy */
            lunar_tensor *idx = check_index(L, lua_gettop(L), "index");
            LUNAR_LUA_TRY(L, lunar_index_select(&r, cur, d, idx));
            d++;
        } else {
            if (lunar_lua_test(L, -1))
                luaL_error(L, "index: dim %d: an index tensor inside a table selects a copy, "
                              "which cannot be assigned to; use index_copy_",
                           k);
            luaL_error(L, "index: dim %d: expected an integer, a {first, last} range or an "
                          "index tensor (got %s)",
                       k, luaL_typename(L, -1));
            return NULL;
        }
        lua_settop(L, top - 1); /* drop the entry and the previous view */
        cur = anchor(L, r);
    }
    *scalar = n == t->ndim && d == 0 && n > 0;
    return cur;
}

/* t[mask] needs a mask of t's own shape (masked_select itself broadcasts). */
static lunar_tensor *syntax_mask(lua_State *L, lunar_tensor *t, lunar_tensor *mask) {
    if (!lunar_shape_equal(mask->ndim, mask->shape, t->ndim, t->shape)) {
        char a[128], b[128];
        luaL_error(L, "index: mask %s does not match the tensor's shape %s",
                   lunar_shape_str(a, sizeof a, mask->ndim, mask->shape),
                   lunar_shape_str(b, sizeof b, t->ndim, t->shape));
    }
    return mask;
}

/* Pushes element 0 of a 0-d tensor as a Lua value. */
static int push_item(lua_State *L, lunar_tensor *r) {
    anchor(L, r);
    lua_getfield(L, -1, "item");
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    return 1;
}

int lunar_lua_index_get(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r, *key;
    lua_Integer i = 0;
    if (is_position(L, 2, &i)) {
        if (t->ndim == 0) return luaL_error(L, "index: cannot index a 0-d tensor");
        int64_t p = position(i, t->shape[0]);
        if (p < 0 || p >= t->shape[0])
            return luaL_error(L, "index: index %d out of range for dim 1 of size %d", (int)i,
                              (int)t->shape[0]);
        LUNAR_LUA_TRY(L, lunar_select(&r, t, 0, p));
        if (r->ndim == 0) return push_item(L, r);
        lunar_lua_push(L, r);
        return 1;
    }
    if ((key = lunar_lua_test(L, 2)) != NULL) {
        if (key->dtype == LUNAR_BOOL)
            return push_result(L, lunar_masked_select(&r, t, syntax_mask(L, t, key)), &r);
        lunar_tensor *idx = check_index(L, 2, "index");
        return push_result(L, lunar_index_select(&r, t, 0, idx), &r);
    }
    if (lua_type(L, 2) == LUA_TTABLE) {
        bool scalar;
        r = table_view(L, t, 2, false, &scalar);
        if (scalar) {
            lua_getfield(L, -1, "item");
            lua_insert(L, -2);
            lua_call(L, 1, 1);
        }
        return 1;
    }
    return luaL_error(L, "index: expected an integer, a table, or a bool or int64 tensor "
                         "(got %s)",
                      luaL_typename(L, 2));
}

int lunar_lua_index_set(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r, *key;
    lua_settop(L, 3);
    if (lunar_grad_enabled() && t->requires_grad)
        return luaL_error(L, "index: cannot assign into a tensor that requires grad; assign "
                             "under lunar.no_grad, or build a new tensor (masked_fill, "
                             "scatter, where)");
    if ((key = lunar_lua_test(L, 2)) != NULL) {
        lunar_tensor *v = check_value(L, 3, t);
        if (key->dtype == LUNAR_BOOL) {
            syntax_mask(L, t, key);
            if (v->ndim == 0) LUNAR_LUA_TRY(L, lunar_masked_fill_(t, key, v));
            else LUNAR_LUA_TRY(L, lunar_masked_scatter_(t, key, v));
            return 0;
        }
        lunar_tensor *idx = check_index(L, 2, "index");
        LUNAR_LUA_TRY(L, lunar_index_copy_(t, 0, idx, v));
        return 0;
    }
    lua_Integer i = 0;
    if (is_position(L, 2, &i)) {
        if (t->ndim == 0) return luaL_error(L, "index: cannot index a 0-d tensor");
        int64_t p = position(i, t->shape[0]);
        if (p < 0 || p >= t->shape[0])
            return luaL_error(L, "index: index %d out of range for dim 1 of size %d", (int)i,
                              (int)t->shape[0]);
        LUNAR_LUA_TRY(L, lunar_select(&r, t, 0, p));
        anchor(L, r);
    } else if (lua_type(L, 2) == LUA_TTABLE) {
        bool scalar;
        r = table_view(L, t, 2, true, &scalar);
    } else {
        return luaL_error(L, "index: expected an integer, a table, or a bool or int64 tensor "
                             "(got %s)",
                          luaL_typename(L, 2));
    }
    lunar_tensor *v = check_value(L, 3, r);
    LUNAR_LUA_TRY(L, lunar_copy_(r, v));
    return 0;
}

/* ---- the indexing family ---- */

/* x:gather(dim, index) */
static int l_gather(lua_State *L) {
    lunar_tensor *x = lunar_lua_check(L, 1), *r;
    int dim = lunar_lua_checkdim(L, 2, x->ndim);
    lunar_tensor *idx = check_index(L, 3, "gather");
    return push_result(L, lunar_gather(&r, x, dim, idx), &r);
}

/* x:scatter(dim, index, src or number) and friends */
static int scatter(lua_State *L, bool accumulate, bool inplace) {
    const char *fname = accumulate ? "scatter_add" : "scatter";
    lunar_tensor *x = lunar_lua_check(L, 1), *r = NULL;
    int dim = lunar_lua_checkdim(L, 2, x->ndim);
    lunar_tensor *idx = check_index(L, 3, fname);
    lunar_tensor *src = check_value(L, 4, x);
    if (inplace) {
        LUNAR_LUA_TRY(L, lunar_scatter_(x, dim, idx, src, accumulate));
        lua_settop(L, 1);
        return 1;
    }
    return push_result(L, lunar_scatter(&r, x, dim, idx, src, accumulate), &r);
}

static int l_scatter(lua_State *L) { return scatter(L, false, false); }
static int l_scatter_(lua_State *L) { return scatter(L, false, true); }
static int l_scatter_add(lua_State *L) { return scatter(L, true, false); }
static int l_scatter_add_(lua_State *L) { return scatter(L, true, true); }

/* x:index_select(dim, index) */
static int l_index_select(lua_State *L) {
    lunar_tensor *x = lunar_lua_check(L, 1), *r;
    int dim = lunar_lua_checkdim(L, 2, x->ndim);
    lunar_tensor *idx = check_index(L, 3, "index_select");
    return push_result(L, lunar_index_select(&r, x, dim, idx), &r);
}

/* x:index_add(dim, index, src [, {alpha = 1}]) */
static int index_add(lua_State *L, bool inplace) {
    lunar_tensor *x = lunar_lua_check(L, 1), *r = NULL;
    int dim = lunar_lua_checkdim(L, 2, x->ndim);
    double alpha = lua_type(L, 5) == LUA_TNUMBER ? lua_tonumber(L, 5)
                                                  : lunar_lua_optnumber(L, lunar_lua_opts(L, 5),
                                                                        "alpha", 1);
    lunar_tensor *idx = check_index(L, 3, "index_add");
    lunar_tensor *src = lunar_lua_check(L, 4);
    if (inplace) {
        LUNAR_LUA_TRY(L, lunar_index_add_(x, dim, idx, src, alpha));
        lua_settop(L, 1);
        return 1;
    }
    return push_result(L, lunar_index_add(&r, x, dim, idx, src, alpha), &r);
}

static int l_index_add(lua_State *L) { return index_add(L, false); }
static int l_index_add_(lua_State *L) { return index_add(L, true); }

/* x:index_copy_(dim, index, src) and x:index_fill_(dim, index, value) */
static int l_index_copy_(lua_State *L) {
    lunar_tensor *x = lunar_lua_check(L, 1);
    int dim = lunar_lua_checkdim(L, 2, x->ndim);
    lunar_tensor *idx = check_index(L, 3, "index_copy_");
    lunar_tensor *src = check_value(L, 4, x);
    LUNAR_LUA_TRY(L, lunar_index_copy_(x, dim, idx, src));
    lua_settop(L, 1);
    return 1;
}

static lunar_tensor *check_mask(lua_State *L, int idx, const char *fname) {
    lunar_tensor *m = lunar_lua_test(L, idx);
    if (!m) luaL_error(L, "%s: mask must be a bool tensor (got %s)", fname,
                       luaL_typename(L, idx));
    return m;
}

/* x:masked_fill(mask, value) */
static int masked_fill(lua_State *L, bool inplace) {
    lunar_tensor *x = lunar_lua_check(L, 1), *r = NULL;
    lunar_tensor *mask = check_mask(L, 2, "masked_fill");
    lunar_tensor *v = check_value(L, 3, x);
    if (inplace) {
        LUNAR_LUA_TRY(L, lunar_masked_fill_(x, mask, v));
        lua_settop(L, 1);
        return 1;
    }
    return push_result(L, lunar_masked_fill(&r, x, mask, v), &r);
}

static int l_masked_fill(lua_State *L) { return masked_fill(L, false); }
static int l_masked_fill_(lua_State *L) { return masked_fill(L, true); }

static int l_masked_select(lua_State *L) {
    lunar_tensor *x = lunar_lua_check(L, 1), *r;
    lunar_tensor *mask = check_mask(L, 2, "masked_select");
    return push_result(L, lunar_masked_select(&r, x, mask), &r);
}

static int l_masked_scatter_(lua_State *L) {
    lunar_tensor *x = lunar_lua_check(L, 1);
    lunar_tensor *mask = check_mask(L, 2, "masked_scatter_");
    lunar_tensor *src = check_value(L, 3, x);
    LUNAR_LUA_TRY(L, lunar_masked_scatter_(x, mask, src));
    lua_settop(L, 1);
    return 1;
}

/* x:nonzero(): [count, ndim] int64, 1-based coordinates */
static int l_nonzero(lua_State *L) {
    lunar_tensor *r;
    LUNAR_LUA_TRY(L, lunar_nonzero(&r, lunar_lua_check(L, 1)));
    push_index(L, r);
    return 1;
}

static int l_count_nonzero(lua_State *L) {
    int64_t n;
    LUNAR_LUA_TRY(L, lunar_count_nonzero(&n, lunar_lua_check(L, 1)));
    lua_pushinteger(L, n);
    return 1;
}

/* lunar.one_hot(labels [, num_classes]): labels 1-based; class c is column c */
static int l_one_hot(lua_State *L) {
    lua_Integer c = luaL_optinteger(L, 2, -1);
    if (c == 0 || c < -1) return luaL_error(L, "one_hot: num_classes must be positive (got %d)",
                                            (int)c);
    lunar_tensor *labels = check_index(L, 1, "one_hot"), *r;
    return push_result(L, lunar_one_hot(&r, labels, c), &r);
}

/* x:sort([dim = -1] [, descending | {descending = false, stable = false}]) */
static int l_sort(lua_State *L) {
    lunar_tensor *x = lunar_lua_check(L, 1), *v, *i;
    int dim = x->ndim ? x->ndim - 1 : 0, next = 2;
    if (lua_isinteger(L, 2)) {
        dim = lunar_lua_dim(L, lua_tointeger(L, 2), x->ndim, "sort");
        next = 3;
    }
    bool desc = lua_isboolean(L, next) ? lua_toboolean(L, next)
                                       : lunar_lua_optbool(L, lunar_lua_opts(L, next),
                                                           "descending", false);
    /* every sort is stable, so the stable option needs nothing more */
    LUNAR_LUA_TRY(L, lunar_sort(&v, &i, x, dim, desc));
    lunar_lua_push(L, v);
    push_index(L, i);
    return 2;
}

/* x:topk(k [, dim = -1] [, {largest = true, sorted = true}]) */
static int l_topk(lua_State *L) {
    lunar_tensor *x = lunar_lua_check(L, 1), *v, *i;
    lua_Integer k = luaL_checkinteger(L, 2);
    int dim = x->ndim ? x->ndim - 1 : 0, next = 3;
    if (lua_isinteger(L, 3)) {
        dim = lunar_lua_dim(L, lua_tointeger(L, 3), x->ndim, "topk");
        next = 4;
    }
    int opts = lunar_lua_opts(L, next);
    bool largest = lunar_lua_optbool(L, opts, "largest", true);
    bool sorted = lunar_lua_optbool(L, opts, "sorted", true);
    LUNAR_LUA_TRY(L, lunar_topk(&v, &i, x, k, dim, largest, sorted));
    lunar_lua_push(L, v);
    push_index(L, i);
    return 2;
}

/* x:unique({sorted = true, return_inverse = false, return_counts = false}):
 * values [, inverse (1-based)] [, counts] */
static int l_unique(lua_State *L) {
    lunar_tensor *x = lunar_lua_check(L, 1), *v, *inv = NULL, *cnt = NULL;
    int opts = lunar_lua_opts(L, 2);
    bool want_inv = lunar_lua_optbool(L, opts, "return_inverse", false);
    bool want_cnt = lunar_lua_optbool(L, opts, "return_counts", false);
    LUNAR_LUA_TRY(L, lunar_unique(&v, want_inv ? &inv : NULL, want_cnt ? &cnt : NULL, x));
    lunar_lua_push(L, v);
    int base = lua_gettop(L);
    if (want_cnt) lunar_lua_push(L, cnt); /* anchored before push_index may raise */
    if (want_inv) {
        push_index(L, inv);
        lua_insert(L, base + 1); /* values, inverse, counts */
    }
    int n = 1 + want_inv + want_cnt;
    return n;
}

static const luaL_Reg both[] = {
    {"gather", l_gather},
    {"scatter", l_scatter},
    {"scatter_", l_scatter_},
    {"scatter_add", l_scatter_add},
    {"scatter_add_", l_scatter_add_},
    {"index_select", l_index_select},
    {"index_add", l_index_add},
    {"index_add_", l_index_add_},
    {"index_copy_", l_index_copy_},
    {"index_fill_", l_index_copy_},
    {"masked_fill", l_masked_fill},
    {"masked_fill_", l_masked_fill_},
    {"masked_select", l_masked_select},
    {"masked_scatter_", l_masked_scatter_},
    {"nonzero", l_nonzero},
    {"count_nonzero", l_count_nonzero},
    {"one_hot", l_one_hot},
    {"sort", l_sort},
    {"topk", l_topk},
    {"unique", l_unique},
    {NULL, NULL},
};

void lunar_lua_open_index(lua_State *L) { lunar_lua_register(L, both, true, true); }
