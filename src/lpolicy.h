/* lpolicy: the only door from a policy's Lua into C.
 *
 * Provides the two globals a policy state gets besides the safe libraries:
 *   config              read-only copy of the node configuration (the
 *                       conf.normalized literal), with the seed's defaults
 *                       filled in where keys are missing;
 *   log(level, message) a rate-limited line in the node's log.
 * and the seed defaults of what policies read from config, for C.
 *
 * Must not: expose anything that reaches the network, the peer table, files,
 * or another Lua state. Adding a function here widens every policy's powers:
 * document it in policies/README.md.
 */
#ifndef BT2C_LPOLICY_H
#define BT2C_LPOLICY_H

#include <lua.h>

#include "conf.h"
#include "lsandbox.h"

/* What the policies (and the C defaults) take from the configuration. */
struct lpolicy_config {
  double weights[SCORE_NCATEGORIES];
  double trusted, neutral, banned;
  enum relay_mode relay_mode;
  double relay_threshold;
};

/* Seed key of a scoring category ("blockPropagation"), and a relay mode's
 * name ("validator_only"); lpolicy_relay_mode_parse returns -1 if unknown. */
const char *lpolicy_category_name(enum score_category c);
const char *lpolicy_relay_mode_name(enum relay_mode m);
int lpolicy_relay_mode_parse(const char *s);

/* The seed's values: weights 0.2/0.2/0.25/0.15/0.1/0.1, thresholds 75/0/-50,
 * relayMode "selective", relayThreshold 50. */
void lpolicy_config_defaults(struct lpolicy_config *c);

/* Setup for lsandbox_new (ud: a struct lpolicy_env): evaluates the config
 * literal (NULL means "{}") under `lim` with an empty environment, fills
 * missing keys with the seed defaults, installs it as the read-only global
 * `config`, installs `log`, and reports what it read in `cfg`. A literal that
 * is not a table constructor, or keys of the wrong type, raise an error
 * naming the key. */
struct lpolicy_env {
  const char *literal;
  struct lsandbox_limits lim;
  const char *policy; /* "relay", ...: labels log lines */
  struct lpolicy_config cfg;
};
int lpolicy_open(lua_State *L);

#endif
