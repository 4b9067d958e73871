/* policy: see policy.h and policies/README.md.
 *
 * A generation holds one lsandbox per file, registry references to the policy_hook_defs
 * each file defined, and the checked tunables. Reload builds a complete new
 * generation (load, run the top-level chunk under 10x the per-call limits,
 * check every key, call every hook once) and swaps it in only when nothing
 * was wrong. Calling one hook under the budget (the trampoline, the checks of
 * what came back, the counters and the switch-off) is policy_invoke.c.
 */
#include "policy.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "log.h"
#include "lpolicy.h"
#include "lsandbox.h"
#include "policy_int.h"

#define LOAD_MULTIPLIER 10       /* the top-level chunk may use 10x a call's budget */
#define POLICY_FILE_MAX (1 << 20)
#define DEFAULT_BAN_SECONDS 43200.0 /* 12 h, Lighthouse's order of magnitude */


/* ---- small helpers ------------------------------------------------------- */

static void errs_clear(struct conf_errors *errs) {
  for (size_t i = 0; i < errs->n; i++) free(errs->msg[i]);
  free(errs->msg);
  errs->msg = NULL;
  errs->n = 0;
}

/* "path:line: msg" from a Lua message that may or may not carry a position. */
static void located(char *out, size_t cap, const char *msg, const char *path) {
  char line[900];
  pinvoke_first_line(line, sizeof line, msg, path);
  size_t plen = strlen(path);
  if (strncmp(line, path, plen) == 0 && line[plen] == ':')
    snprintf(out, cap, "%s", line);
  else
    snprintf(out, cap, "%s: %s", path, line);
}

/* ---- generations ----------------------------------------------------------- */

static void gen_free(struct generation *g) {
  if (g == NULL) return;
  for (int f = 0; f < PF_N; f++) {
    lsandbox_free(g->sb[f]);
    free(g->path[f]);
  }
  free(g);
}

static void tunables_defaults(struct tunables *t, const struct lpolicy_config *cfg) {
  memset(t, 0, sizeof *t);
  t->min_protocol = 1;
  t->max_protocol = 1;
  t->max_clock_skew_ms = 30000;
  memcpy(t->scoring.weights, cfg->weights, sizeof t->scoring.weights);
  t->scoring.trusted = cfg->trusted;
  t->scoring.neutral = cfg->neutral;
  t->scoring.banned = cfg->banned;
  t->scoring.ban_seconds = DEFAULT_BAN_SECONDS;
  memcpy(t->behaviors, policy_behavior_seed, sizeof t->behaviors);
  t->mode = cfg->relay_mode;
  t->threshold = cfg->relay_threshold;
  t->fanout = 3;
}

static char *read_file(const char *path, size_t *len, char *err, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    snprintf(err, cap, "cannot read the policy file: %s", strerror(errno));
    return NULL;
  }
  char *buf = malloc(POLICY_FILE_MAX + 1);
  size_t n = buf ? fread(buf, 1, POLICY_FILE_MAX + 1, f) : 0;
  bool bad = buf == NULL || ferror(f);
  fclose(f);
  if (bad || n > POLICY_FILE_MAX) {
    snprintf(err, cap, bad ? "cannot read the policy file" : "the policy file exceeds %d bytes",
             POLICY_FILE_MAX);
    free(buf);
    return NULL;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

/* Loads, runs and checks one file into g; returns the number of problems. */
static int load_file(struct generation *g, enum pfile f, const struct policy_limits *lim,
                     const char *literal, struct conf_errors *errs) {
  const char *path = g->path[f];
  char err[1024];
  size_t len = 0;
  char *text = read_file(path, &len, err, sizeof err);
  if (text == NULL) {
    pcheck_errs_add(errs, "%s: %s (a policy directory needs handshake.lua, scoring.lua and relay.lua)",
             path, err);
    return 1;
  }
  if (memchr(text, '\0', len) != NULL) {
    pcheck_errs_add(errs, "%s: the file contains a NUL byte (policies are text)", path);
    free(text);
    return 1;
  }
  struct lpolicy_env env = {.literal = literal, .lim = pinvoke_limits(lim, 1), .policy = policy_file_names[f]};
  struct lsandbox *sb = lsandbox_new(policy_file_names[f], lim->memory, lpolicy_open, &env, err,
                                     sizeof err);
  if (sb == NULL) {
    pcheck_errs_add(errs, "%s: cannot create the policy's sandbox: %s", path, err);
    free(text);
    return 1;
  }
  g->sb[f] = sb;
  lua_State *L = lsandbox_state(sb);
  char chunkname[1100];
  snprintf(chunkname, sizeof chunkname, "@%s", path);
  char msg[1024];
  enum lsandbox_status st = lsandbox_load(sb, text, len, chunkname);
  if (st != LSANDBOX_OK) {
    located(msg, sizeof msg, lsandbox_message(sb), path);
    pcheck_errs_add(errs, "%s", msg);
    free(text);
    return 1;
  }
  struct lsandbox_limits ll = pinvoke_limits(lim, LOAD_MULTIPLIER);
  st = lsandbox_pcall(sb, 0, 1, &ll, NULL);
  if (st != LSANDBOX_OK) {
    located(msg, sizeof msg, lsandbox_message(sb), path);
    pcheck_errs_add(errs, "%s%s", msg,
             st == LSANDBOX_ERROR ? "" : " (while running the file's top level, which gets "
                                         "10x the per-call limits)");
    free(text);
    return 1;
  }
  struct check_ctx c = {.file = f, .path = path, .text = text, .errs = errs, .g = g};
  lua_pushcfunction(L, pcheck_module);
  lua_insert(L, -2);
  lua_pushlightuserdata(L, &c);
  lua_insert(L, -2);
  st = lsandbox_pcall(sb, 2, 0, &ll, NULL);
  if (st != LSANDBOX_OK) {
    pcheck_errs_add(errs, "%s: checking the returned table failed: %s", path, lsandbox_message(sb));
    c.nerr++;
  }
  free(text);
  return c.nerr;
}

/* Calls every defined hook of file f once with representative arguments. */
static int self_test(struct generation *g, enum pfile f, const struct policy_limits *lim,
                     struct conf_errors *errs) {
  static const double mid[SCORE_NCATEGORIES] = {5, 5, 5, 5, 5, 5};
  static const struct policy_score_metrics sample_metrics = {
      .rtt_ms = 42, .uptime = 0.97, .connected_s = 3600, .blocks_first = 3,
      .blocks_duplicate = 5, .tx_useful = 20, .tx_duplicate = 40, .behavior = 4};
  const struct policy_handshake hs = {
      .node_id = "0000000000000000000000000000000000000000000000000000000000000000",
      .address = "127.0.0.1:8765",
      .inbound = true,
      .protocol_version = g->t.min_protocol,
      .network_id = "bt2c-selftest",
      .local_network_id = "bt2c-selftest",
      .clock_skew_ms = 0,
      .metadata_json = "{\"version\":\"1.0.0\",\"isValidator\":false}"};
  const struct policy_relay_situation sit = {.peers = 8, .validators = 2, .trusted = 3};
  static const char *const sample[PH_N] = {
      "({node_id=..., network_id=local_network_id, ...})",
      "({rtt_ms=42, uptime=0.97, blocks={...}, transactions={...}, behavior=4, ...})",
      "({latency=5, uptime=5, ...})", "(\"GOOD_BLOCK\", 0)",
      "({node_id=..., total=-60}, \"below_neutral\", \"banned\")",
      "(\"block\", {peers=8, validators=2, trusted=3})"};
  int problems = 0;
  for (int h = 0; h < PH_N; h++) {
    if (policy_hook_defs[h].file != f || g->ref[h] == LUA_NOREF) continue;
    struct invoke iv = {.hook = (enum phook)h, .hs = &hs, .cats = mid,
                        .metrics = &sample_metrics, .node_id = hs.node_id,
                        .from = PL_BELOW_NEUTRAL, .to = PL_BANNED, .behavior = "GOOD_BLOCK",
                        .total = 0, .msg_type = "block", .sit = &sit};
    if (h == PH_ON_THRESHOLD) iv.total = -60;
    double ms;
    char msg[300];
    /* At load, like the top level: a busy machine must not fail a start. */
    enum outcome o = pinvoke_run(g, &iv, lim, LOAD_MULTIPLIER, &ms, msg, sizeof msg);
    if (o != OUT_OK) {
      pcheck_errs_add(errs, "%s:%d: self-test %s%s failed (%s): %s", g->path[f], g->line[h],
               policy_hook_defs[h].full, sample[h], pinvoke_outcome_names[o], msg);
      problems++;
    }
  }
  return problems;
}

static struct generation *build(const struct policy_limits *lim, const char *literal,
                                const struct lpolicy_config *cfg, const char *dir,
                                struct conf_errors *errs) {
  struct generation *g = calloc(1, sizeof *g);
  if (g == NULL) {
    pcheck_errs_add(errs, "%s: out of memory", dir);
    return NULL;
  }
  for (int h = 0; h < PH_N; h++) g->ref[h] = LUA_NOREF;
  tunables_defaults(&g->t, cfg);
  int problems = 0;
  for (int f = 0; f < PF_N; f++) {
    size_t n = strlen(dir) + strlen(policy_file_names[f]) + 8;
    g->path[f] = malloc(n);
    if (g->path[f] == NULL) {
      gen_free(g);
      return NULL;
    }
    snprintf(g->path[f], n, "%s/%s.lua", dir, policy_file_names[f]);
    int p = load_file(g, f, lim, literal, errs);
    if (p == 0) p = self_test(g, f, lim, errs);
    problems += p;
  }
  if (problems) {
    gen_free(g);
    return NULL;
  }
  return g;
}

/* ---- host ------------------------------------------------------------------ */

static void normalise_limits(struct policy_limits *l) {
  if (l->instructions <= 0) l->instructions = 1000000;
  if (l->time_ms <= 0) l->time_ms = 50;
  if (l->memory == 0) l->memory = 16u << 20;
  if (l->failures < 0) l->failures = 0;
}

/* Evaluates the config literal once, for the C defaults. */
static int read_config(const struct policy_limits *lim, const char *literal,
                       struct lpolicy_config *cfg, char *err, size_t cap) {
  struct lpolicy_env env = {.literal = literal, .lim = pinvoke_limits(lim, 1), .policy = "config"};
  struct lsandbox *sb = lsandbox_new("config", lim->memory, lpolicy_open, &env, err, cap);
  if (sb == NULL) return -1;
  *cfg = env.cfg;
  lsandbox_free(sb);
  return 0;
}

struct policy_host *policy_host_new(const struct policy_limits *limits,
                                    const char *config_literal) {
  struct policy_host *h = calloc(1, sizeof *h);
  if (h == NULL) return NULL;
  h->limits = *limits;
  normalise_limits(&h->limits);
  char err[512];
  if (read_config(&h->limits, config_literal, &h->cfg, err, sizeof err) != 0) {
    log_at(LV_ERROR, "policy_config", "msg=%s", err);
    free(h);
    return NULL;
  }
  if (config_literal && (h->config_literal = pcheck_strdup(config_literal)) == NULL) {
    free(h);
    return NULL;
  }
  return h;
}

void policy_host_free(struct policy_host *h) {
  if (h == NULL) return;
  gen_free(h->gen);
  errs_clear(&h->last_errors);
  free(h->config_literal);
  free(h);
}

int policy_reload(struct policy_host *h, const char *dir, struct conf_errors *errs) {
  struct conf_errors mine = {0};
  struct generation *g = build(&h->limits, h->config_literal, &h->cfg, dir, &mine);
  errs_clear(&h->last_errors);
  for (size_t i = 0; i < mine.n; i++) {
    pcheck_errs_add(&h->last_errors, "%s", mine.msg[i]);
    if (errs) pcheck_errs_add(errs, "%s", mine.msg[i]);
  }
  errs_clear(&mine);
  /* the caller logs the outcome and the errors (node_reload_policies) */
  if (g == NULL) {
    log_at(LV_DEBUG, "policy_generation_refused", "dir=%s kept=%lu", dir, h->generation);
    return -1;
  }
  gen_free(h->gen);
  h->gen = g;
  h->generation++;
  memset(h->stats, 0, sizeof h->stats);
  log_at(LV_DEBUG, "policy_generation_swapped", "dir=%s generation=%lu", dir, h->generation);
  return 0;
}

unsigned long policy_generation(const struct policy_host *h) { return h->generation; }

int policy_check_dir(const struct policy_limits *limits, const char *config_literal,
                     const char *dir, struct conf_errors *errs) {
  struct policy_limits lim = *limits;
  normalise_limits(&lim);
  struct lpolicy_config cfg;
  char err[512];
  if (read_config(&lim, config_literal, &cfg, err, sizeof err) != 0) {
    pcheck_errs_add(errs, "%s", err);
    return -1;
  }
  struct generation *g = build(&lim, config_literal, &cfg, dir, errs);
  if (g == NULL) return -1;
  gen_free(g);
  return 0;
}

void policy_push_stats(lua_State *L, const struct policy_host *h) {
  lua_newtable(L);
  const struct generation *g = h->gen;
  if (g == NULL) return;
  for (int i = 0; i < PH_N; i++) {
    const struct hook_stats *s = &h->stats[i];
    lua_createtable(L, 0, 14);
    lua_pushboolean(L, g->ref[i] != LUA_NOREF);
    lua_setfield(L, -2, "defined");
    lua_pushinteger(L, (lua_Integer)s->calls);
    lua_setfield(L, -2, "calls");
    lua_pushinteger(L, (lua_Integer)s->errors);
    lua_setfield(L, -2, "errors");
    lua_pushinteger(L, (lua_Integer)s->timeouts);
    lua_setfield(L, -2, "timeouts");
    lua_pushinteger(L, (lua_Integer)s->oom);
    lua_setfield(L, -2, "oom");
    lua_pushinteger(L, (lua_Integer)s->bad_returns);
    lua_setfield(L, -2, "bad_returns");
    lua_pushinteger(L, (lua_Integer)s->defaulted);
    lua_setfield(L, -2, "defaulted");
    lua_pushnumber(L, s->time_ms);
    lua_setfield(L, -2, "time_ms");
    lua_pushboolean(L, s->disabled);
    lua_setfield(L, -2, "disabled");
    lua_pushinteger(L, s->consecutive);
    lua_setfield(L, -2, "consecutive_failures");
    lua_pushinteger(L, (lua_Integer)lsandbox_memory(g->sb[policy_hook_defs[i].file]));
    lua_setfield(L, -2, "memory");
    if (g->ref[i] != LUA_NOREF) {
      lua_pushfstring(L, "%s:%d", g->path[policy_hook_defs[i].file], g->line[i]);
      lua_setfield(L, -2, "where");
    }
    if (s->last_error[0]) {
      lua_pushstring(L, s->last_error);
      lua_setfield(L, -2, "last_error");
    }
    lua_setfield(L, -2, policy_hook_defs[i].full);
  }
}

void policy_stats_each(const struct policy_host *h,
                       void (*fn)(const char *hook, const struct policy_hook_counters *c,
                                  void *ud),
                       void *ud) {
  const struct generation *g = h->gen;
  if (g == NULL) return;
  for (int i = 0; i < PH_N; i++) {
    const struct hook_stats *s = &h->stats[i];
    struct policy_hook_counters c = {
        .calls = s->calls, .errors = s->errors, .timeouts = s->timeouts, .oom = s->oom,
        .bad_returns = s->bad_returns, .defaulted = s->defaulted, .time_ms = s->time_ms,
        .defined = g->ref[i] != LUA_NOREF, .disabled = s->disabled,
        .memory = lsandbox_memory(g->sb[policy_hook_defs[i].file])};
    fn(policy_hook_defs[i].full, &c, ud);
  }
}

void policy_push_errors(lua_State *L, const struct policy_host *h) {
  lua_createtable(L, (int)h->last_errors.n, 0);
  for (size_t i = 0; i < h->last_errors.n; i++) {
    lua_pushstring(L, h->last_errors.msg[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

/* ---- typed policy_hook_defs --------------------------------------------------------- */

static const struct tunables *active(const struct policy_host *h, struct tunables *tmp) {
  if (h->gen) return &h->gen->t;
  tunables_defaults(tmp, &h->cfg);
  return tmp;
}

bool policy_handshake_validate(struct policy_host *h, const struct policy_handshake *in,
                               char *reason, size_t reason_cap) {
  struct invoke iv = {.hook = PH_VALIDATE, .hs = in};
  bool accept;
  const char *why;
  if (pinvoke_call(h, &iv)) {
    accept = iv.accept;
    why = iv.reason;
  } else {
    accept = in->network_id && in->local_network_id &&
             strcmp(in->network_id, in->local_network_id) == 0;
    why = "network id mismatch";
  }
  if (reason && reason_cap) snprintf(reason, reason_cap, "%s", accept ? "" : why);
  return accept;
}

static double step(double v, const double *limits, const double *scores, int n) {
  for (int i = 0; i < n; i++)
    if (v < limits[i]) return scores[i];
  return scores[n];
}

/* Blocks and transactions alike: validity (0..7) plus how often this peer
 * brought something new (0..3); 0 when it has sent nothing yet. */
static double relay_quality(double useful, double duplicate, double invalid) {
  double total = useful + duplicate + invalid;
  if (total <= 0) return 0;
  double valid = (useful + duplicate) / total, fresh = useful / total;
  return (valid > 0.99 ? 7 : valid > 0.95 ? 5 : valid > 0.9 ? 3 : valid > 0.8 ? 1 : 0) +
         (fresh > 0.5 ? 3 : fresh > 0.25 ? 2 : fresh > 0.1 ? 1 : 0);
}

/* The seed's mappings (PeerScoring.update*): latency by the smoothed round
 * trip, uptime by the fraction of time connected, blocks and transactions by
 * validity (0..7) plus usefulness (0..3). */
static void default_categories(const struct policy_score_metrics *m, double c[SCORE_NCATEGORIES]) {
  static const double rtt_lim[] = {50, 100, 200, 500}, rtt_score[] = {10, 8, 5, 2, 0};
  c[SCORE_LATENCY] = m->rtt_ms < 0 ? 0 : step(m->rtt_ms, rtt_lim, rtt_score, 4);
  double up = m->uptime * 100;
  c[SCORE_UPTIME] = up > 99 ? 10 : up > 95 ? 8 : up > 90 ? 6 : up > 80 ? 4 : up > 70 ? 2 : 0;
  c[SCORE_BLOCK_PROPAGATION] = relay_quality(m->blocks_first, m->blocks_duplicate, m->blocks_invalid);
  c[SCORE_TRANSACTION_RELAY] = relay_quality(m->tx_useful, m->tx_duplicate, m->tx_invalid);
  c[SCORE_VALIDATOR_STATUS] = m->validator ? 10 : 0;
  c[SCORE_BEHAVIOR] = m->behavior > 10 ? 10 : m->behavior < -100 ? -100 : m->behavior;
}

void policy_scoring_categories(struct policy_host *h, const struct policy_score_metrics *m,
                               double cat[SCORE_NCATEGORIES]) {
  struct invoke iv = {.hook = PH_CATEGORIES, .metrics = m};
  if (pinvoke_call(h, &iv)) {
    memcpy(cat, iv.out_cats, sizeof iv.out_cats);
    return;
  }
  default_categories(m, cat);
}

double policy_scoring_total(struct policy_host *h, const double cat[SCORE_NCATEGORIES]) {
  struct invoke iv = {.hook = PH_TOTAL, .cats = cat};
  if (pinvoke_call(h, &iv)) return iv.number;
  struct tunables tmp;
  const struct tunables *t = active(h, &tmp);
  double sum = 0;
  for (int i = 0; i < SCORE_NCATEGORIES; i++) sum += t->scoring.weights[i] * cat[i];
  sum *= 10; /* categories are 0..10, totals -100..100 like the thresholds */
  return sum < -100 ? -100 : sum > 100 ? 100 : sum;
}

const char *policy_level_name(enum policy_level l) {
  static const char *const names[] = {"banned", "below_neutral", "neutral", "trusted"};
  return (unsigned)l < 4 ? names[l] : "?";
}

void policy_scoring_on_threshold(struct policy_host *h, const char *node_id, double total,
                                 enum policy_level from, enum policy_level to,
                                 struct policy_threshold_action *out) {
  struct invoke iv = {.hook = PH_ON_THRESHOLD, .node_id = node_id, .total = total,
                      .from = from, .to = to};
  if (pinvoke_call(h, &iv)) {
    *out = iv.action;
    return;
  }
  struct tunables tmp;
  const struct tunables *t = active(h, &tmp);
  out->ban_seconds = to == PL_BANNED ? t->scoring.ban_seconds : 0;
  out->disconnect = to == PL_BANNED;
}

double policy_scoring_behavior_delta(struct policy_host *h, const char *behavior,
                                     double current_total) {
  struct invoke iv = {.hook = PH_DELTA, .behavior = behavior, .total = current_total};
  if (pinvoke_call(h, &iv)) return iv.number;
  struct tunables tmp;
  const struct tunables *t = active(h, &tmp);
  for (int i = 0; i < N_BEHAVIORS; i++)
    if (strcmp(behavior, policy_behavior_names[i]) == 0) return t->behaviors[i];
  return 0;
}

void policy_scoring_params(const struct policy_host *h, struct policy_scoring_params *out) {
  struct tunables tmp;
  *out = active(h, &tmp)->scoring;
}

enum relay_mode policy_relay_select_mode(struct policy_host *h, const char *msg_type,
                                         const struct policy_relay_situation *s) {
  struct invoke iv = {.hook = PH_SELECT_MODE, .msg_type = msg_type, .sit = s};
  if (pinvoke_call(h, &iv)) return iv.mode;
  struct tunables tmp;
  return active(h, &tmp)->mode;
}

int policy_relay_fanout(const struct policy_host *h) {
  struct tunables tmp;
  return active(h, &tmp)->fanout;
}

double policy_relay_threshold(const struct policy_host *h) {
  struct tunables tmp;
  return active(h, &tmp)->threshold;
}

enum relay_mode policy_relay_mode(const struct policy_host *h) {
  struct tunables tmp;
  return active(h, &tmp)->mode;
}

void policy_handshake_params(const struct policy_host *h, struct policy_handshake_params *out) {
  struct tunables tmp;
  const struct tunables *t = active(h, &tmp);
  out->min_protocol = t->min_protocol;
  out->max_protocol = t->max_protocol;
  out->max_clock_skew_ms = t->max_clock_skew_ms;
}

/* ---- diagnostics ------------------------------------------------------------ */

double policy_eval(struct policy_host *h, const char *file, const char *code, lua_State *to) {
  int f = 0;
  while (f < PF_N && strcmp(file, policy_file_names[f]) != 0) f++;
  if (h->gen == NULL || f == PF_N) {
    lua_pushliteral(to, "none");
    lua_pushstring(to, h->gen ? "unknown policy file (handshake, scoring or relay)"
                              : "no policy generation is loaded");
    return 0;
  }
  struct lsandbox *sb = h->gen->sb[f];
  lua_State *L = lsandbox_state(sb);
  int top = lua_gettop(L);
  enum lsandbox_status st = lsandbox_load(sb, code, strlen(code), "=eval");
  double ms = 0;
  if (st == LSANDBOX_OK) {
    struct lsandbox_limits sl = pinvoke_limits(&h->limits, 1);
    st = lsandbox_pcall(sb, 0, LUA_MULTRET, &sl, &ms);
  }
  lua_pushstring(to, lsandbox_status_name(st));
  if (st == LSANDBOX_OK) {
    lsandbox_copy_out(L, top + 1, lua_gettop(L) - top, to);
  } else {
    lua_pushstring(to, lsandbox_message(sb));
  }
  lua_settop(L, top);
  return ms;
}
