/* lrelay: the `relay` table of the trusted Lua state — the seed's
 * MessageRelay API (send_direct_relay_message, get_stats) and the relay
 * modes in force. Must not: be reachable from policies. */
#ifndef BT2C_LRELAY_H
#define BT2C_LRELAY_H

#include <lua.h>

struct node;

void lrelay_open(lua_State *L, struct node *n);

#endif
