/* lscoring: the `scoring` table of the trusted Lua state (the seed's
 * PeerScoring API and operator bans). Must not: be reachable from policies. */
#ifndef BT2C_LSCORING_H
#define BT2C_LSCORING_H

#include <lua.h>

struct node;

void lscoring_open(lua_State *L, struct node *n);

#endif
