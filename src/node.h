/* node: the node context and its start/stop order.
 *
 * Holds every long-lived part of a running bt2cd: configuration, event loop,
 * policy host, the trusted Lua state and the console. There is no other
 * global mutable state (signal flags aside, which only main.c sets).
 */
#ifndef BT2C_NODE_H
#define BT2C_NODE_H

#include <stdbool.h>

#include <lua.h>

#include "conf.h"
#include "loop.h"
#include "nat.h"
#include "netmgr.h"

struct policy_host;
struct console;
struct bt2c;
struct metrics;

struct node {
  struct conf conf;
  struct loop loop;
  struct policy_host *policy;
  struct netmgr net;
  bool net_started;
  struct bt2c *integ; /* the integration layer (bt2c.h): chain, sync, consensus */
  struct nat nat;
  lua_State *L; /* trusted state: console, node Lua */
  struct console *console;
  struct metrics *metrics; /* NULL when metrics.port is 0 */
  double started; /* monotonic seconds */
  bool stopping;
};

/* Starts every part in order; on failure stops what was started, logs why
 * and returns -1. Takes ownership of conf. */
int node_start(struct node *n, struct conf *conf);

/* Stops in reverse order: stop accepting, flush, close. */
void node_stop(struct node *n);

/* Reloads the policies (SIGHUP, policy.reload()). Returns 0, or -1 with the
 * errors in errs (the running generation stays). */
int node_reload_policies(struct node *n, struct conf_errors *errs);

#endif
