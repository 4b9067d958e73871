/* policy_int: what policy.c (generations, host, typed hooks), policy_invoke.c
 * (calling one hook) and policy_check.c (checking a loaded file) share. Not
 * for use outside the policy family. */
#ifndef BT2C_POLICY_INT_H
#define BT2C_POLICY_INT_H

#include <stdbool.h>

#include <lua.h>

#include "log.h"
#include "lpolicy.h"
#include "lsandbox.h"
#include "policy.h"


enum pfile { PF_HANDSHAKE, PF_SCORING, PF_RELAY, PF_N };
extern const char *const policy_file_names[PF_N];

enum phook { PH_VALIDATE, PH_CATEGORIES, PH_TOTAL, PH_DELTA, PH_ON_THRESHOLD, PH_SELECT_MODE, PH_N };
struct policy_hook_def {
  enum pfile file;
  const char *name; /* key in the file's table */
  const char *full; /* "file.hook", the stats key */
};
extern const struct policy_hook_def policy_hook_defs[PH_N];

/* Tunable keys per file (policy_hook_defs are added from the table above). */
extern const char *const policy_tunable_keys[PF_N][5];

#define N_BEHAVIORS 11
extern const char *const policy_behavior_names[N_BEHAVIORS + 1];
/* The seed's PeerScoring.recordBehavior deltas. */
extern const double policy_behavior_seed[N_BEHAVIORS];

extern const char *const policy_threshold_names[4];

struct tunables {
  int min_protocol, max_protocol;
  double max_clock_skew_ms;
  struct policy_scoring_params scoring;
  double behaviors[N_BEHAVIORS];
  enum relay_mode mode;
  double threshold;
  int fanout; /* SELECTIVE: peers per message at most */
};

struct generation {
  struct lsandbox *sb[PF_N];
  char *path[PF_N];
  int ref[PH_N]; /* in the file's registry; LUA_NOREF when the hook is absent */
  int line[PH_N];
  struct tunables t;
};

struct hook_stats {
  unsigned long calls, errors, timeouts, oom, bad_returns, defaulted;
  double time_ms;
  int consecutive;
  bool disabled;
  struct log_limit rl;
  char last_error[300];
};

struct policy_host {
  struct policy_limits limits;
  char *config_literal;
  struct lpolicy_config cfg;
  struct generation *gen;
  unsigned long generation;
  struct hook_stats stats[PH_N];
  struct conf_errors last_errors;
};

/* ---- calling one hook (policy_invoke.c) ---------------------------------- */

enum outcome { OUT_OK, OUT_ERROR, OUT_TIMEOUT, OUT_OOM, OUT_BAD_RETURN };
extern const char *const pinvoke_outcome_names[];

struct invoke {
  enum phook hook;
  int ref;
  /* arguments */
  const struct policy_handshake *hs;
  const double *cats;
  const struct policy_score_metrics *metrics;
  const char *node_id;
  enum policy_level from, to;
  const char *behavior;
  double total;
  const char *msg_type;
  const struct policy_relay_situation *sit;
  /* results */
  bool accept;
  char reason[256];
  double number;
  enum relay_mode mode;
  double out_cats[SCORE_NCATEGORIES];
  struct policy_threshold_action action;
  char bad[300]; /* set when the return value was unusable */
};

/* A call's sandbox limits: the host's per-call limits times mult. */
struct lsandbox_limits pinvoke_limits(const struct policy_limits *l, int mult);
/* The first line of a Lua message, with Lua's "..." abbreviation of a long
 * chunk name replaced by the full path. */
void pinvoke_first_line(char *out, size_t cap, const char *msg, const char *path);
/* Calls iv->hook of g once under lim times mult, without counters or logs;
 * msg gets why when the outcome is not OUT_OK, "" when it is. */
enum outcome pinvoke_run(struct generation *g, struct invoke *iv,
                         const struct policy_limits *lim, int mult, double *elapsed, char *msg,
                         size_t cap);
/* Runs a hook for a caller: false means "use the C default". */
bool pinvoke_call(struct policy_host *h, struct invoke *iv);

struct check_ctx {
  enum pfile file;
  const char *path;
  const char *text;
  struct conf_errors *errs;
  struct generation *g;
  int nerr;
};

char *pcheck_strdup(const char *s);
void pcheck_errs_add(struct conf_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A short description of the value at idx for error messages. */
const char *pcheck_value_text(lua_State *L, int idx, char *buf, size_t cap);
/* " (did you mean 'x'?)" for a misspelt key, or a list of the known keys. */
void pcheck_suggest(char *out, size_t cap, const char *key, const char *const *known);
int pcheck_return_line(const char *text);
/* Protected: 1 the check_ctx, 2 what the file returned. Records hook
 * references and line numbers in the generation and checks the tunables. */
int pcheck_module(lua_State *L);

#endif
