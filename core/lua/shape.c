/*
 * shape.c (binding) - the shape family.
 */
#include "binding.h"

void lunar_lua_open_shape(lua_State *L) { (void)L; }
