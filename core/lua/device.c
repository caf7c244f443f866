/*
 * device.c - devices in Lua: lunar.devices() lists the OpenCL devices, lunar.device(name)
 * returns a device handle ("cpu", "opencl", "opencl:N" with N from 1), t:device() names a
 * tensor's device. t:to(device) lives in tensor.c and uses lunar_lua_device_name.
 */
#include "binding.h"

#include <stdlib.h>
#include <string.h>

#define DEVICE_MT "lunar.Device"

/* lunar.devices(): {{index = 1, name = ..., type = "cpu"|"gpu"|..., platform = ...,
 * global_mem = bytes, fp64 = bool, driver = ...}, ...}; {} without OpenCL */
static int l_devices(lua_State *L) {
    int n = lunar_opencl_device_count();
    lua_createtable(L, n, 0);
    for (int i = 0; i < n; i++) {
        lunar_device_info info;
        LUNAR_LUA_TRY(L, lunar_opencl_device_info(i, &info));
        lua_createtable(L, 0, 8);
        lua_pushinteger(L, i + 1);
        lua_setfield(L, -2, "index");
        lua_pushfstring(L, "opencl:%d", i + 1);
        lua_setfield(L, -2, "device");
        lua_pushstring(L, info.name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, info.type);
        lua_setfield(L, -2, "type");
        lua_pushstring(L, info.platform);
        lua_setfield(L, -2, "platform");
        lua_pushinteger(L, info.global_mem);
        lua_setfield(L, -2, "global_mem");
        lua_pushboolean(L, info.fp64);
        lua_setfield(L, -2, "fp64");
        lua_pushstring(L, info.driver);
        lua_setfield(L, -2, "driver");
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* lunar.device(name): a handle {type = "cpu"|"opencl", index = N, name = ...} that prints
 * as "opencl:N" and is accepted wherever a device name is */
static int l_device(lua_State *L) {
    const char *name = lunar_lua_device_name(L, 1);
    const lunar_backend *be;
    int dev;
    LUNAR_LUA_TRY(L, lunar_device_parse(name, &be, &dev));
    lua_createtable(L, 0, 3);
    if (be == &lunar_cpu_backend) {
        lua_pushliteral(L, "cpu");
        lua_setfield(L, -2, "type");
        lua_pushliteral(L, "cpu");
        lua_setfield(L, -2, "name");
    } else {
        lunar_device_info info;
        LUNAR_LUA_TRY(L, lunar_opencl_device_info(dev, &info));
        lua_pushliteral(L, "opencl");
        lua_setfield(L, -2, "type");
        lua_pushinteger(L, dev + 1);
        lua_setfield(L, -2, "index");
        lua_pushstring(L, info.name);
        lua_setfield(L, -2, "name");
    }
    luaL_setmetatable(L, DEVICE_MT);
    return 1;
}

static int device_tostring(lua_State *L) {
    lua_getfield(L, 1, "type");
    lua_getfield(L, 1, "index");
    if (lua_isnil(L, -1)) lua_pushvalue(L, -2);
    else lua_pushfstring(L, "%s:%d", lua_tostring(L, -2), (int)lua_tointeger(L, -1));
    return 1;
}

static int device_eq(lua_State *L) {
    lua_pushboolean(L, strcmp(lunar_lua_device_name(L, 1), lunar_lua_device_name(L, 2)) == 0);
    return 1;
}

/* A device handle's string is left on the stack, which keeps it alive for the caller. */
const char *lunar_lua_device_name(lua_State *L, int idx) {
    if (lua_type(L, idx) == LUA_TTABLE && lua_getmetatable(L, idx)) {
        luaL_getmetatable(L, DEVICE_MT);
        bool is_dev = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (is_dev) return luaL_tolstring(L, idx, NULL);
    }
    return luaL_checkstring(L, idx);
}

bool lunar_lua_is_device_name(const char *s) {
    return strcmp(s, "cpu") == 0 ||
           (strncmp(s, "opencl", 6) == 0 && (s[6] == 0 || s[6] == ':'));
}

/* t:device(): "cpu" or "opencl:N" */
static int t_device(lua_State *L) {
    char buf[64];
    lua_pushstring(L, lunar_tensor_device_name(lunar_lua_check(L, 1), buf, sizeof buf));
    return 1;
}

/* lunar.backend_kernels(device): {copy = true, gather = false, ...}: which entries of that
 * device's backend have a kernel (tests use it to pin down what OpenCL still lacks) */
static int l_backend_kernels(lua_State *L) {
    const lunar_backend *be;
    int dev;
    LUNAR_LUA_TRY(L, lunar_device_parse(lunar_lua_device_name(L, 1), &be, &dev));
#define E(f) {#f, be->f != NULL}
    const struct {
        const char *name;
        bool has;
    } entries[] = {E(alloc),   E(free),         E(write),     E(read),        E(copy),
                   E(fill),    E(arange),       E(unary),     E(binary),      E(where),
                   E(reduce),  E(arg_reduce),   E(scan),      E(gemm),        E(random),
                   E(gather),  E(scatter),      E(index_select), E(index_add), E(sort),
                   E(count_nonzero), E(nonzero), E(im2col),   E(col2im),      E(max_pool2d),
                   E(max_pool2d_backward), E(avg_pool2d),     E(avg_pool2d_backward),
                   E(adaptive_avg_pool2d), E(adaptive_avg_pool2d_backward), E(optim_step),
                   E(softmax), E(softmax_backward), E(cross_entropy), E(cross_entropy_backward),
                   E(moments), E(normalize),    E(normalize_backward)};
#undef E
    _Static_assert(sizeof(lunar_backend) == 39 * sizeof(void *), "list every backend entry");
    lua_createtable(L, 0, (int)(sizeof entries / sizeof entries[0]));
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++) {
        lua_pushboolean(L, entries[i].has);
        lua_setfield(L, -2, entries[i].name);
    }
    return 1;
}

/* ---- where new tensors go ----
 * The default device starts as LUNAR_DEVICE (read on first use; unset or empty means the
 * CPU) and changes with lunar.set_default_device. A bad LUNAR_DEVICE is reported each time
 * a tensor would be made with it, never silently replaced by the CPU. */
static const lunar_backend *default_be;
static int default_dev;

static void default_device(lua_State *L, const lunar_backend **be, int *dev) {
    if (!default_be) {
        const char *env = getenv("LUNAR_DEVICE");
        if (!env || !*env) {
            default_be = &lunar_cpu_backend;
            default_dev = 0;
        } else if (lunar_device_parse(env, &default_be, &default_dev) != LUNAR_OK) {
            default_be = NULL;
            luaL_error(L, "LUNAR_DEVICE='%s': %s", env, lunar_last_error());
        }
    }
    *be = default_be;
    *dev = default_dev;
}

void lunar_lua_target_device(lua_State *L, int opts, const lunar_tensor *like,
                             const lunar_backend **be, int *dev) {
    if (opts) {
        int top = lua_gettop(L);
        lua_getfield(L, opts, "device");
        if (!lua_isnil(L, -1)) {
            const char *name = lunar_lua_device_name(L, top + 1);
            LUNAR_LUA_TRY(L, lunar_device_parse(name, be, dev));
            lua_settop(L, top);
            return;
        }
        lua_settop(L, top);
    }
    if (like) {
        *be = like->storage->backend;
        *dev = like->storage->device;
        return;
    }
    default_device(L, be, dev);
}

void lunar_lua_place(lua_State *L, lunar_tensor **t, const lunar_backend *be, int dev) {
    if ((*t)->storage->backend == be && (*t)->storage->device == dev) return;
    lunar_tensor *r;
    lunar_status st = lunar_raw_to(&r, *t, be, dev);
    lunar_tensor_release(*t);
    *t = NULL;
    LUNAR_LUA_TRY(L, st);
    *t = r;
}

/* lunar.set_default_device(device): where tensors made without a device= option go */
static int l_set_default_device(lua_State *L) {
    const lunar_backend *be;
    int dev;
    LUNAR_LUA_TRY(L, lunar_device_parse(lunar_lua_device_name(L, 1), &be, &dev));
    default_be = be;
    default_dev = dev;
    return 0;
}

/* lunar.get_default_device(): "cpu" or "opencl:N" */
static int l_get_default_device(lua_State *L) {
    const lunar_backend *be;
    int dev;
    default_device(L, &be, &dev);
    if (be == &lunar_cpu_backend) lua_pushliteral(L, "cpu");
    else lua_pushfstring(L, "%s:%d", be->name, dev + 1);
    return 1;
}

void lunar_lua_open_device(lua_State *L) {
    if (luaL_newmetatable(L, DEVICE_MT)) {
        lua_pushcfunction(L, device_tostring);
        lua_setfield(L, -2, "__tostring");
        lua_pushcfunction(L, device_eq);
        lua_setfield(L, -2, "__eq");
        lua_pushliteral(L, "device");
        lua_setfield(L, -2, "__name");
    }
    lua_pop(L, 1);
    static const luaL_Reg fns[] = {{"devices", l_devices}, {"device", l_device},
                                   {"backend_kernels", l_backend_kernels},
                                   {"set_default_device", l_set_default_device},
                                   {"get_default_device", l_get_default_device}, {NULL, NULL}};
    lunar_lua_register(L, fns, false, true);
    static const luaL_Reg methods[] = {{"device", t_device}, {NULL, NULL}};
    lunar_lua_register(L, methods, true, false);
}
