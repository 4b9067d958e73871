/* luaembed: the node Lua modules (lua/NAME.lua), compiled into the binary.
 * Provides lookup and loading by module name; knows nothing of what they do. */
#ifndef BT2C_LUAEMBED_H
#define BT2C_LUAEMBED_H

#include <lua.h>
#include <stddef.h>

/* The text of module `name` (e.g. "pretty"), or NULL. */
const char *luaembed_find(const char *name, size_t *len);

/* [-0, +1, m] Loads module `name` as a text chunk and pushes the function, or
 * pushes an error message; returns a lua_load status (LUA_ERRFILE if absent). */
int luaembed_load(lua_State *L, const char *name);

/* [-0, +1, e] Loads and runs module `name` with its name as the argument, as
 * require would, and pushes its single result. Raises on error. */
void luaembed_require(lua_State *L, const char *name);

/* [-0, +0, e] Puts a searcher for embedded modules in front of
 * package.searchers, so `require "pretty"` finds lua/pretty.lua. */
void luaembed_install_searcher(lua_State *L);

#endif
