/* ltest_policy: spec bindings for the policy host and the raw sandbox.
 *
 *   bt2c.policy_host(limits, config_literal) -> host
 *     host:reload(dir) -> true | false, {"file:line: msg", ...}
 *     host:generation(), host:stats(), host:errors()
 *     host:handshake{node_id=, address=, inbound=, protocol_version=,
 *                    network_id=, local_network_id=, clock_skew_ms=,
 *                    metadata_json=} -> accepted, reason
 *     host:total{latency=, uptime=, ...} -> number
 *     host:behavior_delta(name, total) -> number
 *     host:select_mode(msg_type, {peers=, validators=, trusted=}) -> mode
 *     host:scoring_params() -> {weights = {...}, trusted=, neutral=, banned=, ban_seconds=}
 *     host:relay_threshold(), host:relay_mode(), host:handshake_params()
 *     host:run(file, code) -> status, results | message, elapsed_ms
 *     host:close()
 *   bt2c.policy_check_dir(limits, config_literal, dir) -> true | false, errors
 *   bt2c.sandbox_run(code, limits) -> status, results | message, elapsed_ms
 *   bt2c.pattern_cost(subject_len, pattern[, anchored]) -> estimated steps
 * limits = {instructions=, time_ms=, memory=, failures=}.
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "lpolicy.h"
#include "lpattern.h"
#include "lsandbox.h"
#include "ltest.h"
#include "policy.h"

#define HOST_MT "bt2c.test.policy_host"

struct host_ud {
  struct policy_host *h;
};

static struct policy_host *checkhost(lua_State *L) {
  struct host_ud *u = luaL_checkudata(L, 1, HOST_MT);
  luaL_argcheck(L, u->h != NULL, 1, "policy host closed");
  return u->h;
}

static lua_Integer opt_int_field(lua_State *L, int t, const char *k, lua_Integer d) {
  lua_getfield(L, t, k);
  lua_Integer v = lua_isnil(L, -1) ? d : (lua_Integer)luaL_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

static struct policy_limits get_limits(lua_State *L, int idx) {
  struct policy_limits l = {1000000, 50, 16u << 20, 5};
  if (lua_istable(L, idx)) {
    l.instructions = (long)opt_int_field(L, idx, "instructions", l.instructions);
    l.time_ms = (int)opt_int_field(L, idx, "time_ms", l.time_ms);
    l.memory = (size_t)opt_int_field(L, idx, "memory", (lua_Integer)l.memory);
    l.failures = (int)opt_int_field(L, idx, "failures", l.failures);
  }
  return l;
}

static int push_errors(lua_State *L, int rc, struct conf_errors *errs) {
  lua_pushboolean(L, rc == 0);
  lua_createtable(L, (int)errs->n, 0);
  for (size_t i = 0; i < errs->n; i++) {
    lua_pushstring(L, errs->msg[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
    free(errs->msg[i]);
  }
  free(errs->msg);
  errs->msg = NULL;
  errs->n = 0;
  return 2;
}

static int l_policy_host(lua_State *L) {
  struct policy_limits lim = get_limits(L, 1);
  const char *lit = luaL_optstring(L, 2, NULL);
  struct host_ud *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->h = NULL;
  luaL_setmetatable(L, HOST_MT);
  u->h = policy_host_new(&lim, lit);
  if (u->h == NULL) return luaL_error(L, "policy_host_new failed (see the log)");
  return 1;
}

static int h_close(lua_State *L) {
  struct host_ud *u = luaL_checkudata(L, 1, HOST_MT);
  policy_host_free(u->h);
  u->h = NULL;
  return 0;
}

static int h_reload(lua_State *L) {
  struct policy_host *h = checkhost(L);
  struct conf_errors errs = {0};
  int rc = policy_reload(h, luaL_checkstring(L, 2), &errs);
  return push_errors(L, rc, &errs);
}

static int h_generation(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)policy_generation(checkhost(L)));
  return 1;
}

static int h_stats(lua_State *L) {
  policy_push_stats(L, checkhost(L));
  return 1;
}

static int h_errors(lua_State *L) {
  policy_push_errors(L, checkhost(L));
  return 1;
}

static const char *opt_str_field(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  const char *s = lua_tostring(L, -1); /* stays alive: t holds it */
  lua_pop(L, 1);
  return s;
}

static int h_handshake(lua_State *L) {
  struct policy_host *h = checkhost(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  struct policy_handshake in = {
      .node_id = opt_str_field(L, 2, "node_id"),
      .address = opt_str_field(L, 2, "address"),
      .protocol_version = (int)opt_int_field(L, 2, "protocol_version", 1),
      .network_id = opt_str_field(L, 2, "network_id"),
      .local_network_id = opt_str_field(L, 2, "local_network_id"),
      .metadata_json = opt_str_field(L, 2, "metadata_json"),
  };
  lua_getfield(L, 2, "inbound");
  in.inbound = lua_toboolean(L, -1);
  lua_getfield(L, 2, "clock_skew_ms");
  in.clock_skew_ms = lua_tonumber(L, -1);
  lua_pop(L, 2);
  char reason[256];
  bool ok = policy_handshake_validate(h, &in, reason, sizeof reason);
  lua_pushboolean(L, ok);
  if (ok) return 1;
  lua_pushstring(L, reason);
  return 2;
}

static int h_total(lua_State *L) {
  struct policy_host *h = checkhost(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  double cat[SCORE_NCATEGORIES];
  for (int i = 0; i < SCORE_NCATEGORIES; i++) {
    lua_getfield(L, 2, lpolicy_category_name(i));
    cat[i] = lua_tonumber(L, -1);
    lua_pop(L, 1);
  }
  lua_pushnumber(L, policy_scoring_total(h, cat));
  return 1;
}

static double opt_field(lua_State *L, int t, const char *k, double def) {
  lua_getfield(L, t, k);
  double v = lua_isnil(L, -1) ? def : lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* host:categories{rtt_ms=, uptime=, blocks={first=,duplicate=,invalid=},
 *                 transactions={useful=,duplicate=,invalid=}, validator=, behavior=} */
static int h_categories(lua_State *L) {
  struct policy_host *h = checkhost(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  struct policy_score_metrics m = {0};
  m.rtt_ms = opt_field(L, 2, "rtt_ms", -1);
  m.uptime = opt_field(L, 2, "uptime", 0);
  m.connected_s = opt_field(L, 2, "connected_s", 0);
  m.disconnects = opt_field(L, 2, "disconnects", 0);
  m.reconnects = opt_field(L, 2, "reconnects", 0);
  m.behavior = opt_field(L, 2, "behavior", 0);
  lua_getfield(L, 2, "validator");
  m.validator = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (lua_getfield(L, 2, "blocks") == LUA_TTABLE) {
    m.blocks_first = opt_field(L, -1, "first", 0);
    m.blocks_duplicate = opt_field(L, -1, "duplicate", 0);
    m.blocks_invalid = opt_field(L, -1, "invalid", 0);
  }
  lua_pop(L, 1);
  if (lua_getfield(L, 2, "transactions") == LUA_TTABLE) {
    m.tx_useful = opt_field(L, -1, "useful", 0);
    m.tx_duplicate = opt_field(L, -1, "duplicate", 0);
    m.tx_invalid = opt_field(L, -1, "invalid", 0);
  }
  lua_pop(L, 1);
  double cat[SCORE_NCATEGORIES];
  policy_scoring_categories(h, &m, cat);
  lua_createtable(L, 0, SCORE_NCATEGORIES);
  for (int i = 0; i < SCORE_NCATEGORIES; i++) {
    lua_pushnumber(L, cat[i]);
    lua_setfield(L, -2, lpolicy_category_name(i));
  }
  return 1;
}

static int level_arg(lua_State *L, int idx) {
  static const char *const names[] = {"banned", "below_neutral", "neutral", "trusted", NULL};
  return luaL_checkoption(L, idx, NULL, names);
}

/* host:on_threshold(id, total, from, to) -> {ban_seconds=, disconnect=} */
static int h_on_threshold(lua_State *L) {
  struct policy_host *h = checkhost(L);
  struct policy_threshold_action a;
  policy_scoring_on_threshold(h, luaL_checkstring(L, 2), luaL_checknumber(L, 3),
                              (enum policy_level)level_arg(L, 4),
                              (enum policy_level)level_arg(L, 5), &a);
  lua_createtable(L, 0, 2);
  lua_pushnumber(L, a.ban_seconds);
  lua_setfield(L, -2, "ban_seconds");
  lua_pushboolean(L, a.disconnect);
  lua_setfield(L, -2, "disconnect");
  return 1;
}

static int h_behavior_delta(lua_State *L) {
  struct policy_host *h = checkhost(L);
  lua_pushnumber(L, policy_scoring_behavior_delta(h, luaL_checkstring(L, 2),
                                                  luaL_optnumber(L, 3, 0)));
  return 1;
}

static int h_select_mode(lua_State *L) {
  struct policy_host *h = checkhost(L);
  const char *type = luaL_checkstring(L, 2);
  struct policy_relay_situation s = {0, 0, 0};
  if (lua_istable(L, 3)) {
    s.peers = (int)opt_int_field(L, 3, "peers", 0);
    s.validators = (int)opt_int_field(L, 3, "validators", 0);
    s.trusted = (int)opt_int_field(L, 3, "trusted", 0);
  }
  lua_pushstring(L, lpolicy_relay_mode_name(policy_relay_select_mode(h, type, &s)));
  return 1;
}

static int h_scoring_params(lua_State *L) {
  struct policy_scoring_params p;
  policy_scoring_params(checkhost(L), &p);
  lua_newtable(L);
  lua_newtable(L);
  for (int i = 0; i < SCORE_NCATEGORIES; i++) {
    lua_pushnumber(L, p.weights[i]);
    lua_setfield(L, -2, lpolicy_category_name(i));
  }
  lua_setfield(L, -2, "weights");
  lua_pushnumber(L, p.trusted);
  lua_setfield(L, -2, "trusted");
  lua_pushnumber(L, p.neutral);
  lua_setfield(L, -2, "neutral");
  lua_pushnumber(L, p.banned);
  lua_setfield(L, -2, "banned");
  lua_pushnumber(L, p.ban_seconds);
  lua_setfield(L, -2, "ban_seconds");
  return 1;
}

static int h_relay_threshold(lua_State *L) {
  lua_pushnumber(L, policy_relay_threshold(checkhost(L)));
  return 1;
}

static int h_relay_mode(lua_State *L) {
  lua_pushstring(L, lpolicy_relay_mode_name(policy_relay_mode(checkhost(L))));
  return 1;
}

static int h_handshake_params(lua_State *L) {
  struct policy_handshake_params p;
  policy_handshake_params(checkhost(L), &p);
  lua_newtable(L);
  lua_pushinteger(L, p.min_protocol);
  lua_setfield(L, -2, "min_protocol");
  lua_pushinteger(L, p.max_protocol);
  lua_setfield(L, -2, "max_protocol");
  lua_pushnumber(L, p.max_clock_skew_ms);
  lua_setfield(L, -2, "max_clock_skew_ms");
  return 1;
}

static int h_run(lua_State *L) {
  struct policy_host *h = checkhost(L);
  double ms = policy_eval(h, luaL_checkstring(L, 2), luaL_checkstring(L, 3), L);
  lua_pushnumber(L, ms);
  return 3;
}

static int l_policy_check_dir(lua_State *L) {
  struct policy_limits lim = get_limits(L, 1);
  const char *lit = luaL_optstring(L, 2, NULL);
  struct conf_errors errs = {0};
  int rc = policy_check_dir(&lim, lit, luaL_checkstring(L, 3), &errs);
  return push_errors(L, rc, &errs);
}

static int l_sandbox_run(lua_State *L) {
  size_t len;
  const char *code = luaL_checklstring(L, 1, &len);
  struct policy_limits pl = get_limits(L, 2);
  char err[256];
  struct lsandbox *sb = lsandbox_new("sandbox_run", pl.memory, NULL, NULL, err, sizeof err);
  if (sb == NULL) return luaL_error(L, "sandbox_run: %s", err);
  lua_State *S = lsandbox_state(sb);
  enum lsandbox_status st = lsandbox_load(sb, code, len, "=sandbox_run");
  double ms = 0;
  if (st == LSANDBOX_OK) {
    struct lsandbox_limits lim = {pl.instructions, (double)pl.time_ms};
    st = lsandbox_pcall(sb, 0, LUA_MULTRET, &lim, &ms);
  }
  lua_pushstring(L, lsandbox_status_name(st));
  if (st == LSANDBOX_OK) lsandbox_copy_out(S, 1, lua_gettop(S), L);
  else lua_pushstring(L, lsandbox_message(sb));
  lua_pushnumber(L, ms);
  lsandbox_free(sb);
  return 3;
}

static int l_pattern_cost(lua_State *L) {
  size_t plen;
  lua_Integer n = luaL_checkinteger(L, 1);
  const char *p = luaL_checklstring(L, 2, &plen);
  bool anchor = lua_isnoneornil(L, 3) ? true : lua_toboolean(L, 3);
  lua_pushnumber(L, lpattern_cost((size_t)n, p, plen, anchor));
  return 1;
}

void ltest_policy(lua_State *L) {
  static const luaL_Reg methods[] = {{"reload", h_reload},
                                     {"generation", h_generation},
                                     {"stats", h_stats},
                                     {"errors", h_errors},
                                     {"handshake", h_handshake},
                                     {"total", h_total},
                                     {"categories", h_categories},
                                     {"on_threshold", h_on_threshold},
                                     {"behavior_delta", h_behavior_delta},
                                     {"select_mode", h_select_mode},
                                     {"scoring_params", h_scoring_params},
                                     {"relay_threshold", h_relay_threshold},
                                     {"relay_mode", h_relay_mode},
                                     {"handshake_params", h_handshake_params},
                                     {"run", h_run},
                                     {"close", h_close},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, HOST_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, h_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"policy_host", l_policy_host},
                                 {"policy_check_dir", l_policy_check_dir},
                                 {"sandbox_run", l_sandbox_run},
                                 {"pattern_cost", l_pattern_cost},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
