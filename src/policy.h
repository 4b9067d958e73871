/* policy: the only door from C into the operator's Lua policies.
 *
 * One sandboxed lua_State per policy file (policies/handshake.lua,
 * scoring.lua, relay.lua), grouped in a generation. A reload builds a whole
 * new generation and swaps it in only if every file loads and passes its
 * checks. Each hook call runs under the limits below; its result is checked,
 * and anything wrong (error, timeout, out of memory, bad return) yields the
 * documented C default and is counted. See policies/README.md.
 *
 * Must not: call into the transport or the peer table; hooks are called on
 * events, never per message, and their verdicts are cached by the caller.
 */
#ifndef BT2C_POLICY_H
#define BT2C_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include <lua.h>

#include "conf.h"

struct policy_limits {
  long instructions; /* per hook call */
  int time_ms;       /* wall clock per hook call */
  size_t memory;     /* bytes per policy state */
  int failures;      /* consecutive failures before a hook is switched off */
};

struct policy_host;

/* `config_literal` is conf.normalized (a Lua table constructor) or NULL; the
 * policies see it as the read-only global `config`. No policy is loaded yet:
 * until the first successful policy_reload() every hook gives its default.
 * Limits <= 0 take the built-in defaults (1e6 instructions, 50 ms, 16 MiB).
 * Returns NULL when out of memory or when the literal does not evaluate to a
 * table with the expected types (logged with the culprit key). */
struct policy_host *policy_host_new(const struct policy_limits *limits,
                                    const char *config_literal);
void policy_host_free(struct policy_host *h);

/* Builds a new generation from dir and swaps it in if all of it is good.
 * Returns 0 on success, or -1 with every problem as "file:line: message" in
 * errs (appended; errs may be NULL), leaving the running generation in place.
 * It does not log the outcome: the caller does. A swap resets the per-hook
 * counters and re-enables switched-off hooks. */
int policy_reload(struct policy_host *h, const char *dir, struct conf_errors *errs);

/* Number of successful swaps so far (0 before the first load). */
unsigned long policy_generation(const struct policy_host *h);

/* The same checks as policy_reload, offline (bt2cd --check-policies). */
int policy_check_dir(const struct policy_limits *limits, const char *config_literal,
                     const char *dir, struct conf_errors *errs);

/* [-0, +1, m] Pushes the per-hook counters, keyed "file.hook"
 * (e.g. "relay.select_mode"): calls, errors, timeouts, oom, bad_returns,
 * defaulted, time_ms, disabled; also defined (the policy has the hook),
 * consecutive_failures, memory (bytes of the file's state), where
 * ("file:line" of the hook) and last_error. Empty before the first load. */
void policy_push_stats(lua_State *L, const struct policy_host *h);

/* The per-hook counters of policy_push_stats for C readers (metrics), with
 * no Lua state involved. */
struct policy_hook_counters {
  unsigned long calls, errors, timeouts, oom, bad_returns, defaulted;
  double time_ms;
  bool defined;  /* the policy has the hook */
  bool disabled; /* switched off after too many consecutive failures */
  size_t memory; /* bytes of the state of the hook's file */
};
/* Calls fn once per hook, keyed "file.hook" as in policy_push_stats, in a
 * fixed order; not at all before the first load. */
void policy_stats_each(const struct policy_host *h,
                       void (*fn)(const char *hook, const struct policy_hook_counters *c,
                                  void *ud),
                       void *ud);

/* [-0, +1, m] Pushes the problems of the last reload attempt as an array of
 * "file:line: message" strings (empty after a successful reload). */
void policy_push_errors(lua_State *L, const struct policy_host *h);

/* For tests and diagnostics: runs the text chunk `code` inside the active
 * generation's state of `file` ("handshake", "scoring", "relay") under the
 * per-call limits, exactly as a hook would run. [-0, +2, m] on L: pushes the
 * status ("ok", "error", "timeout", "oom"; "none" without a generation) and
 * either an array of the results (copied, see lsandbox_copy_out) or the
 * message. Returns the elapsed milliseconds. */
double policy_eval(struct policy_host *h, const char *file, const char *code, lua_State *L);

/* ---- hooks ------------------------------------------------------------- */

/* handshake.validate: decides on a peer whose cryptography C already checked. */
struct policy_handshake {
  const char *node_id;          /* the peer's id */
  const char *address;          /* "ip:port" */
  bool inbound;
  int protocol_version;
  const char *network_id;       /* the peer's */
  const char *local_network_id;
  double clock_skew_ms;         /* peer's clock minus ours */
  const char *metadata_json;    /* the peer's nodeMetadata as JSON, or NULL */
};
/* Returns true to accept. On refusal, reason gets the policy's text.
 * Default (no policy / failure): accept iff the network ids are equal. */
bool policy_handshake_validate(struct policy_host *h, const struct policy_handshake *in,
                               char *reason, size_t reason_cap);

/* What C measured about one peer, from its traffic (policies/README.md). */
struct policy_score_metrics {
  double rtt_ms;      /* smoothed ping round trip; < 0 while not measured */
  double uptime;      /* fraction of the observed time it was connected, 0..1 */
  double connected_s; /* seconds connected, in all */
  double disconnects, reconnects; /* decaying counts */
  double blocks_first, blocks_duplicate, blocks_invalid; /* decaying counts */
  double tx_useful, tx_duplicate, tx_invalid;             /* decaying counts */
  bool validator; /* authenticated member of the validator set */
  double behavior; /* behaviour points: the sum of deltas, decaying, at most 10 */
};

/* scoring.categories: maps metrics to the six category scores.
 * Default: the seed's mappings (each 0..10; behavior = the points). */
void policy_scoring_categories(struct policy_host *h, const struct policy_score_metrics *m,
                               double cat[SCORE_NCATEGORIES]);

/* scoring.total: combines category scores into a total in -100..100.
 * Default: 10 x the weighted sum with the generation's weights, clamped
 * (categories are 0..10, thresholds and totals -100..100). */
double policy_scoring_total(struct policy_host *h, const double cat[SCORE_NCATEGORIES]);

/* Score levels, from the thresholds: banned (total <= banned), below neutral
 * (< neutral), neutral, trusted (>= trusted). */
enum policy_level { PL_BANNED, PL_BELOW_NEUTRAL, PL_NEUTRAL, PL_TRUSTED };
const char *policy_level_name(enum policy_level l);

/* scoring.on_threshold: what to do when a peer's level changes.
 * Default: entering "banned" bans for ban_seconds and disconnects. */
struct policy_threshold_action {
  double ban_seconds; /* 0: no ban */
  bool disconnect;
};
void policy_scoring_on_threshold(struct policy_host *h, const char *node_id, double total,
                                 enum policy_level from, enum policy_level to,
                                 struct policy_threshold_action *out);

/* scoring.behavior_delta: score change for one PeerBehavior event
 * ("GOOD_BLOCK", ...). Default: the generation's behaviors table. */
double policy_scoring_behavior_delta(struct policy_host *h, const char *behavior,
                                     double current_total);

/* Tunables of the active generation (checked at load; defaults from config). */
struct policy_scoring_params {
  double weights[SCORE_NCATEGORIES];
  double trusted, neutral, banned;
  double ban_seconds; /* how long a ban lasts */
};
void policy_scoring_params(const struct policy_host *h, struct policy_scoring_params *out);

/* relay.select_mode: the relay mode for a message type ("block", ...).
 * Default: messageRelay.relayMode. */
struct policy_relay_situation {
  int peers;            /* connected peers */
  int validators;       /* of which authenticated validators */
  int trusted;          /* of which at or above the trusted threshold */
};
enum relay_mode policy_relay_select_mode(struct policy_host *h, const char *msg_type,
                                         const struct policy_relay_situation *s);
double policy_relay_threshold(const struct policy_host *h);
/* SELECTIVE sends a message to at most this many peers (relay.lua `fanout`). */
int policy_relay_fanout(const struct policy_host *h);
/* The relay policy's `mode` tunable (messageRelay.relayMode by default). */
enum relay_mode policy_relay_mode(const struct policy_host *h);

/* The handshake policy's tunables (1, 1, 30000 by default); C reports them,
 * the policy's validate hook applies them. */
struct policy_handshake_params {
  int min_protocol, max_protocol;
  double max_clock_skew_ms;
};
void policy_handshake_params(const struct policy_host *h, struct policy_handshake_params *out);

#endif
