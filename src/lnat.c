/* lnat: see lnat.h. Every function reads struct nat as it is now; results
 * of a discovery arrive later, so callers poll. */
#include "lnat.h"

#include <lauxlib.h>

#include "nat.h"
#include "nat_cand.h"
#include "node.h"
#include "turn.h"
#include "lfield.h"

static struct nat *nat_of(lua_State *L) {
  struct node *n = lua_touserdata(L, lua_upvalueindex(1));
  return &n->nat;
}

/* [-0, +0, m] Sets t.address and t.port on the table at the top. */
static void set_addr(lua_State *L, const struct stun_addr *a) {
  char ip[STUN_ADDR_STRLEN];
  lfield_str(L, "address", stun_addr_ip(a, ip, sizeof ip));
  lfield_int(L, "port", a->port);
}

/* [-0, +1, m] {address =, port =} */
static void push_addr(lua_State *L, const struct stun_addr *a) {
  lua_createtable(L, 0, 2);
  set_addr(L, a);
}

/* The URL of the STUN server (srflx) or TURN server (relay) behind a
 * candidate, or NULL. */
static const char *server_url(const struct nat *nt, enum nat_cand_type type, int server) {
  if (server < 0) return NULL;
  if (type == NAT_CAND_SRFLX && server < nt->n_servers) return nt->servers[server].url;
  if (type == NAT_CAND_RELAY && nt->turn && server < nt->turn->n_allocs)
    return nt->turn->allocs[server]->url;
  return NULL;
}

/* nat.get_external_address() -> {address, port, method[, server]} or nil */
static int l_get_external_address(lua_State *L) {
  struct nat *nt = nat_of(L);
  struct stun_addr a;
  const char *method;
  int server;
  if (natcand_external(nt, &a, &method, &server) != 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 4);
  set_addr(L, &a);
  lfield_str(L, "method", method);
  lfield_str(L, "server", server_url(nt, method[0] == 't' ? NAT_CAND_RELAY : NAT_CAND_SRFLX, server));
  return 1;
}

/* nat.get_candidates() -> {{type, address, port, priority, transport}, ...} */
static int l_get_candidates(lua_State *L) {
  struct nat *nt = nat_of(L);
  struct nat_candidate c[NAT_MAX_CANDIDATES];
  size_t n = natcand_list(nt, c, NAT_MAX_CANDIDATES);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_createtable(L, 0, 6);
    lfield_str(L, "type", nat_cand_type_name(c[i].type));
    set_addr(L, &c[i].addr);
    lfield_int(L, "priority", c[i].priority);
    lfield_str(L, "transport", c[i].transport == STUN_TRANSPORT_TCP ? "tcp" : "udp");
    if (c[i].type != NAT_CAND_HOST) lfield_str(L, "server", server_url(nt, c[i].type, c[i].server));
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

/* nat.discover() -> true (a round started, or one is under way), or nil, why */
static int l_discover(lua_State *L) {
  struct nat *nt = nat_of(L);
  if (nat_discover(nt) < 0) {
    luaL_pushfail(L);
    lua_pushfstring(L, "NAT traversal is off: %s", nt->disabled[0] ? nt->disabled : "not started");
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* nat.behaviour() -> {status, mapping, filtering, behindNat, server, mapped} */
static int l_behaviour(lua_State *L) {
  struct nat *nt = nat_of(L);
  const struct nat_behaviour *b = &nt->beh;
  lua_createtable(L, 0, 6);
  lfield_str(L, "status", nat_disc_state_name(b->state));
  if (b->state == NAT_DISC_RUNNING || b->state == NAT_DISC_DONE) {
    lfield_str(L, "mapping", nat_mapping_name(b->mapping));
    lfield_str(L, "filtering", nat_filtering_name(b->filtering));
    lua_pushboolean(L, b->behind_nat);
    lua_setfield(L, -2, "behindNat");
    if (b->server >= 0) lfield_str(L, "server", nt->servers[b->server].url);
    push_addr(L, &b->other);
    lua_setfield(L, -2, "otherAddress");
  }
  return 1;
}

static int l_stats(lua_State *L) {
  struct nat *nt = nat_of(L);
  const struct nat_stats *s = &nt->stats;
  lua_createtable(L, 0, 18);
  lua_pushboolean(L, nt->running);
  lua_setfield(L, -2, "enabled");
  if (nt->disabled[0]) lfield_str(L, "disabled", nt->disabled);
  if (nt->running) lfield_int(L, "udpPort", nt->port);
  lfield_int(L, "requests", (lua_Integer)s->requests);
  lfield_int(L, "retransmits", (lua_Integer)s->retransmits);
  lfield_int(L, "responses", (lua_Integer)s->responses);
  lfield_int(L, "errorResponses", (lua_Integer)s->error_responses);
  lfield_int(L, "timeouts", (lua_Integer)s->timeouts);
  lfield_int(L, "malformed", (lua_Integer)s->malformed);
  lfield_int(L, "served", (lua_Integer)s->served);
  lfield_int(L, "rateLimited", (lua_Integer)s->rate_limited);
  lfield_int(L, "stray", (lua_Integer)s->stray);
  lfield_int(L, "ignored", (lua_Integer)s->ignored);
  lfield_int(L, "sendErrors", (lua_Integer)s->send_errors);
  lfield_int(L, "rounds", (lua_Integer)s->rounds);
  lua_pushboolean(L, nt->round_active);
  lua_setfield(L, -2, "discovering");
  lua_createtable(L, nt->n_servers, 0);
  for (int i = 0; i < nt->n_servers; i++) {
    const struct nat_server *v = &nt->servers[i];
    char at[STUN_ADDR_STRLEN];
    lua_createtable(L, 0, 8);
    lfield_str(L, "url", v->url);
    lfield_str(L, "state", nat_server_state_name(v->state));
    if (v->have_addr) lfield_str(L, "address", stun_addr_str(&v->addr, at, sizeof at));
    if (v->have_mapped) lfield_str(L, "mapped", stun_addr_str(&v->mapped, at, sizeof at));
    if (v->have_other) lfield_str(L, "otherAddress", stun_addr_str(&v->other, at, sizeof at));
    if (v->state == NAT_SRV_OK) lfield_int(L, "rttMs", (lua_Integer)(v->rtt_ms + 0.5));
    lfield_int(L, "tries", v->tries);
    if (v->error_code) lfield_int(L, "errorCode", v->error_code);
    if (v->error[0]) lfield_str(L, "error", v->error);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "servers");
  return 1;
}

/* [-0, +1, m] One allocation as nat.turn_status() shows it. */
static void push_alloc(lua_State *L, const struct turn_alloc *a, double now) {
  char at[STUN_ADDR_STRLEN];
  lua_createtable(L, 0, 20);
  lfield_str(L, "server", a->url);
  lfield_str(L, "transport", a->transport == STUN_TRANSPORT_TCP ? "tcp" : "udp");
  lfield_str(L, "state", turn_state_name(a->state));
  if (a->have_server) lfield_str(L, "serverAddress", stun_addr_str(&a->server, at, sizeof at));
  lfield_str(L, "username", a->username);
  if (a->realm[0]) lfield_str(L, "realm", a->realm);
  if (a->state == TURN_ALLOCATED) {
    push_addr(L, &a->relayed);
    lua_setfield(L, -2, "relayedAddress");
    if (a->have_mapped) {
      push_addr(L, &a->mapped);
      lua_setfield(L, -2, "mappedAddress");
    }
    lfield_int(L, "lifetime", a->lifetime);
    lfield_num(L, "lifetimeLeft", a->expires - now);
    lfield_num(L, "allocatedFor", now - a->allocated);
  }
  lfield_int(L, "allocations", a->allocations);
  lfield_int(L, "refreshes", a->refreshes);
  if (a->error[0]) {
    lua_createtable(L, 0, 2);
    if (a->error_code) lfield_int(L, "code", a->error_code);
    lfield_str(L, "reason", a->error);
    lua_setfield(L, -2, "lastError");
  }
  lua_createtable(L, a->n_perm, 0);
  for (int i = 0; i < a->n_perm; i++) {
    const struct turn_perm *p = &a->perm[i];
    lua_createtable(L, 0, 3);
    lfield_str(L, "address", stun_addr_ip(&p->ip, at, sizeof at));
    lfield_str(L, "state", p->pending ? "pending" : p->refused_until > now ? "refused"
                        : p->installed > 0 && now - p->installed < 300 ? "installed" : "lapsed");
    if (p->installed > 0) lfield_num(L, "expiresIn", p->installed + 300 - now);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "permissions");
  if (a->transport == STUN_TRANSPORT_UDP) {
    lua_createtable(L, a->n_chan, 0);
    for (int i = 0; i < a->n_chan; i++) {
      const struct turn_chan *c = &a->chan[i];
      lua_createtable(L, 0, 3);
      lfield_int(L, "number", c->number);
      lfield_str(L, "peer", stun_addr_str(&c->peer, at, sizeof at));
      lfield_str(L, "state", c->bound > 0 ? "bound" : c->pending ? "pending" : "none");
      lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "channels");
    lfield_int(L, "dataIn", (lua_Integer)a->data_in);
    lfield_int(L, "channelDataIn", (lua_Integer)a->channel_data_in);
    lfield_int(L, "bytesIn", (lua_Integer)a->data_bytes_in);
    lfield_int(L, "sent", (lua_Integer)a->sent);
    if (a->have_last_from) {
      lfield_str(L, "lastFrom", stun_addr_str(&a->last_from, at, sizeof at));
      lua_pushlstring(L, (const char *)a->last_data, a->last_data_len);
      lua_setfield(L, -2, "lastData");
    }
  } else {
    lfield_int(L, "connections", (lua_Integer)a->connections);
    lfield_int(L, "connectionsFailed", (lua_Integer)a->connections_failed);
  }
}

/* nat.turn_status() -> {enabled, allocations = {...}, counters...} */
static int l_turn_status(lua_State *L) {
  struct nat *nt = nat_of(L);
  const struct turn *t = nt->turn;
  lua_createtable(L, 0, 16);
  lua_pushboolean(L, t != NULL && t->n_allocs > 0);
  lua_setfield(L, -2, "enabled");
  lua_createtable(L, t ? t->n_allocs : 0, 0);
  double now = log_monotonic();
  for (int i = 0; t && i < t->n_allocs; i++) {
    push_alloc(L, t->allocs[i], now);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "allocations");
  if (t == NULL) return 1;
  const struct turn_stats *s = &t->stats;
  lfield_int(L, "requests", (lua_Integer)s->requests);
  lfield_int(L, "retransmits", (lua_Integer)s->retransmits);
  lfield_int(L, "responses", (lua_Integer)s->responses);
  lfield_int(L, "errorResponses", (lua_Integer)s->error_responses);
  lfield_int(L, "timeouts", (lua_Integer)s->timeouts);
  lfield_int(L, "challenges", (lua_Integer)s->challenges);
  lfield_int(L, "staleNonces", (lua_Integer)s->stale_nonces);
  lfield_int(L, "authFailures", (lua_Integer)s->auth_failures);
  lfield_int(L, "malformed", (lua_Integer)s->malformed);
  lfield_int(L, "stray", (lua_Integer)s->stray);
  lfield_int(L, "permissionsCreated", (lua_Integer)s->permissions);
  lfield_int(L, "channelBinds", (lua_Integer)s->channel_binds);
  lfield_int(L, "sendErrors", (lua_Integer)s->send_errors);
  lfield_int(L, "natTraversalSent", (lua_Integer)s->nat_traversal_sent);
  return 1;
}

/* nat.turn_send(address, port, data) -> true | nil, why: one datagram to a
 * peer through the UDP relay (diagnostics: a channel is bound for it). */
static int l_turn_send(lua_State *L) {
  struct nat *nt = nat_of(L);
  const char *ip = luaL_checkstring(L, 1);
  lua_Integer port = luaL_checkinteger(L, 2);
  size_t len;
  const char *data = luaL_checklstring(L, 3, &len);
  char why[160];
  struct stun_addr peer;
  if (port < 1 || port > 65535 || stun_addr_set(&peer, ip, (uint16_t)port) != 0)
    return luaL_error(L, "nat.turn_send: address must be a numeric IP and port 1..65535");
  if (nt->turn == NULL) {
    luaL_pushfail(L);
    lua_pushstring(L, "NAT traversal is off");
    return 2;
  }
  if (turn_send(nt->turn, &peer, data, len, why, sizeof why) != 0) {
    luaL_pushfail(L);
    lua_pushstring(L, why);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

void lnat_open(lua_State *L, struct node *n) {
  static const luaL_Reg fns[] = {{"get_external_address", l_get_external_address},
                                 {"get_candidates", l_get_candidates},
                                 {"discover", l_discover},
                                 {"behaviour", l_behaviour},
                                 {"behavior", l_behaviour},
                                 {"stats", l_stats},
                                 {"turn_status", l_turn_status},
                                 {"turn_send", l_turn_send},
                                 {NULL, NULL}};
  lua_newtable(L);
  lua_pushlightuserdata(L, n);
  luaL_setfuncs(L, fns, 1);
  lua_setglobal(L, "nat");
}
