/* ltestmod: luaopen_bt2c, the entry point of the unit-spec module. */
#include <lauxlib.h>
#include <lua.h>

#include "ltest.h"

int luaopen_bt2c(lua_State *L);

int luaopen_bt2c(lua_State *L) {
  lua_newtable(L);
  ltest_sys(L);
  ltest_conf(L);
  ltest_policy(L);
  ltest_peerstore(L);
  ltest_wire(L);
  ltest_relay(L);
  ltest_chain(L);
  ltest_stun(L);
  ltest_turn(L);
  ltest_ws(L);
  return 1;
}
