/* lchain: the `blockchain`, `consensus`, `validators` and `integration`
 * tables of the trusted Lua state — the console side of the integration
 * layer (bt2c.h), and the Lua implementations of its ConsensusEngine and
 * MonitoringService interfaces. Must not: be reachable from policies. */
#ifndef BT2C_LCHAIN_H
#define BT2C_LCHAIN_H

#include <lua.h>

struct node;

/* [-0, +0, e] Installs the tables in L for n (n->integ must be started). */
void lchain_open(lua_State *L, struct node *n);

#endif
