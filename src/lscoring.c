/* lscoring: the `scoring` table of the trusted Lua state — the seed's
 * PeerScoring API (record_behavior, update_latency, get_score,
 * get_top_peers) plus ban/unban for operators. */
#include "lscoring.h"

#include <math.h>
#include <string.h>

#include <lauxlib.h>

#include "netmgr.h"
#include "node.h"
#include "scoring.h"
#include "lfield.h"

static struct node *node_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }

static struct score *check_score(lua_State *L, int idx, bool create) {
  struct node *n = node_of(L);
  const char *id = luaL_checkstring(L, idx);
  struct score *s = create ? scoring_get(&n->net.scoring, id) : scoring_find(&n->net.scoring, id);
  if (s == NULL && create) luaL_argerror(L, idx, "a node id is 40 lowercase hex characters");
  return s;
}

static void push_categories(lua_State *L, const double *c) {
  lua_createtable(L, 0, SCORE_NCATEGORIES);
  for (int i = 0; i < SCORE_NCATEGORIES; i++) lfield_num(L, conf_category_name(i), c[i]);
}

static int l_record_behavior(lua_State *L) {
  struct node *n = node_of(L);
  struct score *s = check_score(L, 1, true);
  const char *name = luaL_checkstring(L, 2);
  int b = scoring_behavior_parse(name);
  if (b < 0)
    return luaL_error(L, "unknown behavior '%s' (GOOD_BLOCK, BAD_BLOCK, GOOD_TRANSACTION, "
                         "BAD_TRANSACTION, SPAM, INVALID_MESSAGE, TIMEOUT, DISCONNECT, "
                         "RECONNECT, RELAY_SUCCESS, RELAY_FAILURE)", name);
  lua_pushnumber(L, scoring_record(&n->net.scoring, s->id, (enum behavior)b));
  return 1;
}

static int l_update_latency(lua_State *L) {
  struct node *n = node_of(L);
  struct score *s = check_score(L, 1, true);
  double ms = luaL_checknumber(L, 2);
  luaL_argcheck(L, ms >= 0 && isfinite(ms), 2, "latency must be a number of ms >= 0");
  scoring_latency(&n->net.scoring, s->id, ms);
  scoring_recompute(&n->net.scoring, s);
  lua_pushnumber(L, s->total);
  return 1;
}

static int l_get_score(lua_State *L) {
  struct node *n = node_of(L);
  struct score *s = check_score(L, 1, false);
  if (s == NULL) return 0;
  struct scoring *sc = &n->net.scoring;
  scoring_recompute(sc, s);
  double now = scoring_now();
  lua_createtable(L, 0, 12);
  lua_pushstring(L, s->id);
  lua_setfield(L, -2, "peer_id");
  lfield_num(L, "total_score", s->total);
  lua_pushstring(L, policy_level_name(s->level));
  lua_setfield(L, -2, "level");
  push_categories(L, s->cat);
  lua_setfield(L, -2, "categories");
  for (int i = 0; i < SCORE_NCATEGORIES; i++) lfield_num(L, conf_category_name(i), s->cat[i]);
  if (scoring_banned(s, now)) lfield_num(L, "banned_for", s->ban_until - now);
  lua_pushboolean(L, s->session_start > 0);
  lua_setfield(L, -2, "connected");

  lua_createtable(L, 0, 10);
  if (s->rtt_ms >= 0) lfield_num(L, "rtt_ms", s->rtt_ms);
  lfield_num(L, "connected_s", s->connected_s + (s->session_start > 0 ? now - s->session_start : 0));
  lfield_num(L, "disconnects", s->disconnects);
  lfield_num(L, "reconnects", s->reconnects);
  lfield_num(L, "blocks_first", s->blocks_first);
  lfield_num(L, "blocks_duplicate", s->blocks_duplicate);
  lfield_num(L, "blocks_invalid", s->blocks_invalid);
  lfield_num(L, "tx_useful", s->tx_useful);
  lfield_num(L, "tx_duplicate", s->tx_duplicate);
  lfield_num(L, "tx_invalid", s->tx_invalid);
  lfield_num(L, "behavior", s->behavior);
  lua_pushboolean(L, s->validator);
  lua_setfield(L, -2, "validator");
  lua_setfield(L, -2, "metrics");

  /* recent history, newest first */
  int limit = sc->conf->peerScoring.historyLimit;
  lua_createtable(L, s->hist_n, 0);
  for (int i = 0; i < s->hist_n; i++) {
    const struct score_event *e = &s->hist[(s->hist_pos - 1 - i + limit) % limit];
    lua_createtable(L, 0, 4);
    lua_pushstring(L, scoring_behavior_name((enum behavior)e->behavior));
    lua_setfield(L, -2, "behavior");
    lfield_num(L, "delta", e->delta);
    lfield_num(L, "total", e->total);
    lfield_num(L, "at", e->at);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "history");

  /* which categories move the total most, largest first */
  double contrib[SCORE_NCATEGORIES];
  scoring_contributions(sc, s, contrib);
  int order[SCORE_NCATEGORIES];
  for (int i = 0; i < SCORE_NCATEGORIES; i++) order[i] = i;
  for (int i = 1; i < SCORE_NCATEGORIES; i++)
    for (int j = i; j > 0 && fabs(contrib[order[j]]) > fabs(contrib[order[j - 1]]); j--) {
      int t = order[j];
      order[j] = order[j - 1];
      order[j - 1] = t;
    }
  lua_createtable(L, SCORE_NCATEGORIES, 0);
  for (int i = 0; i < SCORE_NCATEGORIES; i++) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, conf_category_name(order[i]));
    lua_setfield(L, -2, "category");
    lfield_num(L, "contribution", contrib[order[i]]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "factors");
  return 1;
}

static int l_get_top_peers(lua_State *L) {
  struct node *n = node_of(L);
  lua_Integer want = luaL_optinteger(L, 1, 10);
  luaL_argcheck(L, want >= 0 && want <= 10000, 1, "n must be in 0..10000");
  struct score **top = lua_newuserdatauv(L, (size_t)(want ? want : 1) * sizeof *top, 0);
  int k = scoring_top(&n->net.scoring, top, (int)want);
  lua_createtable(L, k, 0);
  for (int i = 0; i < k; i++) {
    lua_createtable(L, 0, 4);
    lua_pushstring(L, top[i]->id);
    lua_setfield(L, -2, "peer_id");
    lfield_num(L, "total_score", top[i]->total);
    lua_pushstring(L, policy_level_name(top[i]->level));
    lua_setfield(L, -2, "level");
    lua_pushboolean(L, top[i]->session_start > 0);
    lua_setfield(L, -2, "connected");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int l_ban(lua_State *L) {
  struct node *n = node_of(L);
  struct score *s = check_score(L, 1, true);
  double seconds = luaL_checknumber(L, 2);
  luaL_argcheck(L, seconds > 0 && seconds <= 31536000, 2, "seconds must be in (0, 31536000]");
  netmgr_ban(&n->net, s, seconds, "banned by operator");
  lua_pushboolean(L, 1);
  return 1;
}

static int l_unban(lua_State *L) {
  struct node *n = node_of(L);
  struct score *s = check_score(L, 1, false);
  if (s == NULL) {
    luaL_pushfail(L);
    lua_pushliteral(L, "unknown node");
    return 2;
  }
  netmgr_unban(&n->net, s);
  lua_pushboolean(L, 1);
  return 1;
}

void lscoring_open(lua_State *L, struct node *n) {
  static const luaL_Reg fns[] = {{"record_behavior", l_record_behavior},
                                 {"update_latency", l_update_latency},
                                 {"get_score", l_get_score},
                                 {"get_top_peers", l_get_top_peers},
                                 {"ban", l_ban},
                                 {"unban", l_unban},
                                 {NULL, NULL}};
  lua_newtable(L);
  lua_pushlightuserdata(L, n);
  luaL_setfuncs(L, fns, 1);
  lua_setglobal(L, "scoring");
}
