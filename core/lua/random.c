/*
 * random.c (binding) - the random family.
 */
#include "binding.h"

void lunar_lua_open_random(lua_State *L) { (void)L; }
