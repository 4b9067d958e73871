/* conf: PLACEHOLDER (being written): minimal defaults so the rest links. */
#include "conf.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"

int conf_load(struct conf *c, const char *path, bool optional, struct conf_errors *errs) {
  (void)path; (void)optional; (void)errs;
  memset(c, 0, sizeof *c);
  c->port = 8765;
  c->host = strdup("0.0.0.0");
  c->dataDir = strdup("./data");
  c->policyDir = strdup("./policies");
  c->consoleSocket = strdup("./data/console.sock");
  c->networkId = strdup("bt2c-mainnet");
  c->logLevel = LV_INFO;
  c->consoleTimeout = 5000;
  c->policyLimits.instructions = 1000000;
  c->policyLimits.time = 50;
  c->policyLimits.memory = 16u << 20;
  c->policyLimits.failures = 5;
  c->normalized = strdup("{}");
  return 0;
}

void conf_free(struct conf *c) {
  free(c->host); free(c->dataDir); free(c->policyDir); free(c->consoleSocket);
  free(c->networkId); free(c->normalized);
  memset(c, 0, sizeof *c);
}

void conf_errors_free(struct conf_errors *errs) {
  for (size_t i = 0; i < errs->n; i++) free(errs->msg[i]);
  free(errs->msg);
  errs->msg = NULL;
  errs->n = 0;
}

void conf_push(lua_State *L, const struct conf *c) { (void)c; lua_newtable(L); }
const char *conf_relay_mode_name(enum relay_mode m) { (void)m; return "selective"; }
const char *conf_category_name(enum score_category cat) { (void)cat; return "?"; }
