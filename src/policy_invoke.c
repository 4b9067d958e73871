/* policy_invoke: calls one policy hook under the sandbox budget. A call is a
 * protected call of a C trampoline that pushes the arguments, calls the hook
 * and checks what came back, so every allocation inside the policy's state
 * happens under protection; pinvoke_call adds the per-hook counters, the
 * rate-limited policy_hook_failed warning and the switch-off after too many
 * consecutive failures, and answers false whenever the caller must use its C
 * default. It must not load, reload or free generations, hold C defaults or
 * tunables (policy.c), check policy files (policy_check.c), leave anything on
 * a policy's Lua stack, or call Lua outside lsandbox_pcall's budget.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

#include "log.h"
#include "lpolicy.h"
#include "lsandbox.h"
#include "policy_int.h"
#include "lfield.h"

const char *const pinvoke_outcome_names[] = {"ok", "error", "timeout", "oom", "bad_return"};

struct lsandbox_limits pinvoke_limits(const struct policy_limits *l, int mult) {
  struct lsandbox_limits s = {l->instructions * mult, (double)l->time_ms * mult};
  return s;
}

/* The first line of a Lua message, with Lua's "..." abbreviation of a long
 * chunk name replaced by the full path. */
void pinvoke_first_line(char *out, size_t cap, const char *msg, const char *path) {
  size_t n = strcspn(msg, "\n");
  if (path && strncmp(msg, "...", 3) == 0) {
    const char *colon = memchr(msg + 3, ':', n > 3 ? n - 3 : 0);
    size_t shown = colon ? (size_t)(colon - (msg + 3)) : 0;
    size_t plen = strlen(path);
    if (colon && shown <= plen && memcmp(path + plen - shown, msg + 3, shown) == 0) {
      snprintf(out, cap, "%s%.*s", path, (int)(n - 3 - shown), colon);
      return;
    }
  }
  snprintf(out, cap, "%.*s", (int)n, msg);
}

static int push_args(lua_State *L, const struct invoke *iv) {
  switch (iv->hook) {
    case PH_VALIDATE:
      lua_createtable(L, 0, 8);
      lfield_str(L, "node_id", iv->hs->node_id);
      lfield_str(L, "address", iv->hs->address);
      lua_pushboolean(L, iv->hs->inbound);
      lua_setfield(L, -2, "inbound");
      lfield_int(L, "protocol_version", iv->hs->protocol_version);
      lfield_str(L, "network_id", iv->hs->network_id);
      lfield_str(L, "local_network_id", iv->hs->local_network_id);
      lfield_num(L, "clock_skew_ms", iv->hs->clock_skew_ms);
      lfield_str(L, "metadata_json", iv->hs->metadata_json);
      return 1;
    case PH_CATEGORIES: {
      const struct policy_score_metrics *m = iv->metrics;
      lua_createtable(L, 0, 8);
      if (m->rtt_ms >= 0) lfield_num(L, "rtt_ms", m->rtt_ms);
      lfield_num(L, "uptime", m->uptime);
      lfield_num(L, "connected_s", m->connected_s);
      lfield_num(L, "disconnects", m->disconnects);
      lfield_num(L, "reconnects", m->reconnects);
      lua_createtable(L, 0, 3);
      lfield_num(L, "first", m->blocks_first);
      lfield_num(L, "duplicate", m->blocks_duplicate);
      lfield_num(L, "invalid", m->blocks_invalid);
      lua_setfield(L, -2, "blocks");
      lua_createtable(L, 0, 3);
      lfield_num(L, "useful", m->tx_useful);
      lfield_num(L, "duplicate", m->tx_duplicate);
      lfield_num(L, "invalid", m->tx_invalid);
      lua_setfield(L, -2, "transactions");
      lua_pushboolean(L, m->validator);
      lua_setfield(L, -2, "validator");
      lfield_num(L, "behavior", m->behavior);
      return 1;
    }
    case PH_ON_THRESHOLD:
      lua_createtable(L, 0, 2);
      lfield_str(L, "node_id", iv->node_id);
      lfield_num(L, "total", iv->total);
      lua_pushstring(L, policy_level_name(iv->from));
      lua_pushstring(L, policy_level_name(iv->to));
      return 3;
    case PH_TOTAL:
      lua_createtable(L, 0, SCORE_NCATEGORIES);
      for (int i = 0; i < SCORE_NCATEGORIES; i++) lfield_num(L, lpolicy_category_name(i), iv->cats[i]);
      return 1;
    case PH_DELTA:
      lua_pushstring(L, iv->behavior);
      lua_pushnumber(L, iv->total);
      return 2;
    case PH_SELECT_MODE:
      lua_pushstring(L, iv->msg_type);
      lua_createtable(L, 0, 3);
      lfield_int(L, "peers", iv->sit->peers);
      lfield_int(L, "validators", iv->sit->validators);
      lfield_int(L, "trusted", iv->sit->trusted);
      return 2;
    case PH_N: break;
  }
  return 0;
}

static void check_number_result(lua_State *L, struct invoke *iv) {
  char vb[80];
  double v = lua_tonumber(L, -2);
  if (lua_type(L, -2) != LUA_TNUMBER || !isfinite(v) || v < -100 || v > 100)
    snprintf(iv->bad, sizeof iv->bad, "%s must return a finite number in [-100, 100], got %s",
             policy_hook_defs[iv->hook].full, pcheck_value_text(L, -2, vb, sizeof vb));
  else
    iv->number = v;
}

/* categories must be a table with all six categories: 0..10 each, except
 * behavior, which may go down to -100. */
static void check_categories_result(lua_State *L, struct invoke *iv) {
  char vb[80];
  if (lua_type(L, -2) != LUA_TTABLE) {
    snprintf(iv->bad, sizeof iv->bad, "scoring.categories must return a table, got %s",
             pcheck_value_text(L, -2, vb, sizeof vb));
    return;
  }
  for (int i = 0; i < SCORE_NCATEGORIES; i++) {
    const char *name = lpolicy_category_name(i);
    lua_pushstring(L, name);
    int type = lua_rawget(L, -3);
    double v = lua_tonumber(L, -1);
    double lo = i == SCORE_BEHAVIOR ? -100 : 0;
    if (type != LUA_TNUMBER || !isfinite(v) || v < lo || v > 10) {
      snprintf(iv->bad, sizeof iv->bad,
               "scoring.categories must return %s as a number in [%g, 10], got %s", name, lo,
               pcheck_value_text(L, -1, vb, sizeof vb));
      lua_pop(L, 1);
      return;
    }
    iv->out_cats[i] = v;
    lua_pop(L, 1);
  }
}

/* on_threshold returns nil (no action) or {ban_seconds = n, disconnect = b}. */
static void check_action_result(lua_State *L, struct invoke *iv) {
  char vb[80];
  memset(&iv->action, 0, sizeof iv->action);
  if (lua_isnil(L, -2)) return;
  if (lua_type(L, -2) != LUA_TTABLE) {
    snprintf(iv->bad, sizeof iv->bad,
             "scoring.on_threshold must return nil or {ban_seconds =, disconnect =}, got %s",
             pcheck_value_text(L, -2, vb, sizeof vb));
    return;
  }
  lua_getfield(L, -2, "ban_seconds");
  double b = lua_tonumber(L, -1);
  if (!lua_isnil(L, -1) && (lua_type(L, -1) != LUA_TNUMBER || !isfinite(b) || b < 0 ||
                            b > 31536000)) {
    snprintf(iv->bad, sizeof iv->bad,
             "scoring.on_threshold: ban_seconds must be a number in [0, 31536000], got %s",
             pcheck_value_text(L, -1, vb, sizeof vb));
    lua_pop(L, 1);
    return;
  }
  iv->action.ban_seconds = lua_isnil(L, -1) ? 0 : b;
  lua_pop(L, 1);
  lua_getfield(L, -2, "disconnect");
  if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TBOOLEAN) {
    snprintf(iv->bad, sizeof iv->bad,
             "scoring.on_threshold: disconnect must be a boolean, got %s",
             pcheck_value_text(L, -1, vb, sizeof vb));
    lua_pop(L, 1);
    return;
  }
  iv->action.disconnect = lua_toboolean(L, -1);
  lua_pop(L, 1);
}

/* Protected: 1 the struct invoke. Calls the hook and checks its results. */
static int invoke_trampoline(lua_State *L) {
  struct invoke *iv = lua_touserdata(L, 1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, iv->ref);
  int nargs = push_args(L, iv);
  lua_call(L, nargs, 2);
  char vb[80];
  switch (iv->hook) {
    case PH_VALIDATE:
      if (lua_type(L, -2) != LUA_TBOOLEAN) {
        snprintf(iv->bad, sizeof iv->bad,
                 "handshake.validate must return true, or false and a reason string; got %s",
                 pcheck_value_text(L, -2, vb, sizeof vb));
      } else if (lua_toboolean(L, -2)) {
        iv->accept = true;
      } else if (lua_type(L, -1) != LUA_TSTRING) {
        snprintf(iv->bad, sizeof iv->bad,
                 "handshake.validate returned false without a reason string (got %s)",
                 pcheck_value_text(L, -1, vb, sizeof vb));
      } else {
        iv->accept = false;
        snprintf(iv->reason, sizeof iv->reason, "%s", lua_tostring(L, -1));
      }
      break;
    case PH_TOTAL:
    case PH_DELTA: check_number_result(L, iv); break;
    case PH_CATEGORIES: check_categories_result(L, iv); break;
    case PH_ON_THRESHOLD: check_action_result(L, iv); break;
    case PH_SELECT_MODE: {
      int mode = lua_type(L, -2) == LUA_TSTRING ? lpolicy_relay_mode_parse(lua_tostring(L, -2)) : -1;
      if (mode < 0)
        snprintf(iv->bad, sizeof iv->bad,
                 "relay.select_mode must return \"flood\", \"selective\" or \"validator_only\", "
                 "got %s", pcheck_value_text(L, -2, vb, sizeof vb));
      else
        iv->mode = (enum relay_mode)mode;
      break;
    }
    case PH_N: break;
  }
  return 0;
}

enum outcome pinvoke_run(struct generation *g, struct invoke *iv,
                         const struct policy_limits *lim, int mult, double *elapsed, char *msg,
                         size_t cap) {
  struct lsandbox *sb = g->sb[policy_hook_defs[iv->hook].file];
  lua_State *L = lsandbox_state(sb);
  int top = lua_gettop(L);
  iv->ref = g->ref[iv->hook];
  iv->bad[0] = '\0';
  lua_pushcfunction(L, invoke_trampoline);
  lua_pushlightuserdata(L, iv);
  struct lsandbox_limits sl = pinvoke_limits(lim, mult);
  enum lsandbox_status st = lsandbox_pcall(sb, 1, 0, &sl, elapsed);
  if (lua_gettop(L) != top) { /* cannot happen; never let a state drift */
    log_at(LV_ERROR, "policy_stack", "hook=%s top=%d expected=%d", policy_hook_defs[iv->hook].full,
           lua_gettop(L), top);
    lua_settop(L, top);
  }
  switch (st) {
    case LSANDBOX_OK:
      if (iv->bad[0]) {
        snprintf(msg, cap, "%s", iv->bad);
        return OUT_BAD_RETURN;
      }
      msg[0] = '\0';
      return OUT_OK;
    case LSANDBOX_ERROR: pinvoke_first_line(msg, cap, lsandbox_message(sb), g->path[policy_hook_defs[iv->hook].file]);
      return OUT_ERROR;
    case LSANDBOX_TIMEOUT: pinvoke_first_line(msg, cap, lsandbox_message(sb), g->path[policy_hook_defs[iv->hook].file]);
      return OUT_TIMEOUT;
    case LSANDBOX_OOM: snprintf(msg, cap, "%s", lsandbox_message(sb)); return OUT_OOM;
  }
  return OUT_ERROR;
}

/* Runs a hook for a caller: false means "use the C default". */
bool pinvoke_call(struct policy_host *h, struct invoke *iv) {
  struct generation *g = h->gen;
  if (g == NULL || g->ref[iv->hook] == LUA_NOREF) return false;
  struct hook_stats *s = &h->stats[iv->hook];
  s->calls++;
  if (s->disabled) {
    s->defaulted++;
    return false;
  }
  double ms = 0;
  char msg[300];
  enum outcome o = pinvoke_run(g, iv, &h->limits, 1, &ms, msg, sizeof msg);
  s->time_ms += ms;
  if (o == OUT_OK) {
    s->consecutive = 0;
    return true;
  }
  switch (o) {
    case OUT_ERROR: s->errors++; break;
    case OUT_TIMEOUT: s->timeouts++; break;
    case OUT_OOM: s->oom++; break;
    case OUT_BAD_RETURN: s->bad_returns++; break;
    case OUT_OK: break;
  }
  s->defaulted++;
  s->consecutive++;
  snprintf(s->last_error, sizeof s->last_error, "%s", msg);
  const char *path = g->path[policy_hook_defs[iv->hook].file];
  log_limited(&s->rl, LV_WARN, "policy_hook_failed",
              "hook=%s result=%s hook_at=%s:%d msg=%s default=used", policy_hook_defs[iv->hook].full,
              pinvoke_outcome_names[o], path, g->line[iv->hook], msg);
  if (h->limits.failures > 0 && s->consecutive >= h->limits.failures) {
    s->disabled = true;
    log_at(LV_ERROR, "policy_hook_disabled",
           "hook=%s hook_at=%s:%d failures=%d msg=%s", policy_hook_defs[iv->hook].full, path,
           g->line[iv->hook], s->consecutive,
           "switched off after consecutive failures: the C default answers until the next "
           "successful reload");
  }
  return false;
}
