/* ltest: the Lua module `bt2c` that unit specs load (require "bt2c").
 * Built from the same sources as bt2cd; each part adds its own functions.
 * Not part of the daemon. */
#ifndef BT2C_LTEST_H
#define BT2C_LTEST_H

#include <lua.h>

/* Each [-0, +0, e] adds functions to the module table at the top of the stack. */
void ltest_sys(lua_State *L);    /* processes, sockets, clocks for functional specs */
void ltest_conf(lua_State *L);   /* configuration loading */
void ltest_policy(lua_State *L); /* policy host and sandbox */
void ltest_peerstore(lua_State *L); /* peer store (sqlite) */
void ltest_wire(lua_State *L);   /* envelope codec, JSON reader, identity */
void ltest_relay(lua_State *L);  /* duplicate filter, relay target choice */
void ltest_chain(lua_State *L);  /* chain hashes, checks and store; consensus signatures */
void ltest_stun(lua_State *L);   /* STUN codec, UDP sockets */
void ltest_turn(lua_State *L);   /* TURN client codec, candidates */
void ltest_ws(lua_State *L);     /* WebSocket client: frames out, handshake, frame parser */

#endif
