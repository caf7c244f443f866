/*
 * binding.h - what the Lua binding's files share: the tensor userdata, argument helpers,
 * error raising, and the registration of each family's functions.
 *
 * A tensor userdata boxes one reference to a lunar_tensor. Every family file defines a
 * lunar_lua_open_<family>(L) that calls lunar_lua_register with its functions; core.c
 * calls them all from luaopen_lunar_core.
 */
#ifndef LUNAR_BINDING_H
#define LUNAR_BINDING_H

#include "../lunar-impl.h"

#include <lauxlib.h>
#include <lua.h>

#define LUNAR_TENSOR_MT "lunar.Tensor"

/* The tensor at idx, or a Lua error naming the function and what was there instead. */
lunar_tensor *lunar_lua_check(lua_State *L, int idx);
/* The tensor at idx, or NULL when it is not a tensor. */
lunar_tensor *lunar_lua_test(lua_State *L, int idx);
/* A tensor at idx, or a Lua number turned into a 0-d tensor of like's dtype and device
 * (like may be NULL). The caller releases the result. */
lunar_tensor *lunar_lua_check_operand(lua_State *L, int idx, const lunar_tensor *like);
/* Pushes t as a userdata, taking over the caller's reference (t NULL pushes nil). */
void lunar_lua_push(lua_State *L, lunar_tensor *t);
/* Raises the last core error as a Lua error; never returns. */
int lunar_lua_raise(lua_State *L);
/* Raises when st is not LUNAR_OK. */
#define LUNAR_LUA_TRY(L, expr)                                                                \
    do {                                                                                      \
        if ((expr) != LUNAR_OK) lunar_lua_raise(L);                                           \
    } while (0)
/* A Lua dim (1-based, negative from the end) at idx as a 0-based C dim for ndim dims. */
int lunar_lua_checkdim(lua_State *L, int idx, int ndim);
int lunar_lua_optdim(lua_State *L, int idx, int ndim, int def);
/* Converts a Lua dim value (not a stack index) the same way; raises for 0 and out of range. */
int lunar_lua_dim(lua_State *L, lua_Integer d, int ndim, const char *fname);
/* A dtype name ("float32", "float", "int64", ...) at idx, or def when absent/nil. */
lunar_dtype lunar_lua_optdtype(lua_State *L, int idx, lunar_dtype def);
lunar_dtype lunar_lua_dtype_from_name(lua_State *L, const char *name);
/* Reads a shape given either as integers from idx on or as one table at idx; stops at the
 * first argument that is neither (an options table). Returns the index after the shape. */
int lunar_lua_shape(lua_State *L, int idx, int *ndim, int64_t *shape);
/* Field of an options table at idx (0 = none): boolean, number, string. */
bool lunar_lua_optbool(lua_State *L, int opts, const char *key, bool def);
lua_Number lunar_lua_optnumber(lua_State *L, int opts, const char *key, lua_Number def);
const char *lunar_lua_optstring(lua_State *L, int opts, const char *key, const char *def);
/* The options table at idx when there is one, else 0. */
int lunar_lua_opts(lua_State *L, int idx);
/* The default dtype for new float tensors (lunar.set_default_dtype). */
lunar_dtype lunar_lua_default_dtype(void);
void lunar_lua_set_default_dtype(lunar_dtype dt);

/* Registers fns as tensor methods (when methods is true) and module functions (when
 * functions is true). Expects the module table at stack index 1 and the methods table at
 * stack index 2 while luaopen_lunar_core runs. */
void lunar_lua_register(lua_State *L, const luaL_Reg *fns, bool methods, bool functions);

/* Each family's opener. */
void lunar_lua_open_tensor(lua_State *L);
void lunar_lua_open_ops(lua_State *L);
void lunar_lua_open_reduce(lua_State *L);
void lunar_lua_open_linalg(lua_State *L);
void lunar_lua_open_shape(lua_State *L);
void lunar_lua_open_index(lua_State *L);
void lunar_lua_open_random(lua_State *L);
void lunar_lua_open_io(lua_State *L);
void lunar_lua_open_autograd(lua_State *L);
void lunar_lua_open_system(lua_State *L);
void lunar_lua_open_conv(lua_State *L);
void lunar_lua_open_data(lua_State *L);
void lunar_lua_open_optim(lua_State *L);
void lunar_lua_open_nn(lua_State *L);

/* ---- devices (device.c) ---- */
void lunar_lua_open_device(lua_State *L);
/* The device name at idx: a string, or a handle from lunar.device(). */
const char *lunar_lua_device_name(lua_State *L, int idx);
/* Whether s names a device ("cpu", "opencl", "opencl:N") rather than a dtype. */
bool lunar_lua_is_device_name(const char *s);
/* Where a new tensor goes: the options table's device= (a name or a lunar.device handle)
 * when opts has one, else like's device when like is not NULL, else the default device
 * (LUNAR_DEVICE, lunar.set_default_device). Raises on a bad or unavailable device. */
void lunar_lua_target_device(lua_State *L, int opts, const lunar_tensor *like,
                             const lunar_backend **be, int *dev);
/* Moves the caller's new tensor *t to (be, dev) when it lives elsewhere, replacing *t;
 * on failure releases it and raises. */
void lunar_lua_place(lua_State *L, lunar_tensor **t, const lunar_backend *be, int dev);

#endif
