/* lnetwork: the `network` table of the trusted Lua state — the seed's
 * NetworkManager API (get_network_status, get_peers, get_peer, send_message,
 * broadcast_message, connect, disconnect, on/off) — and the delivery of
 * netmgr's events to Lua handlers, each under a time budget.
 *
 * Must not: be reachable from policy sandboxes. */
#ifndef BT2C_LNETWORK_H
#define BT2C_LNETWORK_H

#include <lua.h>

struct node;

/* Installs `network` in L and hooks netmgr's events for n. */
void lnetwork_open(lua_State *L, struct node *n);

#endif
