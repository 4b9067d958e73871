/* policy_check: checks what a policy file returned — known keys only (with
 * suggestions), policy_hook_defs are functions, tunables in range — and reports every
 * problem at the line of its key. */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "lpolicy.h"
#include "policy_int.h"

const char *const policy_file_names[PF_N] = {"handshake", "scoring", "relay"};
const struct policy_hook_def policy_hook_defs[PH_N] = {
    {PF_HANDSHAKE, "validate", "handshake.validate"},
    {PF_SCORING, "categories", "scoring.categories"},
    {PF_SCORING, "total", "scoring.total"},
    {PF_SCORING, "behavior_delta", "scoring.behavior_delta"},
    {PF_SCORING, "on_threshold", "scoring.on_threshold"},
    {PF_RELAY, "select_mode", "relay.select_mode"},
};

/* Tunable keys per file (policy_hook_defs are added from the table above). */
const char *const policy_tunable_keys[PF_N][5] = {
    {"min_protocol", "max_protocol", "max_clock_skew_ms", NULL},
    {"weights", "thresholds", "behaviors", "ban_seconds", NULL},
    {"mode", "threshold", "fanout", NULL},
};

const char *const policy_behavior_names[N_BEHAVIORS + 1] = {
    "GOOD_BLOCK", "BAD_BLOCK", "GOOD_TRANSACTION", "BAD_TRANSACTION", "SPAM", "INVALID_MESSAGE",
    "TIMEOUT",    "DISCONNECT", "RECONNECT",       "RELAY_SUCCESS",   "RELAY_FAILURE", NULL};
/* The seed's PeerScoring.recordBehavior deltas. */
const double policy_behavior_seed[N_BEHAVIORS] = {2, -5, 1, -2, -10, -3, -1, -1, 1, 1, -1};

const char *const policy_threshold_names[4] = {"trusted", "neutral", "banned", NULL};

char *pcheck_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

void pcheck_errs_add(struct conf_errors *errs, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  char **m = realloc(errs->msg, (errs->n + 1) * sizeof *m);
  if (m == NULL) return;
  errs->msg = m;
  if ((m[errs->n] = pcheck_strdup(buf)) != NULL) errs->n++;
}

/* ---- source lines ---------------------------------------------------------- */

static bool ident_char(int c) { return isalnum(c) || c == '_'; }

/* Line (1-based) of the first `key =` (or ["key"] =) at or after line
 * `from`, ignoring -- comments; 0 if none. */
static int key_line(const char *text, const char *key, int from) {
  size_t klen = strlen(key);
  int lineno = 1;
  for (const char *ln = text; *ln; lineno++) {
    const char *eol = strchr(ln, '\n');
    if (eol == NULL) eol = ln + strlen(ln);
    if (lineno >= from) {
      const char *end = ln;
      while (end < eol && !(end[0] == '-' && end + 1 < eol && end[1] == '-')) end++;
      for (const char *p = ln; p + klen <= end; p++) {
        if (memcmp(p, key, klen) != 0) continue;
        const char *q = p + klen;
        bool bare = (p == ln || !ident_char((unsigned char)p[-1])) &&
                    (q == end || !ident_char((unsigned char)*q));
        bool quoted = p > ln + 1 && (p[-1] == '"' || p[-1] == '\'') && p[-2] == '[' &&
                      q + 1 < end && *q == p[-1] && q[1] == ']';
        if (quoted) q += 2;
        if (!bare && !quoted) continue;
        while (q < end && (*q == ' ' || *q == '\t')) q++;
        if (q < end && *q == '=' && (q + 1 == end || q[1] != '=')) return lineno;
      }
    }
    ln = *eol ? eol + 1 : eol;
  }
  return 0;
}

/* Line of the last `return` at the start of a line, or 1. */
int pcheck_return_line(const char *text) {
  int lineno = 1, found = 1;
  for (const char *ln = text; *ln; lineno++) {
    const char *p = ln;
    while (*p == ' ' || *p == '\t') p++;
    if (strncmp(p, "return", 6) == 0 && !ident_char((unsigned char)p[6])) found = lineno;
    const char *eol = strchr(ln, '\n');
    if (eol == NULL) break;
    ln = eol + 1;
  }
  return found;
}

static int edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 40 || lb > 40) return 99;
  int d[41][41];
  for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= la; i++)
    for (size_t j = 1; j <= lb; j++) {
      int cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
      int v = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
      if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < v)
        v = d[i - 2][j - 2] + 1;
      d[i][j] = v;
    }
  return d[la][lb];
}

/* " (did you mean 'x'?)" or " (known: a, b, c)" for an unknown key. */
void pcheck_suggest(char *out, size_t cap, const char *key, const char *const *known) {
  const char *best = NULL;
  int bestd = 99;
  for (size_t i = 0; known[i]; i++) {
    int d = edit_distance(key, known[i]);
    if (d < bestd) {
      bestd = d;
      best = known[i];
    }
  }
  int allowed = strlen(key) <= 4 ? 1 : 2;
  if (best && bestd <= allowed) {
    snprintf(out, cap, " (did you mean '%s'?)", best);
    return;
  }
  size_t used = (size_t)snprintf(out, cap, " (known keys:");
  for (size_t i = 0; known[i] && used < cap; i++)
    used += (size_t)snprintf(out + used, cap - used, "%s %s", i ? "," : "", known[i]);
  if (used < cap) snprintf(out + used, cap - used, ")");
}

/* ---- loading: checks ------------------------------------------------------- */


static void check_err(struct check_ctx *c, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void check_err(struct check_ctx *c, int line, const char *fmt, ...) {
  char buf[800];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  pcheck_errs_add(c->errs, "%s:%d: %s", c->path, line, buf);
  c->nerr++;
}

/* Line of `key` (looked for from the line of `parent`, if any), falling back
 * to the parent's line and then to the final return. */
static int line_of(struct check_ctx *c, const char *parent, const char *key) {
  int from = 1;
  if (parent) {
    int pl = key_line(c->text, parent, 1);
    if (pl) from = pl;
  }
  int l = key ? key_line(c->text, key, from) : 0;
  if (l == 0 && parent) l = key_line(c->text, parent, 1);
  return l ? l : pcheck_return_line(c->text);
}

const char *pcheck_value_text(lua_State *L, int idx, char *buf, size_t cap) {
  switch (lua_type(L, idx)) {
    case LUA_TNUMBER: {
      double v = lua_tonumber(L, idx);
      if (isnan(v)) snprintf(buf, cap, "NaN");
      else snprintf(buf, cap, "%.14g", v);
      break;
    }
    case LUA_TSTRING: snprintf(buf, cap, "'%.60s'", lua_tostring(L, idx)); break;
    default: snprintf(buf, cap, "a %s", luaL_typename(L, idx)); break;
  }
  return buf;
}

/* Checks t[key] (raw) is a finite number in [lo, hi]; returns true and sets
 * *out when it is, leaves *out alone when the key is absent. */
static bool check_number(struct check_ctx *c, lua_State *L, int t, const char *parent,
                         const char *key, double lo, double hi, bool integer, double *out) {
  lua_pushstring(L, key);
  int type = lua_rawget(L, t);
  bool ok = true;
  if (type != LUA_TNIL) {
    double v = lua_tonumber(L, -1);
    if (type != LUA_TNUMBER || !isfinite(v) || v < lo || v > hi || (integer && v != floor(v))) {
      char vb[80];
      check_err(c, line_of(c, parent, key), "%s%s%s must be %s in [%.14g, %.14g], got %s",
                parent ? parent : "", parent ? "." : "", key, integer ? "an integer" : "a number",
                lo, hi, pcheck_value_text(L, -1, vb, sizeof vb));
      ok = false;
    } else {
      *out = v;
    }
  }
  lua_pop(L, 1);
  return ok;
}

/* [-0, +1, e] Pushes the table at t[key] (unproxied), or nil when absent;
 * reports a non-table. */
static bool get_table(struct check_ctx *c, lua_State *L, int t, const char *key) {
  lua_pushstring(L, key);
  int type = lua_rawget(L, t);
  if (type == LUA_TNIL) return false;
  if (type != LUA_TTABLE) {
    char vb[80];
    check_err(c, line_of(c, NULL, key), "%s must be a table, got %s", key,
              pcheck_value_text(L, -1, vb, sizeof vb));
    lua_pop(L, 1);
    lua_pushnil(L);
    return false;
  }
  lsandbox_unproxy(L, -1);
  lua_remove(L, -2);
  return true;
}

/* Reports keys of the table at t that are not in `known`. */
static void check_keys(struct check_ctx *c, lua_State *L, int t, const char *parent,
                       const char *const *known) {
  lua_pushnil(L);
  while (lua_next(L, t)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      char vb[80];
      check_err(c, line_of(c, parent, NULL), "%s%shas a non-string key %s", parent ? parent : "",
                parent ? " " : "the returned table ", pcheck_value_text(L, -2, vb, sizeof vb));
    } else {
      const char *k = lua_tostring(L, -2);
      bool found = false;
      for (size_t i = 0; known[i] && !found; i++) found = strcmp(k, known[i]) == 0;
      if (!found) {
        char hint[300];
        pcheck_suggest(hint, sizeof hint, k, known);
        int line = 0;
        if (lua_type(L, -1) == LUA_TFUNCTION) { /* `function M.x()` has no `x =` */
          lua_Debug ar;
          lua_pushvalue(L, -1);
          lua_getinfo(L, ">S", &ar);
          line = ar.linedefined;
        }
        check_err(c, line > 0 ? line : line_of(c, parent, k), "unknown key '%s%s%s'%s",
                  parent ? parent : "", parent ? "." : "", k, hint);
      }
    }
    lua_pop(L, 1);
  }
}

static void check_handshake(struct check_ctx *c, lua_State *L, int m, struct tunables *t) {
  double v = t->min_protocol;
  if (check_number(c, L, m, NULL, "min_protocol", 1, 65535, true, &v)) t->min_protocol = (int)v;
  v = t->max_protocol;
  if (check_number(c, L, m, NULL, "max_protocol", 1, 65535, true, &v)) t->max_protocol = (int)v;
  if (t->min_protocol > t->max_protocol)
    check_err(c, line_of(c, NULL, "max_protocol"),
              "max_protocol (%d) must be >= min_protocol (%d)", t->max_protocol,
              t->min_protocol);
  check_number(c, L, m, NULL, "max_clock_skew_ms", 0, 86400000, false, &t->max_clock_skew_ms);
}

static void check_scoring(struct check_ctx *c, lua_State *L, int m, struct tunables *t) {
  const char *cats[SCORE_NCATEGORIES + 1];
  for (int i = 0; i < SCORE_NCATEGORIES; i++) cats[i] = lpolicy_category_name(i);
  cats[SCORE_NCATEGORIES] = NULL;

  if (get_table(c, L, m, "weights")) {
    int w = lua_gettop(L);
    int before = c->nerr;
    check_keys(c, L, w, "weights", cats);
    double sum = 0;
    for (int i = 0; i < SCORE_NCATEGORIES; i++) {
      lua_pushstring(L, cats[i]);
      bool present = lua_rawget(L, w) != LUA_TNIL;
      lua_pop(L, 1);
      if (!present) {
        check_err(c, line_of(c, NULL, "weights"),
                  "weights.%s is missing (give all six: latency, uptime, blockPropagation, "
                  "transactionRelay, validatorStatus, behavior)", cats[i]);
        continue;
      }
      check_number(c, L, w, "weights", cats[i], 0, 1, false, &t->scoring.weights[i]);
      sum += t->scoring.weights[i];
    }
    if (c->nerr == before && fabs(sum - 1.0) > 0.001)
      check_err(c, line_of(c, NULL, "weights"),
                "weights must sum to 1 (within 0.001), they sum to %.6g", sum);
  }
  lua_pop(L, 1);

  if (get_table(c, L, m, "thresholds")) {
    int th = lua_gettop(L);
    int before = c->nerr;
    check_keys(c, L, th, "thresholds", policy_threshold_names);
    double *dst[] = {&t->scoring.trusted, &t->scoring.neutral, &t->scoring.banned};
    for (int i = 0; i < 3; i++) {
      lua_pushstring(L, policy_threshold_names[i]);
      bool present = lua_rawget(L, th) != LUA_TNIL;
      lua_pop(L, 1);
      if (!present)
        check_err(c, line_of(c, NULL, "thresholds"),
                  "thresholds.%s is missing (give trusted, neutral and banned)",
                  policy_threshold_names[i]);
      else
        check_number(c, L, th, "thresholds", policy_threshold_names[i], -100, 100, false, dst[i]);
    }
    if (c->nerr == before &&
        !(t->scoring.banned < t->scoring.neutral && t->scoring.neutral < t->scoring.trusted))
      check_err(c, line_of(c, NULL, "thresholds"),
                "thresholds must satisfy banned < neutral < trusted, got banned=%.6g "
                "neutral=%.6g trusted=%.6g",
                t->scoring.banned, t->scoring.neutral, t->scoring.trusted);
  }
  lua_pop(L, 1);

  if (get_table(c, L, m, "behaviors")) {
    int b = lua_gettop(L);
    check_keys(c, L, b, "behaviors", policy_behavior_names);
    for (int i = 0; i < N_BEHAVIORS; i++)
      check_number(c, L, b, "behaviors", policy_behavior_names[i], -100, 100, false, &t->behaviors[i]);
  }
  lua_pop(L, 1);

  check_number(c, L, m, NULL, "ban_seconds", 0, 31536000, false, &t->scoring.ban_seconds);
}

static void check_relay(struct check_ctx *c, lua_State *L, int m, struct tunables *t) {
  lua_pushliteral(L, "mode");
  int type = lua_rawget(L, m);
  if (type != LUA_TNIL) {
    int mode = type == LUA_TSTRING ? lpolicy_relay_mode_parse(lua_tostring(L, -1)) : -1;
    if (mode < 0) {
      static const char *const modes[] = {"flood", "selective", "validator_only", NULL};
      char vb[80], hint[120] = "";
      if (type == LUA_TSTRING) {
        pcheck_suggest(hint, sizeof hint, lua_tostring(L, -1), modes);
        if (strncmp(hint, " (did", 5) != 0) hint[0] = '\0';
      }
      check_err(c, line_of(c, NULL, "mode"),
                "mode must be \"flood\", \"selective\" or \"validator_only\", got %s%s",
                pcheck_value_text(L, -1, vb, sizeof vb), hint);
    } else {
      t->mode = (enum relay_mode)mode;
    }
  }
  lua_pop(L, 1);
  check_number(c, L, m, NULL, "threshold", -100, 100, false, &t->threshold);
  double fanout = t->fanout;
  if (check_number(c, L, m, NULL, "fanout", 1, 64, true, &fanout)) t->fanout = (int)fanout;
}

/* Protected: 1 the check_ctx, 2 what the file returned. */
int pcheck_module(lua_State *L) {
  struct check_ctx *c = lua_touserdata(L, 1);
  struct generation *g = c->g;
  lsandbox_unproxy(L, 2);
  int m = lua_gettop(L);
  if (!lua_istable(L, m)) {
    check_err(c, pcheck_return_line(c->text),
              "the file must return a table of policy_hook_defs and tunables, got %s", luaL_typename(L, m));
    return 0;
  }
  const char *known[12];
  size_t nk = 0;
  for (int h = 0; h < PH_N; h++)
    if (policy_hook_defs[h].file == c->file) known[nk++] = policy_hook_defs[h].name;
  for (size_t i = 0; policy_tunable_keys[c->file][i]; i++) known[nk++] = policy_tunable_keys[c->file][i];
  known[nk] = NULL;
  check_keys(c, L, m, NULL, known);

  for (int h = 0; h < PH_N; h++) {
    if (policy_hook_defs[h].file != c->file) continue;
    lua_pushstring(L, policy_hook_defs[h].name);
    int type = lua_rawget(L, m);
    if (type == LUA_TFUNCTION) {
      lua_Debug ar;
      lua_pushvalue(L, -1);
      lua_getinfo(L, ">S", &ar);
      g->line[h] = ar.linedefined > 0 ? ar.linedefined : line_of(c, NULL, policy_hook_defs[h].name);
      g->ref[h] = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
      if (type != LUA_TNIL) {
        char vb[80];
        check_err(c, line_of(c, NULL, policy_hook_defs[h].name), "%s must be a function, got %s",
                  policy_hook_defs[h].name, pcheck_value_text(L, -1, vb, sizeof vb));
      }
      lua_pop(L, 1);
    }
  }
  switch (c->file) {
    case PF_HANDSHAKE: check_handshake(c, L, m, &g->t); break;
    case PF_SCORING: check_scoring(c, L, m, &g->t); break;
    case PF_RELAY: check_relay(c, L, m, &g->t); break;
    case PF_N: break;
  }
  return 0;
}

