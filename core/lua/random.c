/*
 * random.c (binding) - the random family: generators (lunar.Generator, the default one, its
 * seed and state), the random constructors, the in-place fills, and lunar.philox (the raw
 * block function, a testing aid).
 *
 * Every draw takes an optional {generator = g} in its options table; without one it uses
 * the default generator, which lunar.manual_seed reseeds.
 */
#include "binding.h"
#include "philox.h"

#include <string.h>

#define GENERATOR_MT "lunar.Generator"
/* The seed of a generator made without one, the same as the default generator's. */
#define DEFAULT_SEED 67280421310721ull

/* A generator userdata: the default one is wrapped without being owned. */
typedef struct {
    lunar_generator *g;
    bool owned;
} gen_box;

static lunar_generator *check_gen(lua_State *L, int idx) {
    return ((gen_box *)luaL_checkudata(L, idx, GENERATOR_MT))->g;
}

static void push_gen(lua_State *L, lunar_generator *g, bool owned) {
    gen_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->g = g;
    b->owned = owned;
    luaL_setmetatable(L, GENERATOR_MT);
}

/* The generator option of the options table at opts (0 = none), or NULL for the default. */
static lunar_generator *opt_gen(lua_State *L, int opts) {
    if (!opts) return NULL;
    lua_getfield(L, opts, "generator");
    lunar_generator *g = NULL;
    if (!lua_isnil(L, -1)) {
        gen_box *b = luaL_testudata(L, -1, GENERATOR_MT);
        if (!b)
            luaL_error(L, "option 'generator' must be a lunar.Generator (got %s)",
                       luaL_typename(L, -1));
        else
            g = b->g;
    }
    lua_pop(L, 1);
    return g;
}

/* The options table at idx, raising when something else is there. */
static int check_opts(lua_State *L, int idx, const char *fname) {
    int opts = lunar_lua_opts(L, idx);
    if (!opts && !lua_isnoneornil(L, idx))
        luaL_error(L, "%s: expected an options table at argument %d, got a %s", fname, idx,
                   luaL_typename(L, idx));
    return opts;
}

static lunar_dtype opt_dtype(lua_State *L, int opts, lunar_dtype def) {
    const char *name = lunar_lua_optstring(L, opts, "dtype", NULL);
    return name ? lunar_lua_dtype_from_name(L, name) : def;
}

/* A fresh tensor on the device that opts names ({device = "opencl:1"} or a lunar.device()
 * handle): the random constructors then draw with that device's kernel. False without one. */
static bool opt_device_tensor(lua_State *L, int opts, lunar_tensor **t, int ndim,
                              const int64_t *shape, lunar_dtype dt) {
    if (!opts) return false;
    int top = lua_gettop(L);
    lua_getfield(L, opts, "device");
    if (lua_isnil(L, -1)) {
        lua_settop(L, top);
        return false;
    }
    const char *name = lunar_lua_device_name(L, lua_gettop(L));
    const lunar_backend *be;
    int dev;
    LUNAR_LUA_TRY(L, lunar_device_parse(name, &be, &dev));
    LUNAR_LUA_TRY(L, lunar_tensor_new_on(t, ndim, shape, dt, be, dev));
    lua_settop(L, top);
    return true;
}

/* Pushes t, first making it require grad when the options ask for it. */
static int push_result(lua_State *L, lunar_tensor *t, int opts) {
    if (lunar_lua_optbool(L, opts, "requires_grad", false) &&
        lunar_tensor_set_requires_grad(t, true) != LUNAR_OK) {
        lunar_tensor_release(t);
        return lunar_lua_raise(L);
    }
    lunar_lua_push(L, t);
    return 1;
}

static uint64_t check_u64(lua_State *L, int idx) { return (uint64_t)luaL_checkinteger(L, idx); }

/* Reads {seed = , offset = } from the table at idx. */
static void check_state(lua_State *L, int idx, uint64_t *seed, uint64_t *offset) {
    luaL_checktype(L, idx, LUA_TTABLE);
    const char *keys[2] = {"seed", "offset"};
    uint64_t *dst[2] = {seed, offset};
    for (int k = 0; k < 2; k++) {
        lua_getfield(L, idx, keys[k]);
        if (!lua_isinteger(L, -1))
            luaL_error(L, "set_state: the state needs an integer '%s' (got %s)", keys[k],
                       luaL_typename(L, -1));
        *dst[k] = (uint64_t)lua_tointeger(L, -1);
        lua_pop(L, 1);
    }
}

static int push_state(lua_State *L, const lunar_generator *g) {
    uint64_t seed, offset;
    lunar_generator_get_state(g, &seed, &offset);
    lua_createtable(L, 0, 2);
    lua_pushinteger(L, (lua_Integer)seed);
    lua_setfield(L, -2, "seed");
    lua_pushinteger(L, (lua_Integer)offset);
    lua_setfield(L, -2, "offset");
    return 1;
}

/* ---- generators ---- */

/* lunar.Generator([seed]) */
static int l_generator(lua_State *L) {
    uint64_t seed = lua_isnoneornil(L, 1) ? DEFAULT_SEED : check_u64(L, 1);
    lunar_generator *g = lunar_generator_new(seed);
    if (!g) return luaL_error(L, "Generator: out of memory");
    push_gen(L, g, true);
    return 1;
}

static int g_gc(lua_State *L) {
    gen_box *b = luaL_checkudata(L, 1, GENERATOR_MT);
    if (b->owned) lunar_generator_free(b->g);
    b->g = NULL;
    b->owned = false;
    return 0;
}

/* g:manual_seed(s): reseeds (offset 0); returns g */
static int g_manual_seed(lua_State *L) {
    lunar_generator_seed(check_gen(L, 1), check_u64(L, 2));
    lua_settop(L, 1);
    return 1;
}

/* g:seed(): the seed it was last given */
static int g_seed(lua_State *L) {
    uint64_t seed, offset;
    lunar_generator_get_state(check_gen(L, 1), &seed, &offset);
    lua_pushinteger(L, (lua_Integer)seed);
    return 1;
}

static int g_get_state(lua_State *L) { return push_state(L, check_gen(L, 1)); }

static int g_set_state(lua_State *L) {
    lunar_generator *g = check_gen(L, 1);
    uint64_t seed, offset;
    check_state(L, 2, &seed, &offset);
    lunar_generator_set_state(g, seed, offset);
    lua_settop(L, 1);
    return 1;
}

static int g_tostring(lua_State *L) {
    uint64_t seed, offset;
    lunar_generator_get_state(check_gen(L, 1), &seed, &offset);
    lua_pushfstring(L, "Generator(seed=%I, offset=%I)", (lua_Integer)seed, (lua_Integer)offset);
    return 1;
}

static int l_manual_seed(lua_State *L) {
    lunar_manual_seed(check_u64(L, 1));
    return 0;
}

/* lunar.initial_seed(): the default generator's seed */
static int l_initial_seed(lua_State *L) {
    uint64_t seed, offset;
    lunar_generator_get_state(lunar_generator_default(), &seed, &offset);
    lua_pushinteger(L, (lua_Integer)seed);
    return 1;
}

static int l_get_rng_state(lua_State *L) { return push_state(L, lunar_generator_default()); }

static int l_set_rng_state(lua_State *L) {
    uint64_t seed, offset;
    check_state(L, 1, &seed, &offset);
    lunar_generator_set_state(lunar_generator_default(), seed, offset);
    return 0;
}

/* lunar.philox(counter, key): the Philox4x32-10 block of a 4-word counter and a 2-word key
 * (tables of integers in [0, 2^32)), as 4 integers. A testing aid for the stream. */
static int l_philox(lua_State *L) {
    uint32_t words[6], out[4];
    const int lens[2] = {4, 2};
    for (int a = 0, w = 0; a < 2; a++) {
        luaL_checktype(L, a + 1, LUA_TTABLE);
        if ((int)lua_rawlen(L, a + 1) != lens[a])
            return luaL_error(L, "philox: the %s needs %d words", a ? "key" : "counter",
                              lens[a]);
        for (int i = 1; i <= lens[a]; i++, w++) {
            lua_rawgeti(L, a + 1, i);
            lua_Integer v = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
            if (v < 0 || v > 0xffffffffll)
                return luaL_error(L, "philox: word %d of the %s must be an integer in "
                                     "[0, 2^32)", i, a ? "key" : "counter");
            words[w] = (uint32_t)v;
            lua_pop(L, 1);
        }
    }
    philox4x32_10(words, words + 4, out);
    for (int k = 0; k < 4; k++) lua_pushinteger(L, out[k]);
    return 4;
}

/* ---- constructors ---- */

/* lunar.rand(shape... [, opts]) and lunar.randn */
static int rand_shape(lua_State *L, bool normal) {
    int ndim;
    int64_t shape[LUNAR_MAX_DIMS];
    const char *fname = normal ? "randn" : "rand";
    int opts = check_opts(L, lunar_lua_shape(L, 1, &ndim, shape), fname);
    lunar_dtype dt = opt_dtype(L, opts, lunar_lua_default_dtype());
    lunar_generator *g = opt_gen(L, opts);
    lunar_tensor *t;
    if (lunar_dtype_is_float(dt) && opt_device_tensor(L, opts, &t, ndim, shape, dt)) {
        if ((normal ? lunar_normal_(t, 0, 1, g) : lunar_uniform_(t, 0, 1, g)) != LUNAR_OK) {
            lunar_tensor_release(t);
            return lunar_lua_raise(L);
        }
    } else if (normal) {
        LUNAR_LUA_TRY(L, lunar_randn(&t, ndim, shape, dt, g));
    } else {
        LUNAR_LUA_TRY(L, lunar_rand(&t, ndim, shape, dt, g));
    }
    return push_result(L, t, opts);
}

static int l_rand(lua_State *L) { return rand_shape(L, false); }
static int l_randn(lua_State *L) { return rand_shape(L, true); }

/* lunar.rand_like(x [, opts]) and lunar.randn_like: x's shape, dtype and device */
static int rand_like(lua_State *L, bool normal) {
    lunar_tensor *x = lunar_lua_check(L, 1);
    int opts = check_opts(L, 2, normal ? "randn_like" : "rand_like");
    lunar_dtype dt = opt_dtype(L, opts, x->dtype);
    lunar_generator *g = opt_gen(L, opts);
    lunar_tensor *t;
    LUNAR_LUA_TRY(L, lunar_tensor_new(&t, x->ndim, x->shape, dt, x));
    lunar_status st = normal ? lunar_normal_(t, 0, 1, g) : lunar_uniform_(t, 0, 1, g);
    if (st != LUNAR_OK) {
        lunar_tensor_release(t);
        return lunar_lua_raise(L);
    }
    return push_result(L, t, opts);
}

static int l_rand_like(lua_State *L) { return rand_like(L, false); }
static int l_randn_like(lua_State *L) { return rand_like(L, true); }

/* Reads (low, high) or (high) at idx: returns the index after them. */
static int int_bounds(lua_State *L, int idx, bool high_only, lua_Integer *low,
                      lua_Integer *high) {
    if (high_only) {
        *low = 0;
        *high = luaL_checkinteger(L, idx);
        return idx + 1;
    }
    *low = luaL_checkinteger(L, idx);
    *high = luaL_checkinteger(L, idx + 1);
    return idx + 2;
}

/* lunar.randint(low, high, shape... [, opts]) or lunar.randint(high, {shape} [, opts]) */
static int l_randint(lua_State *L) {
    lua_Integer low, high;
    bool high_only = lua_type(L, 2) == LUA_TTABLE && !lunar_lua_test(L, 2);
    int idx = int_bounds(L, 1, high_only, &low, &high);
    int ndim;
    int64_t shape[LUNAR_MAX_DIMS];
    int opts = check_opts(L, lunar_lua_shape(L, idx, &ndim, shape), "randint");
    lunar_tensor *t;
    lunar_dtype dt = opt_dtype(L, opts, LUNAR_I64);
    lunar_generator *g = opt_gen(L, opts);
    if (opt_device_tensor(L, opts, &t, ndim, shape, dt)) {
        if (lunar_randint_(t, low, high, g) != LUNAR_OK) {
            lunar_tensor_release(t);
            return lunar_lua_raise(L);
        }
    } else {
        LUNAR_LUA_TRY(L, lunar_randint(&t, low, high, ndim, shape, dt, g));
    }
    return push_result(L, t, opts);
}

/* lunar.randint_like(x, [low,] high [, opts]): x's shape and device; x's dtype when it is an
 * integer one, else int64 */
static int l_randint_like(lua_State *L) {
    lunar_tensor *x = lunar_lua_check(L, 1);
    lua_Integer low, high;
    int idx = int_bounds(L, 2, lua_type(L, 3) != LUA_TNUMBER, &low, &high);
    int opts = check_opts(L, idx, "randint_like");
    lunar_dtype def = x->dtype == LUNAR_U8 || x->dtype == LUNAR_I32 ? x->dtype : LUNAR_I64;
    lunar_tensor *t;
    LUNAR_LUA_TRY(L, lunar_tensor_new(&t, x->ndim, x->shape, opt_dtype(L, opts, def), x));
    if (lunar_randint_(t, low, high, opt_gen(L, opts)) != LUNAR_OK) {
        lunar_tensor_release(t);
        return lunar_lua_raise(L);
    }
    return push_result(L, t, opts);
}

/* lunar.randperm(n [, opts]): a permutation of 1..n (1-based, like every Lua index) */
static int l_randperm(lua_State *L) {
    lua_Integer n = luaL_checkinteger(L, 1);
    int opts = check_opts(L, 2, "randperm");
    lunar_tensor *p, *t;
    LUNAR_LUA_TRY(L, lunar_randperm(&p, n, opt_dtype(L, opts, LUNAR_I64), opt_gen(L, opts)));
    lunar_status st = lunar_binary_scalar(&t, LUNAR_OP_ADD, p, 1, false);
    lunar_tensor_release(p);
    LUNAR_LUA_TRY(L, st);
    lunar_lua_push(L, t);
    return 1;
}

/* lunar.bernoulli(p [, opts]) / p:bernoulli(): 1 with probability p[i] (p's dtype);
 * t:bernoulli(p_number [, opts]): t's shape and dtype, 1 with probability p */
static int l_bernoulli(lua_State *L) {
    lunar_tensor *x = lunar_lua_check(L, 1), *t;
    if (lua_type(L, 2) == LUA_TNUMBER) {
        double p = lua_tonumber(L, 2);
        lunar_generator *g = opt_gen(L, check_opts(L, 3, "bernoulli"));
        LUNAR_LUA_TRY(L, lunar_tensor_new(&t, x->ndim, x->shape, x->dtype, x));
        if (lunar_bernoulli_(t, p, g) != LUNAR_OK) {
            lunar_tensor_release(t);
            return lunar_lua_raise(L);
        }
    } else {
        LUNAR_LUA_TRY(L, lunar_bernoulli(&t, x, opt_gen(L, check_opts(L, 2, "bernoulli"))));
    }
    lunar_lua_push(L, t);
    return 1;
}

/* ---- in place: each returns the tensor ---- */

/* t:uniform_([a = 0, b = 1] [, opts]): U[a, b) */
static int t_uniform_(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1);
    double a = luaL_optnumber(L, 2, 0), b = luaL_optnumber(L, 3, 1);
    int opts = check_opts(L, lua_type(L, 2) == LUA_TTABLE ? 2 : 4, "uniform_");
    LUNAR_LUA_TRY(L, lunar_uniform_(t, a, b, opt_gen(L, opts)));
    lua_settop(L, 1);
    return 1;
}

/* t:normal_([mean = 0, std = 1] [, opts]) */
static int t_normal_(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1);
    double mean = luaL_optnumber(L, 2, 0), std = luaL_optnumber(L, 3, 1);
    int opts = check_opts(L, lua_type(L, 2) == LUA_TTABLE ? 2 : 4, "normal_");
    LUNAR_LUA_TRY(L, lunar_normal_(t, mean, std, opt_gen(L, opts)));
    lua_settop(L, 1);
    return 1;
}

/* t:bernoulli_([p = 0.5] [, opts]) */
static int t_bernoulli_(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1);
    double p = luaL_optnumber(L, 2, 0.5);
    int opts = check_opts(L, lua_type(L, 2) == LUA_TTABLE ? 2 : 3, "bernoulli_");
    LUNAR_LUA_TRY(L, lunar_bernoulli_(t, p, opt_gen(L, opts)));
    lua_settop(L, 1);
    return 1;
}

/* t:random_([low,] high [, opts]): integers in [low, high) (low = 0 when only high) */
static int t_random_(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1);
    lua_Integer low, high;
    int idx = int_bounds(L, 2, lua_type(L, 3) != LUA_TNUMBER, &low, &high);
    int opts = check_opts(L, idx, "random_");
    LUNAR_LUA_TRY(L, lunar_randint_(t, low, high, opt_gen(L, opts)));
    lua_settop(L, 1);
    return 1;
}

/* ---- registration ---- */

static const luaL_Reg generator_methods[] = {
    {"manual_seed", g_manual_seed}, {"seed", g_seed},           {"get_state", g_get_state},
    {"set_state", g_set_state},     {NULL, NULL},
};

static const luaL_Reg module_fns[] = {
    {"Generator", l_generator},
    {"manual_seed", l_manual_seed},
    {"initial_seed", l_initial_seed},
    {"get_rng_state", l_get_rng_state},
    {"set_rng_state", l_set_rng_state},
    {"philox", l_philox},
    {"rand", l_rand},
    {"randn", l_randn},
    {"rand_like", l_rand_like},
    {"randn_like", l_randn_like},
    {"randint", l_randint},
    {"randint_like", l_randint_like},
    {"randperm", l_randperm},
    {NULL, NULL},
};

static const luaL_Reg both_fns[] = {
    {"bernoulli", l_bernoulli},
    {NULL, NULL},
};

static const luaL_Reg tensor_methods[] = {
    {"uniform_", t_uniform_},
    {"normal_", t_normal_},
    {"bernoulli_", t_bernoulli_},
    {"random_", t_random_},
    {NULL, NULL},
};

void lunar_lua_open_random(lua_State *L) {
    luaL_newmetatable(L, GENERATOR_MT);
    lua_newtable(L);
    luaL_setfuncs(L, generator_methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, g_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, g_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);

    lunar_lua_register(L, module_fns, false, true);
    lunar_lua_register(L, both_fns, true, true);
    lunar_lua_register(L, tensor_methods, true, false);
    push_gen(L, lunar_generator_default(), false);
    lua_setfield(L, 1, "default_generator");
}
