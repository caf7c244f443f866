/*
 * ops.c (binding) - the element-wise families as tensor methods, module functions and
 * operators: unary ops, binary ops with tensors or numbers, clamp, where, in-place forms.
 */
#include "binding.h"

#include <math.h>

static int unary(lua_State *L, lunar_unary_op op) {
    lunar_tensor *r;
    LUNAR_LUA_TRY(L, lunar_unary(&r, op, lunar_lua_check(L, 1), NULL));
    lunar_lua_push(L, r);
    return 1;
}

static int unary_(lua_State *L, lunar_unary_op op) {
    LUNAR_LUA_TRY(L, lunar_unary_(lunar_lua_check(L, 1), op, NULL));
    lua_settop(L, 1);
    return 1;
}

static double number_operand(lua_State *L, int idx) {
    if (lua_isboolean(L, idx)) return lua_toboolean(L, idx);
    if (!lua_isnumber(L, idx)) luaL_typeerror(L, idx, "tensor or number");
    return lua_tonumber(L, idx);
}

static int binary(lua_State *L, lunar_binary_op op) {
    lunar_tensor *a = lunar_lua_test(L, 1), *b = lunar_lua_test(L, 2), *r;
    if (a && b) LUNAR_LUA_TRY(L, lunar_binary(&r, op, a, b));
    else if (a) LUNAR_LUA_TRY(L, lunar_binary_scalar(&r, op, a, number_operand(L, 2), false));
    else if (b) LUNAR_LUA_TRY(L, lunar_binary_scalar(&r, op, b, number_operand(L, 1), true));
    else return luaL_typeerror(L, 1, "tensor");
    lunar_lua_push(L, r);
    return 1;
}

static int binary_(lua_State *L, lunar_binary_op op) {
    lunar_tensor *t = lunar_lua_check(L, 1);
    lunar_tensor *b = lunar_lua_check_operand(L, 2, t);
    lunar_status st = lunar_binary_(t, op, b);
    lunar_tensor_release(b);
    if (st != LUNAR_OK) return lunar_lua_raise(L);
    lua_settop(L, 1);
    return 1;
}

#define UNARY(name, OP)                                                                       \
    static int lu_##name(lua_State *L) { return unary(L, OP); }                                \
    static int lu_##name##_(lua_State *L) { return unary_(L, OP); }
UNARY(neg, LUNAR_OP_NEG)
UNARY(abs, LUNAR_OP_ABS)
UNARY(sign, LUNAR_OP_SIGN)
UNARY(exp, LUNAR_OP_EXP)
UNARY(expm1, LUNAR_OP_EXPM1)
UNARY(log, LUNAR_OP_LOG)
UNARY(log1p, LUNAR_OP_LOG1P)
UNARY(sqrt, LUNAR_OP_SQRT)
UNARY(rsqrt, LUNAR_OP_RSQRT)
UNARY(square, LUNAR_OP_SQUARE)
UNARY(sin, LUNAR_OP_SIN)
UNARY(cos, LUNAR_OP_COS)
UNARY(tanh, LUNAR_OP_TANH)
UNARY(sigmoid, LUNAR_OP_SIGMOID)
UNARY(relu, LUNAR_OP_RELU)
UNARY(floor, LUNAR_OP_FLOOR)
UNARY(ceil, LUNAR_OP_CEIL)
UNARY(round, LUNAR_OP_ROUND)
UNARY(trunc, LUNAR_OP_TRUNC)
UNARY(reciprocal, LUNAR_OP_RECIPROCAL)
UNARY(erf, LUNAR_OP_ERF)
UNARY(logical_not, LUNAR_OP_LOGICAL_NOT)

#define BINARY(name, OP)                                                                      \
    static int lu_##name(lua_State *L) { return binary(L, OP); }                               \
    static int lu_##name##_(lua_State *L) { return binary_(L, OP); }
BINARY(add, LUNAR_OP_ADD)
BINARY(sub, LUNAR_OP_SUB)
BINARY(mul, LUNAR_OP_MUL)
BINARY(div, LUNAR_OP_DIV)
BINARY(pow, LUNAR_OP_POW)
BINARY(atan2, LUNAR_OP_ATAN2)
BINARY(maximum, LUNAR_OP_MAXIMUM)
BINARY(minimum, LUNAR_OP_MINIMUM)
BINARY(fmod, LUNAR_OP_FMOD)
BINARY(remainder, LUNAR_OP_REMAINDER)
BINARY(eq, LUNAR_OP_EQ)
BINARY(ne, LUNAR_OP_NE)
BINARY(lt, LUNAR_OP_LT)
BINARY(le, LUNAR_OP_LE)
BINARY(gt, LUNAR_OP_GT)
BINARY(ge, LUNAR_OP_GE)
BINARY(logical_and, LUNAR_OP_LOGICAL_AND)
BINARY(logical_or, LUNAR_OP_LOGICAL_OR)
BINARY(logical_xor, LUNAR_OP_LOGICAL_XOR)

/* clamp(min, max): either bound may be nil */
static void clamp_bounds(lua_State *L, double *p) {
    p[0] = lua_isnoneornil(L, 2) ? -INFINITY : luaL_checknumber(L, 2);
    p[1] = lua_isnoneornil(L, 3) ? INFINITY : luaL_checknumber(L, 3);
    if (lua_isnoneornil(L, 2) && lua_isnoneornil(L, 3))
        luaL_error(L, "clamp: give at least one of min and max");
}

static int lu_clamp(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1), *r;
    double p[2];
    clamp_bounds(L, p);
    LUNAR_LUA_TRY(L, lunar_unary(&r, LUNAR_OP_CLAMP, t, p));
    lunar_lua_push(L, r);
    return 1;
}

static int lu_clamp_(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1);
    double p[2];
    clamp_bounds(L, p);
    LUNAR_LUA_TRY(L, lunar_unary_(t, LUNAR_OP_CLAMP, p));
    lua_settop(L, 1);
    return 1;
}

/* lunar.where(cond, a, b); a and b may be numbers */
static int l_where(lua_State *L) {
    lunar_tensor *cond = lunar_lua_check(L, 1);
    lunar_tensor *ta = lunar_lua_test(L, 2), *tb = lunar_lua_test(L, 3);
    const lunar_tensor *like = ta ? ta : tb;
    lunar_tensor *a = lunar_lua_check_operand(L, 2, like);
    lunar_tensor *b = lunar_lua_test(L, 3) ? lunar_lua_check_operand(L, 3, NULL) : NULL;
    if (!b) {
        if (!lua_isnumber(L, 3) && !lua_isboolean(L, 3)) {
            lunar_tensor_release(a);
            return luaL_typeerror(L, 3, "tensor or number");
        }
        b = lunar_lua_check_operand(L, 3, a);
    }
    lunar_tensor *r;
    lunar_status st = lunar_where(&r, cond, a, b);
    lunar_tensor_release(a);
    lunar_tensor_release(b);
    if (st != LUNAR_OK) return lunar_lua_raise(L);
    lunar_lua_push(L, r);
    return 1;
}

/* x:where(cond, y) = where(cond, x, y), as in PyTorch */
static int t_where(lua_State *L) {
    lua_settop(L, 3);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 3);
    lua_replace(L, 3);
    lua_replace(L, 2);
    lua_replace(L, 1);
    return l_where(L);
}

static int l_fill_(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1);
    LUNAR_LUA_TRY(L, lunar_fill_(t, number_operand(L, 2)));
    lua_settop(L, 1);
    return 1;
}

static int l_zero_(lua_State *L) {
    LUNAR_LUA_TRY(L, lunar_fill_(lunar_lua_check(L, 1), 0));
    lua_settop(L, 1);
    return 1;
}

static int l_copy_(lua_State *L) {
    lunar_tensor *t = lunar_lua_check(L, 1);
    lunar_tensor *src = lunar_lua_check_operand(L, 2, t);
    lunar_status st = lunar_copy_(t, src);
    lunar_tensor_release(src);
    if (st != LUNAR_OK) return lunar_lua_raise(L);
    lua_settop(L, 1);
    return 1;
}

static int mm_unm(lua_State *L) { return unary(L, LUNAR_OP_NEG); }

static const luaL_Reg both[] = {
#define R(name) {#name, lu_##name}, {#name "_", lu_##name##_}
    R(neg), R(abs), R(sign), R(exp), R(expm1), R(log), R(log1p), R(sqrt), R(rsqrt), R(square),
    R(sin), R(cos), R(tanh), R(sigmoid), R(relu), R(floor), R(ceil), R(round), R(trunc),
    R(reciprocal), R(erf), R(logical_not), R(add), R(sub), R(mul), R(div), R(pow), R(atan2),
    R(maximum), R(minimum), R(fmod), R(remainder), R(eq), R(ne), R(lt), R(le), R(gt), R(ge),
    R(logical_and), R(logical_or), R(logical_xor), R(clamp),
#undef R
    {"clip", lu_clamp}, {"negative", lu_neg}, {"fill_", l_fill_}, {"zero_", l_zero_},
    {"copy_", l_copy_}, {NULL, NULL},
};

void lunar_lua_open_ops(lua_State *L) {
    lunar_lua_register(L, both, true, true);
    luaL_Reg fn[] = {{"where", l_where}, {NULL, NULL}};
    lunar_lua_register(L, fn, false, true);
    luaL_Reg m[] = {{"where", t_where}, {NULL, NULL}};
    lunar_lua_register(L, m, true, false);
    luaL_getmetatable(L, LUNAR_TENSOR_MT);
    luaL_Reg mm[] = {{"__add", lu_add}, {"__sub", lu_sub}, {"__mul", lu_mul}, {"__div", lu_div},
                     {"__pow", lu_pow}, {"__mod", lu_remainder}, {"__unm", mm_unm},
                     {NULL, NULL}};
    luaL_setfuncs(L, mm, 0);
    lua_pop(L, 1);
}
