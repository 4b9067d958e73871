/* lfield: set one field of the table on top of the Lua stack, the way every
 * console and policy binding builds its answers. Header-only; no allocation
 * beyond Lua's own. A NULL string leaves the field unset (nil). */
#ifndef BT2C_LFIELD_H
#define BT2C_LFIELD_H

#include <stdbool.h>

#include <lua.h>

static inline void lfield_int(lua_State *L, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, -2, k);
}

static inline void lfield_num(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

static inline void lfield_str(lua_State *L, const char *k, const char *v) {
  if (v == NULL) return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

static inline void lfield_bool(lua_State *L, const char *k, bool v) {
  lua_pushboolean(L, v);
  lua_setfield(L, -2, k);
}

#endif
