/* lnetwork: the `network` table of the trusted Lua state (console and node
 * scripts): status, peers, sending, dialling, and event handlers. */
#include "lnetwork.h"

#include <string.h>

#include <lauxlib.h>

#include "lconsole.h"
#include "log.h"
#include "netmgr.h"
#include "node.h"
#include "lfield.h"

#define HANDLER_BUDGET_MS 1000
#define BAD_DATA "message data must encode to a JSON object (a table with string keys) " \
                 "that fits in maxMessageSize"

struct lnet {
  struct node *n;
  lua_State *L;
  int handlers_ref; /* registry: {event = {fn, ...}} */
  int decode_ref, encode_ref;
  struct log_limit error_limit;
};

static struct lnet *lnet_of(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

static const char *state_name(enum peer_state s) {
  switch (s) {
    case PEER_DIALING: return "dialing";
    case PEER_HANDSHAKING: return "handshaking";
    case PEER_ESTABLISHED: return "established";
    default: return "closing";
  }
}

/* Decodes a JSON text with cjson; pushes the value, or the raw text if it
 * cannot be decoded. */
static void push_decoded(struct lnet *x, lua_State *L, const char *text, size_t len) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->decode_ref);
  lua_pushlstring(L, text, len);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    lua_pushlstring(L, text, len);
  }
}

static void push_peer(struct lnet *x, lua_State *L, const struct peer *p) {
  double now = log_monotonic();
  lua_createtable(L, 0, 24);
  lfield_str(L, "id", p->id_hex);
  lfield_str(L, "direction", p->inbound ? "inbound" : "outbound");
  lfield_str(L, "state", state_name(p->state));
  lfield_str(L, "remote", p->remote);
  char url[128];
  netmgr_peer_url(p, url, sizeof url);
  lfield_str(L, "url", url);
  lfield_str(L, "source", p->dial_source);
  lfield_bool(L, "persistent", p->persistent);
  if (p->hello_received) {
    lfield_int(L, "version", p->hello.version);
    lfield_str(L, "networkId", p->hello.network_id);
    lfield_int(L, "listenPort", p->hello.listen_port);
    lfield_int(L, "height", p->hello.height);
    lfield_num(L, "clockSkewMs", p->clock_skew_ms);
    if (p->hello.metadata_json) {
      push_decoded(x, L, p->hello.metadata_json, strlen(p->hello.metadata_json));
      lua_setfield(L, -2, "metadata");
    }
  }
  if (p->established_at > 0) lfield_num(L, "connectedFor", now - p->established_at);
  if (p->rtt_avg_ms > 0) {
    lfield_num(L, "rttMs", p->rtt_ms);
    lfield_num(L, "rttAvgMs", p->rtt_avg_ms);
  }
  lfield_int(L, "messagesIn", (long long)p->msgs_in);
  lfield_int(L, "messagesOut", (long long)p->msgs_out);
  lfield_int(L, "bytesIn", (long long)p->bytes_in);
  lfield_int(L, "bytesOut", (long long)p->bytes_out);
  lfield_int(L, "queuedBytes", (long long)p->q_bytes);
  if (p->status_at > 0) { /* its last NETWORK_STATUS */
    lua_createtable(L, 0, 5);
    lfield_int(L, "peers", p->status_peers);
    lfield_int(L, "height", p->status_height);
    lfield_str(L, "version", p->status_version);
    lfield_num(L, "uptime", p->status_uptime);
    lfield_num(L, "age", now - p->status_at);
    lua_setfield(L, -2, "status");
  }
  lfield_int(L, "dropped", (long long)p->dropped);
}

static void push_by_type(lua_State *L, const uint64_t *counts) {
  lua_newtable(L);
  for (int t = 1; t < MSG_TYPE_COUNT; t++) {
    if (counts[t] == 0) continue;
    lua_pushinteger(L, (lua_Integer)counts[t]);
    lua_setfield(L, -2, env_type_name(t));
  }
}

static int l_status(lua_State *L) {
  struct lnet *x = lnet_of(L);
  struct netmgr *nm = &x->n->net;
  const struct netmgr_stats *s = &nm->stats;
  lua_createtable(L, 0, 16);
  lfield_str(L, "nodeId", nm->me.id_hex);
  lfield_str(L, "networkId", nm->conf->networkId);
  char listen[96];
  snprintf(listen, sizeof listen, "%s:%d", nm->conf->host, nm->tr.listen_port);
  lfield_str(L, "listen", listen);
  lfield_int(L, "listenPort", nm->tr.listen_port);
  int dialing = 0, handshaking = 0;
  for (const struct peer *p = nm->peers; p; p = p->next) {
    if (p->state == PEER_DIALING) dialing++;
    if (p->state == PEER_HANDSHAKING) handshaking++;
  }
  lua_createtable(L, 0, 6);
  lfield_int(L, "inbound", nm->n_inbound);
  lfield_int(L, "outbound", nm->n_outbound);
  lfield_int(L, "total", nm->n_inbound + nm->n_outbound);
  lfield_int(L, "dialing", dialing);
  lfield_int(L, "handshaking", handshaking);
  lfield_int(L, "maxPeers", nm->conf->maxPeers);
  lua_setfield(L, -2, "peers");
  lua_createtable(L, 0, 2);
  push_by_type(L, s->msgs_in);
  lua_setfield(L, -2, "in");
  push_by_type(L, s->msgs_out);
  lua_setfield(L, -2, "out");
  lua_setfield(L, -2, "messages");
  lua_createtable(L, 0, 2);
  push_by_type(L, s->bytes_in);
  lua_setfield(L, -2, "in");
  push_by_type(L, s->bytes_out);
  lua_setfield(L, -2, "out");
  lua_setfield(L, -2, "bytes");
  lua_createtable(L, 0, 10);
  lfield_int(L, "accepted", (long long)s->accepted);
  lfield_int(L, "dialled", (long long)s->dialled);
  lfield_int(L, "dialFailures", (long long)s->dial_failures);
  lfield_int(L, "handshakesOk", (long long)s->handshakes_ok);
  lfield_int(L, "handshakesFailed", (long long)s->handshakes_failed);
  lfield_int(L, "invalidMessages", (long long)s->invalid_messages);
  lfield_int(L, "droppedSends", (long long)s->dropped_sends);
  lua_newtable(L);
  for (int i = 0; i < 16; i++) {
    if (s->refused[i] == 0) continue;
    lua_pushinteger(L, (lua_Integer)s->refused[i]);
    lua_seti(L, -2, 4000 + i);
  }
  lua_setfield(L, -2, "refusedByCode");
  lua_setfield(L, -2, "counters");
  return 1;
}

static int l_get_peers(lua_State *L) {
  struct lnet *x = lnet_of(L);
  lua_newtable(L);
  int i = 0;
  for (const struct peer *p = x->n->net.peers; p; p = p->next) {
    if (p->state != PEER_ESTABLISHED) continue;
    push_peer(x, L, p);
    lua_rawseti(L, -2, ++i);
  }
  return 1;
}

static int l_get_peer(lua_State *L) {
  struct lnet *x = lnet_of(L);
  const struct peer *p = netmgr_find_hex(&x->n->net, luaL_checkstring(L, 1));
  if (p == NULL) return 0;
  push_peer(x, L, p);
  return 1;
}

/* Encodes msg.data as JSON; returns the type. [-0, +1] */
static int message_arg(struct lnet *x, lua_State *L, int idx) {
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_getfield(L, idx, "type");
  const char *name = lua_tostring(L, -1);
  int type = name ? env_type_from_name(name) : 0;
  if (type < MSG_BLOCK)
    return luaL_error(L, "message type must be one of block, transaction, block_request, "
                         "transaction_request, consensus_vote, consensus_proposal, "
                         "validator_set, nat_traversal, relay, network_status");
  lua_pop(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->encode_ref);
  lua_getfield(L, idx, "data");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
  }
  lua_call(L, 1, 1);
  return type;
}

static int l_send_message(lua_State *L) {
  struct lnet *x = lnet_of(L);
  const char *id = luaL_checkstring(L, 1);
  struct peer *p = netmgr_find_hex(&x->n->net, id);
  int type = message_arg(x, L, 2);
  if (p == NULL) {
    luaL_pushfail(L);
    lua_pushfstring(L, "not connected to %s", id);
    return 2;
  }
  size_t len;
  const char *json = lua_tolstring(L, -1, &len);
  int n = netmgr_send(&x->n->net, p, type, json, len);
  if (n < 0) return luaL_error(L, BAD_DATA);
  lua_pushboolean(L, n > 0);
  return 1;
}

/* Gossip types go out with the RELAY flag to the peers their relay mode
 * picks, and travel on; the others go to every peer, one hop. */
static int l_broadcast(lua_State *L) {
  struct lnet *x = lnet_of(L);
  int type = message_arg(x, L, 1);
  size_t len;
  const char *json = lua_tolstring(L, -1, &len);
  int n = relay_broadcast(&x->n->net.relay, type, json, len, NULL);
  if (n < 0) n = netmgr_send(&x->n->net, NULL, type, json, len);
  if (n < 0) return luaL_error(L, BAD_DATA);
  lua_pushinteger(L, n);
  return 1;
}

static int l_connect(lua_State *L) {
  struct lnet *x = lnet_of(L);
  char err[160];
  if (netmgr_connect(&x->n->net, luaL_checkstring(L, 1), "console", err, sizeof err) != 0) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_disconnect(lua_State *L) {
  struct lnet *x = lnet_of(L);
  const char *id = luaL_checkstring(L, 1);
  if (netmgr_disconnect(&x->n->net, id, 1000, "disconnected by operator") != 0) {
    luaL_pushfail(L);
    lua_pushfstring(L, "not connected to %s", id);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static void update_mask(struct lnet *x, lua_State *L) {
  uint32_t mask = 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->handlers_ref);
  for (int t = MSG_BLOCK; t < MSG_TYPE_COUNT; t++) {
    char ev[64];
    snprintf(ev, sizeof ev, "message:%s", env_type_name(t));
    if (lua_getfield(L, -1, ev) == LUA_TTABLE && luaL_len(L, -1) > 0) mask |= 1u << t;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  x->n->net.ev.message_mask = mask;
}

static bool event_known(const char *ev) {
  if (strcmp(ev, "peer:connected") == 0 || strcmp(ev, "peer:disconnected") == 0 ||
      strcmp(ev, "relay:result") == 0)
    return true;
  return strncmp(ev, "message:", 8) == 0 && env_type_from_name(ev + 8) >= MSG_BLOCK;
}

/* network.on(event, fn): handlers run in registration order. */
static int l_on(lua_State *L) {
  struct lnet *x = lnet_of(L);
  const char *ev = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!event_known(ev))
    return luaL_error(L, "unknown event '%s' (peer:connected, peer:disconnected, "
                         "message:<type>, relay:result)", ev);
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->handlers_ref);
  if (lua_getfield(L, -1, ev) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, ev);
  }
  lua_pushvalue(L, 2);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  lua_pop(L, 2);
  update_mask(x, L);
  lua_pushboolean(L, 1);
  return 1;
}

/* network.off(event): removes every handler of the event. */
static int l_off(lua_State *L) {
  struct lnet *x = lnet_of(L);
  const char *ev = luaL_checkstring(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->handlers_ref);
  lua_pushnil(L);
  lua_setfield(L, -2, ev);
  lua_pop(L, 1);
  update_mask(x, L);
  return 0;
}

/* Calls every handler of ev with the nargs values on top of the stack. */
static void dispatch(struct lnet *x, const char *ev, int nargs) {
  lua_State *L = x->L;
  int base = lua_gettop(L) - nargs;
  lua_rawgeti(L, LUA_REGISTRYINDEX, x->handlers_ref);
  if (lua_getfield(L, -1, ev) != LUA_TTABLE) {
    lua_settop(L, base);
    return;
  }
  int list = lua_gettop(L);
  lua_Integer n = luaL_len(L, list);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, list, i);
    for (int a = 1; a <= nargs; a++) lua_pushvalue(L, base + a);
    if (lconsole_pcall(L, nargs, 0, HANDLER_BUDGET_MS) != LUA_OK) {
      log_limited(&x->error_limit, LV_WARN, "handler_error", "event=%s err=%s", ev,
                  lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  lua_settop(L, base);
}

static void on_connected(void *ud, struct peer *p) {
  struct lnet *x = ud;
  push_peer(x, x->L, p);
  dispatch(x, "peer:connected", 1);
}

static void on_disconnected(void *ud, struct peer *p) {
  struct lnet *x = ud;
  push_peer(x, x->L, p);
  lua_pushinteger(x->L, p->close_code ? p->close_code : 1006);
  lua_setfield(x->L, -2, "closeCode");
  lua_pushstring(x->L, p->close_reason);
  lua_setfield(x->L, -2, "closeReason");
  dispatch(x, "peer:disconnected", 1);
}

static void on_message(void *ud, struct peer *p, const struct envelope *e) {
  struct lnet *x = ud;
  lua_State *L = x->L;
  char ev[64], hex[ENV_MSG_ID_LEN * 2 + 1];
  snprintf(ev, sizeof ev, "message:%s", env_type_name(e->type));
  lua_pushstring(L, p->id_hex);
  lua_createtable(L, 0, 5);
  lfield_str(L, "type", env_type_name(e->type));
  push_decoded(x, L, (const char *)e->payload, e->payload_len);
  lua_setfield(L, -2, "data");
  hex_encode(e->origin, ENV_NODE_ID_LEN, hex);
  lfield_str(L, "origin", hex);
  hex_encode(e->id, ENV_MSG_ID_LEN, hex);
  lfield_str(L, "id", hex);
  lfield_int(L, "hops", e->hops);
  dispatch(x, ev, 2);
}

/* A direct message this node sent was delivered, or timed out. */
static void on_relay_result(void *ud, const uint8_t id[ENV_MSG_ID_LEN],
                            const uint8_t target[ENV_NODE_ID_LEN], const char *status) {
  struct lnet *x = ud;
  char hex[ENV_MSG_ID_LEN * 2 + 1], thex[ENV_NODE_ID_LEN * 2 + 1];
  hex_encode(id, ENV_MSG_ID_LEN, hex);
  hex_encode(target, ENV_NODE_ID_LEN, thex);
  lua_pushstring(x->L, hex);
  lua_pushstring(x->L, status);
  lua_pushstring(x->L, thex);
  dispatch(x, "relay:result", 3);
}

static int lnet_gc(lua_State *L) {
  (void)L;
  return 0;
}

void lnetwork_open(lua_State *L, struct node *n) {
  struct lnet *x = lua_newuserdatauv(L, sizeof *x, 0);
  memset(x, 0, sizeof *x);
  x->n = n;
  x->L = L;
  lua_newtable(L); /* metatable keeps the userdata alive with the state */
  lua_pushcfunction(L, lnet_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_newtable(L);
  x->handlers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "decode");
  x->decode_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, "encode");
  x->encode_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);

  static const luaL_Reg fns[] = {{"get_network_status", l_status},
                                 {"get_peers", l_get_peers},
                                 {"get_peer", l_get_peer},
                                 {"send_message", l_send_message},
                                 {"broadcast_message", l_broadcast},
                                 {"connect", l_connect},
                                 {"disconnect", l_disconnect},
                                 {"on", l_on},
                                 {"off", l_off},
                                 {NULL, NULL}};
  lua_newtable(L);
  lua_pushvalue(L, -2); /* the userdata as upvalue */
  luaL_setfuncs(L, fns, 1);
  lua_setglobal(L, "network");
  luaL_ref(L, LUA_REGISTRYINDEX); /* anchor the userdata */

  n->net.ev.ud = x;
  n->net.ev.connected = on_connected;
  n->net.ev.disconnected = on_disconnected;
  n->net.ev.message = on_message;
  n->net.relay.direct_result = on_relay_result;
  n->net.relay.ud = x;
}
