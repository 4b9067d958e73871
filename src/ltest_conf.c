/* ltest_conf: spec bindings for conf.
 *
 *   bt2c.conf_load(path_or_nil[, optional]) -> t | nil, {"file:line: message", ...}
 *
 * t mirrors struct conf field by field (so specs check what C sees, not what
 * Lua checked), with enums as their names, plus `pushed`, the table that
 * conf_push builds from `normalized`. */
#include <string.h>

#include <lauxlib.h>

#include "conf.h"
#include "log.h"
#include "ltest.h"
#include "lfield.h"

#define CONF_BOX "bt2c.test.conf"

/* Owned by a userdata so nothing leaks if building the result raises. */
struct conf_box {
  struct conf c;
  struct conf_errors errs;
};

static int box_gc(lua_State *L) {
  struct conf_box *b = luaL_checkudata(L, 1, CONF_BOX);
  conf_free(&b->c);
  conf_errors_free(&b->errs);
  return 0;
}

static void set_list(lua_State *L, const char *k, char **v, size_t n) {
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, v[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, k);
}

static void push_conf(lua_State *L, const struct conf *c) {
  lua_newtable(L);
  lfield_str(L, "path", c->path);
  lfield_str(L, "dir", c->dir);
  lfield_int(L, "port", c->port);
  lfield_str(L, "host", c->host);
  lfield_int(L, "maxPeers", c->maxPeers);
  lfield_int(L, "maxInbound", c->maxInbound);
  lfield_int(L, "maxOutbound", c->maxOutbound);
  lfield_int(L, "connectionTimeout", c->connectionTimeout);
  lfield_int(L, "handshakeTimeout", c->handshakeTimeout);
  lfield_int(L, "pingInterval", c->pingInterval);
  lfield_int(L, "peerDiscoveryInterval", c->peerDiscoveryInterval);
  set_list(L, "bootstrapPeers", c->bootstrapPeers, c->n_bootstrapPeers);
  set_list(L, "persistentPeers", c->persistentPeers, c->n_persistentPeers);
  set_list(L, "validators", c->validators, c->n_validators);
  lfield_str(L, "nodeId", c->nodeId);
  lfield_str(L, "metaVersion", c->metaVersion);
  lua_pushboolean(L, c->isValidator);
  lua_setfield(L, -2, "isValidator");

  lua_newtable(L);
  lfield_num(L, "decayPeriod", c->peerScoring.decayPeriod);
  lfield_num(L, "decayFactor", c->peerScoring.decayFactor);
  lfield_int(L, "historyLimit", c->peerScoring.historyLimit);
  lua_newtable(L);
  for (int cat = 0; cat < SCORE_NCATEGORIES; cat++)
    lfield_num(L, conf_category_name((enum score_category)cat), c->peerScoring.weights[cat]);
  lua_setfield(L, -2, "weights");
  lfield_num(L, "trusted", c->peerScoring.trusted);
  lfield_num(L, "neutral", c->peerScoring.neutral);
  lfield_num(L, "banned", c->peerScoring.banned);
  lua_setfield(L, -2, "peerScoring");

  lua_newtable(L);
  set_list(L, "stunServers", c->natTraversal.stunServers, c->natTraversal.n_stunServers);
  lua_createtable(L, (int)c->natTraversal.n_turnServers, 0);
  for (size_t i = 0; i < c->natTraversal.n_turnServers; i++) {
    const struct conf_turn_server *s = &c->natTraversal.turnServers[i];
    lua_newtable(L);
    lfield_str(L, "urls", s->urls);
    lfield_str(L, "username", s->username);
    lfield_str(L, "credential", s->credential);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "turnServers");
  lfield_str(L, "preferredMethod", c->natTraversal.preferredMethod);
  lfield_str(L, "candidatePreference", c->natTraversal.candidatePreference);
  lfield_num(L, "stunRto", c->natTraversal.stunRto);
  lfield_num(L, "stunRetransmissions", c->natTraversal.stunRetransmissions);
  lfield_num(L, "stunRefreshInterval", c->natTraversal.stunRefreshInterval);
  lua_setfield(L, -2, "natTraversal");

  lua_newtable(L);
  lfield_int(L, "maxRelayHops", c->messageRelay.maxRelayHops);
  lfield_str(L, "relayMode", conf_relay_mode_name(c->messageRelay.relayMode));
  lfield_num(L, "relayThreshold", c->messageRelay.relayThreshold);
  lfield_num(L, "messageExpiration", c->messageRelay.messageExpiration);
  lfield_num(L, "cleanupInterval", c->messageRelay.cleanupInterval);
  lfield_num(L, "seenCacheSize", c->messageRelay.seenCacheSize);
  lua_setfield(L, -2, "messageRelay");

  lfield_str(L, "dataDir", c->dataDir);
  lfield_str(L, "policyDir", c->policyDir);
  lfield_str(L, "consoleSocket", c->consoleSocket);
  lfield_str(L, "networkId", c->networkId);
  lua_newtable(L);
  lfield_str(L, "host", c->metrics.host);
  lfield_int(L, "port", c->metrics.port);
  lua_setfield(L, -2, "metrics");
  lua_newtable(L);
  lfield_str(L, "cert", c->tls.cert);
  lfield_str(L, "key", c->tls.key);
  lua_setfield(L, -2, "tls");
  lfield_str(L, "logLevel", log_level_name(c->logLevel));
  lfield_int(L, "maxMessageSize", (lua_Integer)c->maxMessageSize);
  lfield_int(L, "consoleTimeout", c->consoleTimeout);
  lua_newtable(L);
  lfield_int(L, "instructions", c->policyLimits.instructions);
  lfield_int(L, "time", c->policyLimits.time);
  lfield_int(L, "memory", (lua_Integer)c->policyLimits.memory);
  lfield_int(L, "failures", c->policyLimits.failures);
  lua_setfield(L, -2, "policyLimits");
  lfield_str(L, "normalized", c->normalized);
  conf_push(L, c);
  lua_setfield(L, -2, "pushed");
}

static int l_conf_load(lua_State *L) {
  const char *path = luaL_optstring(L, 1, NULL);
  bool optional = lua_toboolean(L, 2);
  struct conf_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, CONF_BOX);
  if (conf_load(&b->c, path, optional, &b->errs) != 0) {
    luaL_pushfail(L);
    lua_createtable(L, (int)b->errs.n, 0);
    for (size_t i = 0; i < b->errs.n; i++) {
      lua_pushstring(L, b->errs.msg[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 2;
  }
  push_conf(L, &b->c);
  return 1;
}

static int l_conf_names(lua_State *L) {
  lua_newtable(L);
  lua_newtable(L);
  for (int m = RELAY_FLOOD; m <= RELAY_VALIDATOR_ONLY; m++) {
    lua_pushstring(L, conf_relay_mode_name((enum relay_mode)m));
    lua_rawseti(L, -2, m + 1);
  }
  lua_setfield(L, -2, "relayModes");
  lua_newtable(L);
  for (int cat = 0; cat < SCORE_NCATEGORIES; cat++) {
    lua_pushstring(L, conf_category_name((enum score_category)cat));
    lua_rawseti(L, -2, cat + 1);
  }
  lua_setfield(L, -2, "categories");
  return 1;
}

void ltest_conf(lua_State *L) {
  if (luaL_newmetatable(L, CONF_BOX)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"conf_load", l_conf_load}, {"conf_names", l_conf_names}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
