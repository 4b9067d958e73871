/* node: see node.h. Start order: data directory, event loop, trusted Lua
 * state, policies, network, integration (chain, sync, consensus), metrics
 * endpoint, console. Stop order is the reverse. */
#include "node.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bt2c.h"
#include "console.h"
#include "lchain.h"
#include "lconsole.h"
#include "lnat.h"
#include "lnetwork.h"
#include "lrelay.h"
#include "lscoring.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "status.h"

/* mkdir -p with mode 0700 for what it creates. */
static int make_dirs(const char *path) {
  char *p = strdup(path);
  if (p == NULL) return -1;
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    if (mkdir(p, 0700) != 0 && errno != EEXIST) {
      free(p);
      return -1;
    }
    *s = '/';
  }
  int rc = (mkdir(p, 0700) != 0 && errno != EEXIST) ? -1 : 0;
  free(p);
  return rc;
}

static void policy_limits_of(const struct conf *c, struct policy_limits *lim) {
  lim->instructions = c->policyLimits.instructions;
  lim->time_ms = c->policyLimits.time;
  lim->memory = c->policyLimits.memory;
  lim->failures = c->policyLimits.failures;
}

static void log_errors(const char *event, const struct conf_errors *errs) {
  for (size_t i = 0; i < errs->n; i++) log_at(LV_ERROR, event, "err=%s", errs->msg[i]);
}

int node_start(struct node *n, struct conf *conf) {
  memset(n, 0, sizeof *n);
  n->conf = *conf;
  memset(conf, 0, sizeof *conf);
  n->started = log_monotonic();
  struct conf *c = &n->conf;

  if (make_dirs(c->dataDir) != 0) {
    log_at(LV_ERROR, "start_failed", "dataDir=%s err=%s", c->dataDir, strerror(errno));
    goto fail;
  }
  if (loop_init(&n->loop) != 0) goto fail;
  n->L = lconsole_open(n);
  if (n->L == NULL) goto fail;

  struct policy_limits lim;
  policy_limits_of(c, &lim);
  n->policy = policy_host_new(&lim, c->normalized);
  if (n->policy == NULL) {
    log_at(LV_ERROR, "start_failed", "err=%s", "cannot create the policy host");
    goto fail;
  }
  struct conf_errors errs = {0};
  if (policy_reload(n->policy, c->policyDir, &errs) != 0) {
    log_errors("policy_error", &errs);
    log_at(LV_ERROR, "start_failed", "policyDir=%s err=%s", c->policyDir,
           "policies do not load; fix them (bt2cd --check-policies) and start again");
    conf_errors_free(&errs);
    goto fail;
  }
  if (netmgr_start(&n->net, c, &n->loop, n->policy) != 0) goto fail;
  n->net_started = true;
  n->integ = bt2c_start(&n->net, c, &n->loop); /* after netmgr_start: it sets netmgr's hooks */
  if (n->integ == NULL) goto fail;
  struct nat_timing timing;
  nat_timing_default(&timing);
  timing.rto_ms = c->natTraversal.stunRto;
  timing.rc = c->natTraversal.stunRetransmissions;
  timing.refresh_ms = c->natTraversal.stunRefreshInterval;
  nat_start(&n->nat, &n->loop, c, n->net.tr.listen_port, &timing); /* -1: logged, TCP works */
  lnetwork_open(n->L, n);
  lscoring_open(n->L, n);
  lrelay_open(n->L, n);
  lnat_open(n->L, n);
  lchain_open(n->L, n);
  if (c->metrics.port > 0) {
    n->metrics = status_serve(n); /* logs metrics_listen_failed */
    if (n->metrics == NULL) goto fail;
  }
  n->console = console_start(&n->loop, n->L, c->consoleSocket, c->consoleTimeout);
  if (n->console == NULL) goto fail;

  log_at(LV_INFO, "node_started", "version=%s nodeId=%s config=%s dataDir=%s policies=%lu",
         BT2C_VERSION, n->net.me.id_hex, c->path ? c->path : "(defaults)", c->dataDir,
         policy_generation(n->policy));
  return 0;
fail:
  node_stop(n);
  return -1;
}

/* Lets the loop send the close frames, for at most a second. */
static void drain_connections(struct node *n) {
  netmgr_close_all(&n->net, 1001, "node shutting down");
  double deadline = log_monotonic() + 1.0;
  while (!netmgr_idle(&n->net) && log_monotonic() < deadline)
    if (lws_service(n->loop.ctx, 0) < 0) break;
}

void node_stop(struct node *n) {
  n->stopping = true;
  metrics_stop(n->metrics);
  n->metrics = NULL;
  console_stop(n->console);
  n->console = NULL;
  bt2c_stop(n->integ); /* before the network: no message reaches it after this */
  n->integ = NULL;
  nat_stop(&n->nat);
  if (n->net_started) {
    drain_connections(n);
    netmgr_stop(&n->net);
    n->net_started = false;
  }
  policy_host_free(n->policy);
  n->policy = NULL;
  lconsole_close(n->L);
  n->L = NULL;
  loop_free(&n->loop);
  conf_free(&n->conf);
}

int node_reload_policies(struct node *n, struct conf_errors *errs) {
  unsigned long before = policy_generation(n->policy);
  if (policy_reload(n->policy, n->conf.policyDir, errs) != 0) {
    log_errors("policy_error", errs);
    log_at(LV_WARN, "policy_reload_failed", "generation=%lu errors=%zu kept=%s", before, errs->n,
           "running generation");
    return -1;
  }
  log_at(LV_INFO, "policy_reloaded", "generation=%lu", policy_generation(n->policy));
  if (n->net_started) netmgr_policies_reloaded(&n->net);
  return 0;
}
