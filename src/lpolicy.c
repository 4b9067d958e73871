/* lpolicy: see lpolicy.h. */
#include "lpolicy.h"

#include <math.h>
#include <string.h>

#include <lauxlib.h>

#include "log.h"

static const char *const category_names[SCORE_NCATEGORIES] = {
    "latency", "uptime", "blockPropagation", "transactionRelay", "validatorStatus", "behavior"};
static const double seed_weights[SCORE_NCATEGORIES] = {0.2, 0.2, 0.25, 0.15, 0.1, 0.1};
static const char *const mode_names[] = {"flood", "selective", "validator_only"};

const char *lpolicy_category_name(enum score_category c) {
  return (unsigned)c < SCORE_NCATEGORIES ? category_names[c] : "?";
}

const char *lpolicy_relay_mode_name(enum relay_mode m) {
  return (unsigned)m <= RELAY_VALIDATOR_ONLY ? mode_names[m] : "?";
}

int lpolicy_relay_mode_parse(const char *s) {
  for (int i = 0; i <= RELAY_VALIDATOR_ONLY; i++)
    if (strcmp(s, mode_names[i]) == 0) return i;
  return -1;
}

void lpolicy_config_defaults(struct lpolicy_config *c) {
  memcpy(c->weights, seed_weights, sizeof c->weights);
  c->trusted = 75;
  c->neutral = 0;
  c->banned = -50;
  c->relay_mode = RELAY_SELECTIVE;
  c->relay_threshold = 50;
}

/* ---- config ---------------------------------------------------------------- */

/* [-0, +1, e] Pushes t[key] (raw), creating an empty table when absent. */
static void section(lua_State *L, int t, const char *key, const char *path) {
  lua_pushstring(L, key);
  int type = lua_rawget(L, t);
  if (type == LUA_TNIL) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushstring(L, key);
    lua_pushvalue(L, -2);
    lua_rawset(L, t);
  } else if (type != LUA_TTABLE) {
    luaL_error(L, "config: %s must be a table, got %s", path, lua_typename(L, type));
  }
}

/* Reads t[key] as a finite number, storing the default when absent. */
static double number_field(lua_State *L, int t, const char *key, double dflt, const char *path) {
  lua_pushstring(L, key);
  int type = lua_rawget(L, t);
  double v = dflt;
  if (type == LUA_TNIL) {
    lua_pushstring(L, key);
    lua_pushnumber(L, dflt);
    lua_rawset(L, t);
  } else if (type == LUA_TNUMBER && isfinite(lua_tonumber(L, -1))) {
    v = lua_tonumber(L, -1);
  } else {
    luaL_error(L, "config: %s.%s must be a number, got %s", path, key, luaL_typename(L, -1));
  }
  lua_pop(L, 1);
  return v;
}

/* [-0, +0, e] Fills the keys policies read and copies them into cfg. */
static void complete_config(lua_State *L, int t, struct lpolicy_config *cfg) {
  struct lpolicy_config d;
  lpolicy_config_defaults(&d);
  section(L, t, "peerScoring", "peerScoring");
  int ps = lua_gettop(L);
  section(L, ps, "weights", "peerScoring.weights");
  for (int i = 0; i < SCORE_NCATEGORIES; i++)
    cfg->weights[i] = number_field(L, lua_gettop(L), category_names[i], d.weights[i],
                                   "peerScoring.weights");
  lua_pop(L, 1);
  section(L, ps, "thresholds", "peerScoring.thresholds");
  int th = lua_gettop(L);
  cfg->trusted = number_field(L, th, "trusted", d.trusted, "peerScoring.thresholds");
  cfg->neutral = number_field(L, th, "neutral", d.neutral, "peerScoring.thresholds");
  cfg->banned = number_field(L, th, "banned", d.banned, "peerScoring.thresholds");
  lua_pop(L, 2);

  section(L, t, "messageRelay", "messageRelay");
  int mr = lua_gettop(L);
  lua_pushliteral(L, "relayMode");
  int type = lua_rawget(L, mr);
  if (type == LUA_TNIL) {
    cfg->relay_mode = d.relay_mode;
    lua_pushstring(L, mode_names[d.relay_mode]);
    lua_setfield(L, mr, "relayMode"); /* a plain table: no metamethods */
  } else if (type != LUA_TSTRING || lpolicy_relay_mode_parse(lua_tostring(L, -1)) < 0) {
    luaL_error(L, "config: messageRelay.relayMode must be \"flood\", \"selective\" or "
                  "\"validator_only\"");
  } else {
    cfg->relay_mode = (enum relay_mode)lpolicy_relay_mode_parse(lua_tostring(L, -1));
  }
  lua_pop(L, 1);
  cfg->relay_threshold = number_field(L, mr, "relayThreshold", d.relay_threshold, "messageRelay");
  lua_pop(L, 1);
}

/* ---- log ------------------------------------------------------------------ */

/* log(level, message); upvalues: 1 a struct log_limit userdata, 2 the
 * policy's name. */
static int policy_log(lua_State *L) {
  const char *lv = luaL_checkstring(L, 1);
  int level = log_level_parse(lv);
  if (level < 0 || level == LV_OFF)
    return luaL_error(L, "log: level must be \"debug\", \"info\", \"warn\" or \"error\", got "
                      "'%s'", lv);
  luaL_checkany(L, 2);
  const char *msg = luaL_tolstring(L, 2, NULL);
  struct log_limit *rl = lua_touserdata(L, lua_upvalueindex(1));
  const char *policy = lua_tostring(L, lua_upvalueindex(2));
  char at[96] = "?";
  lua_Debug ar;
  if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
    snprintf(at, sizeof at, "%s:%d", ar.short_src, ar.currentline);
  log_limited(rl, level, "policy_log", "policy=%s at=%s msg=%.*s", policy, at, 400, msg);
  return 0;
}

int lpolicy_open(lua_State *L) {
  struct lpolicy_env *env = lua_touserdata(L, 1);
  struct lsandbox *sb = lsandbox_from_state(L);
  lpolicy_config_defaults(&env->cfg);

  const char *lit = env->literal ? env->literal : "{}";
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "return ");
  luaL_addstring(&b, lit);
  luaL_pushresult(&b);
  size_t len;
  const char *text = lua_tolstring(L, -1, &len);
  if (lsandbox_load(sb, text, len, "=config") != LSANDBOX_OK)
    return luaL_error(L, "%s", lsandbox_message(sb));
  lua_newtable(L); /* an empty environment: a literal calls nothing */
  if (lua_setupvalue(L, -2, 1) == NULL) lua_pop(L, 1);
  enum lsandbox_status st = lsandbox_pcall(sb, 0, 1, &env->lim, NULL);
  if (st != LSANDBOX_OK) return luaL_error(L, "config: %s", lsandbox_message(sb));
  if (!lua_istable(L, -1))
    return luaL_error(L, "config: the literal must be a table constructor, got %s",
                      luaL_typename(L, -1));
  complete_config(L, lua_gettop(L), &env->cfg);
  lsandbox_readonly(L, -1, "config");
  lua_setglobal(L, "config");
  lua_pop(L, 2); /* the table and the text */

  struct log_limit *rl = lua_newuserdatauv(L, sizeof *rl, 0);
  memset(rl, 0, sizeof *rl);
  lua_pushstring(L, env->policy ? env->policy : "policy");
  lua_pushcclosure(L, policy_log, 2);
  lua_setglobal(L, "log");
  return 0;
}
