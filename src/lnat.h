/* lnat: the `nat` table of the trusted Lua state — the seed's NATTraversal
 * API: the external address, the candidates, a discovery on demand, the NAT
 * behaviour found and the STUN counters. Must not: be reachable from
 * policies, or block (discover() only starts a round). */
#ifndef BT2C_LNAT_H
#define BT2C_LNAT_H

#include <lua.h>

struct node;

void lnat_open(lua_State *L, struct node *n);

#endif
