/*
 * io.c (binding) - the io family.
 */
#include "binding.h"

void lunar_lua_open_io(lua_State *L) { (void)L; }
