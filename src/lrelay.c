/* lrelay: see lrelay.h. */
#include "lrelay.h"

#include <string.h>

#include <lauxlib.h>

#include "identity.h"
#include "netmgr.h"
#include "node.h"
#include "relay.h"
#include "lfield.h"

static struct node *node_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

/* relay.send_direct_relay_message(target_id, {type =, data =}) -> message id
 * (hex), or nil, "no route". The outcome arrives as network.on("relay:result",
 * fn(id, status, target)) with status "delivered" or "timeout". */
static int l_send_direct(lua_State *L) {
  struct node *n = node_of(L);
  size_t tl;
  const char *target_hex = luaL_checklstring(L, 1, &tl);
  uint8_t target[ENV_NODE_ID_LEN];
  luaL_argcheck(L, hex_decode(target_hex, tl, target, sizeof target) == 0, 1,
                "a node id is 40 hex characters");
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "type");
  const char *name = lua_tostring(L, -1);
  int type = name ? env_type_from_name(name) : 0;
  if (type < MSG_BLOCK) return luaL_error(L, "message type must be an application type (block, ...)");
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "encode");
  lua_getfield(L, 2, "data");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  lua_call(L, 1, 1);
  size_t len;
  const char *json = lua_tolstring(L, -1, &len);
  uint8_t id[ENV_MSG_ID_LEN];
  int k = relay_send_direct(&n->net.relay, target, type, json, len, id);
  if (k < 0) return luaL_error(L, "message data must be a JSON object, and at most 1024 direct "
                                  "messages may be pending");
  if (k == 0) {
    luaL_pushfail(L);
    lua_pushliteral(L, "no route: no connected peer to send it through");
    return 2;
  }
  char hex[ENV_MSG_ID_LEN * 2 + 1];
  hex_encode(id, sizeof id, hex);
  lua_pushstring(L, hex);
  return 1;
}

static int l_get_stats(lua_State *L) {
  struct relay *r = &node_of(L)->net.relay;
  lua_createtable(L, 0, 10);
  lfield_int(L, "received", r->received);
  lfield_int(L, "delivered", r->delivered);
  lfield_int(L, "relayed", r->relayed);
  lfield_int(L, "duplicates", r->duplicates);
  lua_createtable(L, 0, DROP_COUNT);
  for (int d = 0; d < DROP_COUNT; d++) lfield_int(L, relay_drop_name((enum relay_drop)d), r->dropped[d]);
  lua_setfield(L, -2, "dropped");
  lua_createtable(L, 0, 8);
  for (int t = MSG_BLOCK; t < MSG_TYPE_COUNT; t++) {
    const struct relay_type_stats *s = &r->by_type[t];
    if (s->received == 0 && s->relayed == 0) continue;
    lua_createtable(L, 0, 4);
    lfield_int(L, "received", s->received);
    lfield_int(L, "delivered", s->delivered);
    lfield_int(L, "relayed", s->relayed);
    lfield_int(L, "duplicates", s->duplicates);
    lua_setfield(L, -2, env_type_name(t));
  }
  lua_setfield(L, -2, "byType");
  lua_createtable(L, 0, 3);
  lfield_int(L, "sent", r->direct_sent);
  lfield_int(L, "delivered", r->direct_delivered);
  lfield_int(L, "failed", r->direct_failed);
  lua_setfield(L, -2, "direct");
  lua_createtable(L, 0, 5);
  lfield_int(L, "announced", r->pull.announced);
  lfield_int(L, "requests", r->pull.wants_sent);
  lfield_int(L, "requested", r->pull.wanted_ids);
  lfield_int(L, "served", r->pull.served);
  lfield_int(L, "misses", r->pull.misses);
  lua_setfield(L, -2, "pull");
  lfield_int(L, "rescued", r->rescued);
  lua_createtable(L, 0, 3);
  lfield_int(L, "size", r->seen.count);
  lfield_int(L, "capacity", r->seen.cap);
  lfield_int(L, "evictedEarly", r->seen.evicted_early);
  lua_setfield(L, -2, "seen");
  lua_createtable(L, 0, 5);
  static const char *const names[] = {"flood", "selective", "validator_only"};
  for (int t = MSG_BLOCK; t < MSG_TYPE_COUNT; t++) {
    lua_pushstring(L, names[relay_mode_of(r, t)]);
    lua_setfield(L, -2, env_type_name(t));
  }
  lua_setfield(L, -2, "modes");
  return 1;
}

void lrelay_open(lua_State *L, struct node *n) {
  static const luaL_Reg fns[] = {{"send_direct_relay_message", l_send_direct},
                                 {"get_stats", l_get_stats},
                                 {NULL, NULL}};
  lua_newtable(L);
  lua_pushlightuserdata(L, n);
  luaL_setfuncs(L, fns, 1);
  lua_setglobal(L, "relay");
}
