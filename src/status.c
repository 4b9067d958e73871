/* status: see status.h. Every family below is listed in docs/METRICS.md. */
#include "status.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>
#include <lua.h>

#include "console.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "netmgr.h"
#include "node.h"
#include "peerstore.h"
#include "policy.h"

/* ---- /status: network.get_network_status() as JSON ---------------------- */

struct jw {
  struct buf *b;
  bool first[8];
  int depth;
};

static void jw_key(struct jw *w, const char *k) {
  if (!w->first[w->depth]) buf_append(w->b, ",", 1);
  w->first[w->depth] = false;
  json_write_string(w->b, k, strlen(k));
  buf_append(w->b, ":", 1);
}

static void jw_open(struct jw *w, const char *k) {
  if (k) jw_key(w, k);
  buf_append(w->b, "{", 1);
  w->first[++w->depth] = true;
}

static void jw_close(struct jw *w) {
  buf_append(w->b, "}", 1);
  w->depth--;
}

static void jw_int(struct jw *w, const char *k, long long v) {
  jw_key(w, k);
  buf_appendf(w->b, "%lld", v);
}

static void jw_str(struct jw *w, const char *k, const char *v) {
  jw_key(w, k);
  json_write_string(w->b, v, strlen(v));
}

/* As lnetwork's push_by_type: only the types seen, by name. */
static void jw_by_type(struct jw *w, const char *k, const uint64_t *counts) {
  jw_open(w, k);
  for (int t = 1; t < MSG_TYPE_COUNT; t++)
    if (counts[t]) jw_int(w, env_type_name(t), (long long)counts[t]);
  jw_close(w);
}

void status_json(struct buf *out, void *ud) {
  struct node *n = ud;
  const struct netmgr *nm = &n->net;
  const struct netmgr_stats *s = &nm->stats;
  struct jw w = {.b = out};
  w.first[0] = true;
  jw_open(&w, NULL);
  jw_str(&w, "nodeId", nm->me.id_hex);
  jw_str(&w, "networkId", nm->conf->networkId);
  char listen[96];
  snprintf(listen, sizeof listen, "%s:%d", nm->conf->host, nm->tr.listen_port);
  jw_str(&w, "listen", listen);
  jw_int(&w, "listenPort", nm->tr.listen_port);
  int dialing = 0, handshaking = 0;
  for (const struct peer *p = nm->peers; p; p = p->next) {
    if (p->state == PEER_DIALING) dialing++;
    if (p->state == PEER_HANDSHAKING) handshaking++;
  }
  jw_open(&w, "peers");
  jw_int(&w, "inbound", nm->n_inbound);
  jw_int(&w, "outbound", nm->n_outbound);
  jw_int(&w, "total", nm->n_inbound + nm->n_outbound);
  jw_int(&w, "dialing", dialing);
  jw_int(&w, "handshaking", handshaking);
  jw_int(&w, "maxPeers", nm->conf->maxPeers);
  jw_close(&w);
  jw_open(&w, "messages");
  jw_by_type(&w, "in", s->msgs_in);
  jw_by_type(&w, "out", s->msgs_out);
  jw_close(&w);
  jw_open(&w, "bytes");
  jw_by_type(&w, "in", s->bytes_in);
  jw_by_type(&w, "out", s->bytes_out);
  jw_close(&w);
  jw_open(&w, "counters");
  jw_int(&w, "accepted", (long long)s->accepted);
  jw_int(&w, "dialled", (long long)s->dialled);
  jw_int(&w, "dialFailures", (long long)s->dial_failures);
  jw_int(&w, "handshakesOk", (long long)s->handshakes_ok);
  jw_int(&w, "handshakesFailed", (long long)s->handshakes_failed);
  jw_int(&w, "invalidMessages", (long long)s->invalid_messages);
  jw_int(&w, "droppedSends", (long long)s->dropped_sends);
  jw_open(&w, "refusedByCode");
  for (int i = 0; i < 16; i++) {
    if (s->refused[i] == 0) continue;
    char code[8];
    snprintf(code, sizeof code, "%d", 4000 + i);
    jw_int(&w, code, (long long)s->refused[i]);
  }
  jw_close(&w);
  jw_close(&w);
  jw_close(&w);
}

/* ---- /metrics sources ----------------------------------------------------- */

static const char *const directions[2] = {"inbound", "outbound"};

static void write_process(struct metrics_out *o, void *ud) {
  struct node *n = ud;
  /* "4.1.6-" (an empty git describe follows the dash): keep the release */
  char lws[32];
  snprintf(lws, sizeof lws, "%s", lws_get_library_version());
  lws[strspn(lws, "0123456789.")] = '\0';
  metrics_family(o, "bt2c_build_info", METRICS_GAUGE,
                 "Always 1; the labels say what this bt2cd is built from");
  metrics_sample(o, 1, "version", BT2C_VERSION, "libwebsockets", lws, "lua",
                 LUA_VERSION_MAJOR "." LUA_VERSION_MINOR "." LUA_VERSION_RELEASE, NULL);
  metrics_family(o, "bt2c_node_info", METRICS_GAUGE,
                 "Always 1; the labels identify the node and its network");
  metrics_sample(o, 1, "node_id", n->net.me.id_hex, "network_id", n->conf.networkId, NULL);
  metrics_gauge(o, "bt2c_uptime_seconds", "Seconds since the node started",
                log_monotonic() - n->started);
  metrics_gauge(o, "bt2c_console_sessions", "Open console sessions",
                console_sessions(n->console));
}

static void write_peers(struct metrics_out *o, void *ud) {
  const struct netmgr *nm = &((struct node *)ud)->net;
  /* established from the counted totals, exactly as get_network_status */
  int handshaking[2] = {0, 0}, closing[2] = {0, 0}, dialing = 0;
  size_t q_sum = 0, q_max = 0;
  uint64_t q_msgs[PC_COUNT] = {0};
  for (const struct peer *p = nm->peers; p; p = p->next) {
    int d = p->inbound ? 0 : 1;
    if (p->state == PEER_DIALING) dialing++;
    else if (p->state == PEER_HANDSHAKING) handshaking[d]++;
    else if (p->state == PEER_CLOSING) closing[d]++;
    q_sum += p->q_bytes;
    if (p->q_bytes > q_max) q_max = p->q_bytes;
    for (int c = 0; c < PC_COUNT; c++) q_msgs[c] += p->q[c].count;
  }
  metrics_family(o, "bt2c_peers", METRICS_GAUGE,
                 "Connections to other nodes by direction and state");
  metrics_sample(o, dialing, "direction", "outbound", "state", "dialing", NULL);
  for (int d = 0; d < 2; d++) {
    metrics_sample(o, handshaking[d], "direction", directions[d], "state", "handshaking", NULL);
    metrics_sample(o, d == 0 ? nm->n_inbound : nm->n_outbound, "direction", directions[d],
                   "state", "established", NULL);
    metrics_sample(o, closing[d], "direction", directions[d], "state", "closing", NULL);
  }
  metrics_family(o, "bt2c_peer_limit", METRICS_GAUGE,
                 "Configured connection limits (maxPeers, maxInbound, maxOutbound)");
  metrics_sample(o, nm->conf->maxPeers, "direction", "any", NULL);
  metrics_sample(o, nm->conf->maxInbound, "direction", "inbound", NULL);
  metrics_sample(o, nm->conf->maxOutbound, "direction", "outbound", NULL);
  metrics_gauge(o, "bt2c_pending_upgrades",
                "Accepted TCP connections waiting for their WebSocket upgrade", nm->tr.pending);

  metrics_gauge(o, "bt2c_send_queue_bytes", "Bytes queued for sending, summed over all peers",
                (double)q_sum);
  metrics_gauge(o, "bt2c_send_queue_bytes_max", "Bytes queued for the peer with the longest queue",
                (double)q_max);
  metrics_family(o, "bt2c_send_queue_messages", METRICS_GAUGE,
                 "Messages queued for sending, summed over all peers, by priority class");
  static const char *const classes[PC_COUNT] = {"control", "consensus", "blocks", "transactions",
                                                "other"};
  for (int c = 0; c < PC_COUNT; c++)
    metrics_sample(o, (double)q_msgs[c], "class", classes[c], NULL);
}

static void by_type(struct metrics_out *o, const uint64_t *in, const uint64_t *out) {
  for (int t = 1; t < MSG_TYPE_COUNT; t++) {
    metrics_sample(o, (double)in[t], "type", env_type_name(t), "direction", "in", NULL);
    metrics_sample(o, (double)out[t], "type", env_type_name(t), "direction", "out", NULL);
  }
}

static void write_traffic(struct metrics_out *o, void *ud) {
  const struct netmgr_stats *s = &((struct node *)ud)->net.stats;
  metrics_family(o, "bt2c_messages_total", METRICS_COUNTER,
                 "Envelopes received (in) and queued to a peer (out), by message type");
  by_type(o, s->msgs_in, s->msgs_out);
  metrics_family(o, "bt2c_message_bytes_total", METRICS_COUNTER,
                 "Envelope bytes received (in) and queued to a peer (out), by message type");
  by_type(o, s->bytes_in, s->bytes_out);
  metrics_counter(o, "bt2c_connections_accepted_total", "Inbound WebSocket connections accepted",
                  (double)s->accepted);
  metrics_counter(o, "bt2c_dials_total", "Outbound connections started", (double)s->dialled);
  metrics_counter(o, "bt2c_dial_failures_total",
                  "Outbound connections that failed before their WebSocket upgrade",
                  (double)s->dial_failures);
  metrics_family(o, "bt2c_handshakes_total", METRICS_COUNTER, "bt2c handshakes by result");
  metrics_sample(o, (double)s->handshakes_ok, "result", "ok", NULL);
  metrics_sample(o, (double)s->handshakes_failed, "result", "failed", NULL);
  metrics_family(o, "bt2c_refusals_total", METRICS_COUNTER,
                 "Handshakes this node refused, by the close code it gave; 4010 also counts "
                 "banned addresses refused at accept");
  for (int i = 0; i < 16; i++) {
    if (i > 12 && s->refused[i] == 0) continue; /* 4013..4015 are not assigned */
    char code[8];
    snprintf(code, sizeof code, "%d", 4000 + i);
    metrics_sample(o, (double)s->refused[i], "code", code, NULL);
  }
  metrics_counter(o, "bt2c_invalid_messages_total",
                  "Envelopes that broke the protocol or were ignored as abuse",
                  (double)s->invalid_messages);
  metrics_counter(o, "bt2c_dropped_sends_total",
                  "Queued messages shed because a peer's send queue was full",
                  (double)s->dropped_sends);
}

static void write_relay(struct metrics_out *o, void *ud) {
  const struct relay *r = &((struct node *)ud)->net.relay;
  static const struct {
    const char *name, *help;
    size_t off;
  } per_type[] = {
      {"bt2c_relay_received_total", "Application messages received, duplicates included",
       offsetof(struct relay_type_stats, received)},
      {"bt2c_relay_delivered_total", "Application messages delivered to this node (once per id)",
       offsetof(struct relay_type_stats, delivered)},
      {"bt2c_relay_relayed_total", "Copies forwarded to other peers",
       offsetof(struct relay_type_stats, relayed)},
      {"bt2c_relay_duplicates_total", "Application messages already seen (dropped)",
       offsetof(struct relay_type_stats, duplicates)},
  };
  for (size_t i = 0; i < sizeof per_type / sizeof per_type[0]; i++) {
    metrics_family(o, per_type[i].name, METRICS_COUNTER, per_type[i].help);
    for (int t = MSG_BLOCK; t < MSG_TYPE_COUNT; t++) {
      const uint64_t *v = (const uint64_t *)((const char *)&r->by_type[t] + per_type[i].off);
      metrics_sample(o, (double)*v, "type", env_type_name(t), NULL);
    }
  }
  metrics_family(o, "bt2c_relay_dropped_total", METRICS_COUNTER,
                 "Application messages not forwarded (or rejected), by reason");
  for (int d = 0; d < DROP_COUNT; d++)
    metrics_sample(o, (double)r->dropped[d], "reason", relay_drop_name((enum relay_drop)d), NULL);
  metrics_gauge(o, "bt2c_relay_seen_entries", "Message ids in the duplicate filter", r->seen.count);
  metrics_gauge(o, "bt2c_relay_seen_capacity", "Capacity of the duplicate filter (seenCacheSize)",
                r->seen.cap);
  metrics_counter(o, "bt2c_relay_seen_evicted_early_total",
                  "Ids the duplicate filter forgot before they expired, for lack of room",
                  (double)r->seen.evicted_early);
  metrics_counter(o, "bt2c_relay_direct_sent_total", "Direct messages this node originated",
                  (double)r->direct_sent);
  metrics_family(o, "bt2c_relay_direct_results_total", METRICS_COUNTER,
                 "Outcomes of direct messages this node originated");
  metrics_sample(o, (double)r->direct_delivered, "result", "delivered", NULL);
  metrics_sample(o, (double)r->direct_failed, "result", "failed", NULL);
  int pending = 0;
  for (int i = 0; i < RELAY_MAX_DIRECT; i++) pending += r->direct[i].used;
  metrics_gauge(o, "bt2c_relay_direct_pending", "Direct messages waiting for their receipt",
                pending);
}

static int cmp_id(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

struct ban_scan {
  const char **ids; /* ids in memory, sorted */
  unsigned n;
  double now;
  unsigned bans;
};

static int count_stored_ban(const struct peer_record *r, void *ud) {
  struct ban_scan *b = ud;
  const char *id = r->node_id;
  if (r->ban_until > b->now && bsearch(&id, b->ids, b->n, sizeof *b->ids, cmp_id) == NULL)
    b->bans++;
  return 0;
}

/* Score totals of the records in memory (connected peers and recently seen
 * nodes), their levels, and bans: a record in memory is authoritative, the
 * peer store covers the nodes not loaded. */
static void write_scoring(struct metrics_out *o, void *ud) {
  struct netmgr *nm = &((struct node *)ud)->net;
  const struct scoring *sc = &nm->scoring;
  static const double bounds[] = {-100, -75, -50, -25, 0, 25, 50, 75, 100};
  enum { NB = sizeof bounds / sizeof bounds[0] };
  uint64_t counts[NB + 1] = {0};
  uint64_t levels[4] = {0};
  double sum = 0;
  struct ban_scan bs = {.now = scoring_now()};
  bs.ids = malloc((sc->count ? sc->count : 1) * sizeof *bs.ids);
  for (unsigned i = 0; i < sc->cap; i++)
    for (const struct score *s = sc->table[i]; s; s = s->next) {
      int k = 0;
      while (k < NB && s->total > bounds[k]) k++;
      counts[k]++;
      sum += s->total;
      if ((unsigned)s->level < 4) levels[s->level]++;
      if (scoring_banned(s, bs.now)) bs.bans++;
      if (bs.ids && bs.n < sc->count) bs.ids[bs.n++] = s->id;
    }
  metrics_histogram(o, "bt2c_peer_score", "Score totals (-100..100) of the nodes kept in memory",
                    bounds, counts, NB, sum);
  metrics_family(o, "bt2c_peer_score_level", METRICS_GAUGE,
                 "Nodes kept in memory by score level (thresholds of the scoring policy)");
  for (int l = PL_BANNED; l <= PL_TRUSTED; l++)
    metrics_sample(o, (double)levels[l], "level", policy_level_name((enum policy_level)l), NULL);
  if (nm->store && bs.ids) {
    qsort(bs.ids, bs.n, sizeof *bs.ids, cmp_id);
    peerstore_each(nm->store, count_stored_ban, &bs);
  }
  free(bs.ids);
  metrics_gauge(o, "bt2c_bans_active", "Nodes with an active ban (by node id)", bs.bans);
  metrics_counter(o, "bt2c_scoring_events_total", "Scored events recorded", (double)sc->events);
  metrics_counter(o, "bt2c_scoring_recomputes_total", "Score recomputations",
                  (double)sc->recomputes);
  metrics_counter(o, "bt2c_scoring_lua_seconds_total", "Seconds spent in scoring policy hooks",
                  sc->lua_seconds);
  if (nm->store) {
    struct peerstore_stats ps;
    peerstore_get_stats(nm->store, &ps);
    metrics_gauge(o, "bt2c_peerstore_records", "Nodes in the peer store",
                  peerstore_count(nm->store));
    metrics_family(o, "bt2c_peerstore_flushes_total", METRICS_COUNTER,
                   "Peer store flushes to disk by result");
    metrics_sample(o, (double)(ps.flushes - ps.flush_failures), "result", "ok", NULL);
    metrics_sample(o, (double)ps.flush_failures, "result", "failed", NULL);
  }
}

/* Policy hook counters: one family per counter, labelled by hook. */
struct hook_rows {
  struct {
    char hook[48];
    struct policy_hook_counters c;
  } row[16];
  int n;
};

static void collect_hook(const char *hook, const struct policy_hook_counters *c, void *ud) {
  struct hook_rows *r = ud;
  if (r->n == (int)(sizeof r->row / sizeof r->row[0])) return;
  snprintf(r->row[r->n].hook, sizeof r->row[r->n].hook, "%s", hook);
  r->row[r->n++].c = *c;
}

enum hook_field { HF_CALLS, HF_ERRORS, HF_TIMEOUTS, HF_OOM, HF_BAD, HF_DEFAULTED, HF_SECONDS,
                  HF_DISABLED, HF_DEFINED };

static double hook_value(const struct policy_hook_counters *c, enum hook_field f) {
  switch (f) {
    case HF_CALLS: return (double)c->calls;
    case HF_ERRORS: return (double)c->errors;
    case HF_TIMEOUTS: return (double)c->timeouts;
    case HF_OOM: return (double)c->oom;
    case HF_BAD: return (double)c->bad_returns;
    case HF_DEFAULTED: return (double)c->defaulted;
    case HF_SECONDS: return c->time_ms / 1000.0;
    case HF_DISABLED: return c->disabled;
    default: return c->defined;
  }
}

static const struct {
  const char *name;
  enum metrics_type type;
  const char *help;
  enum hook_field f;
} hook_families[] = {
    {"bt2c_policy_calls_total", METRICS_COUNTER, "Policy hook calls (since the last reload)",
     HF_CALLS},
    {"bt2c_policy_errors_total", METRICS_COUNTER,
     "Policy hook calls that raised an error (since the last reload)", HF_ERRORS},
    {"bt2c_policy_timeouts_total", METRICS_COUNTER,
     "Policy hook calls cut off by the instruction or time limit (since the last reload)",
     HF_TIMEOUTS},
    {"bt2c_policy_oom_total", METRICS_COUNTER,
     "Policy hook calls that hit the memory limit (since the last reload)", HF_OOM},
    {"bt2c_policy_bad_returns_total", METRICS_COUNTER,
     "Policy hook calls whose result was refused (since the last reload)", HF_BAD},
    {"bt2c_policy_defaulted_total", METRICS_COUNTER,
     "Policy hook calls answered by the C default (since the last reload)", HF_DEFAULTED},
    {"bt2c_policy_seconds_total", METRICS_COUNTER,
     "Seconds spent in the policy hook (since the last reload)", HF_SECONDS},
    {"bt2c_policy_hook_disabled", METRICS_GAUGE,
     "1 when the hook is switched off after repeated failures", HF_DISABLED},
    {"bt2c_policy_hook_defined", METRICS_GAUGE, "1 when the policy file defines the hook",
     HF_DEFINED},
};

static void write_policy(struct metrics_out *o, void *ud) {
  const struct policy_host *h = ((struct node *)ud)->policy;
  metrics_gauge(o, "bt2c_policy_generation", "Policy generations loaded so far (0: none)",
                (double)policy_generation(h));
  struct hook_rows r = {.n = 0};
  policy_stats_each(h, collect_hook, &r);
  for (size_t k = 0; k < sizeof hook_families / sizeof hook_families[0]; k++) {
    metrics_family(o, hook_families[k].name, hook_families[k].type, hook_families[k].help);
    for (int i = 0; i < r.n; i++)
      metrics_sample(o, hook_value(&r.row[i].c, hook_families[k].f), "hook", r.row[i].hook, NULL);
  }
  /* memory belongs to a file ("relay" of "relay.select_mode"): once per file */
  metrics_family(o, "bt2c_policy_memory_bytes", METRICS_GAUGE,
                 "Bytes used by the Lua state of each policy file");
  char done[16][48];
  int n_done = 0;
  for (int i = 0; i < r.n; i++) {
    char file[48];
    snprintf(file, sizeof file, "%s", r.row[i].hook);
    char *dot = strchr(file, '.');
    if (dot) *dot = '\0';
    bool seen = false;
    for (int j = 0; j < n_done && !seen; j++) seen = strcmp(done[j], file) == 0;
    if (seen) continue;
    memcpy(done[n_done++], file, sizeof file);
    metrics_sample(o, (double)r.row[i].c.memory, "file", file, NULL);
  }
}

struct metrics *status_serve(struct node *n) {
  const struct conf *c = &n->conf;
  if (c->metrics.port == n->net.tr.listen_port) {
    /* lws would share one socket between the two and route by Host header */
    log_at(LV_ERROR, "metrics_listen_failed", "host=%s port=%d err=%s", c->metrics.host,
           c->metrics.port, "metrics.port is the peer port; give metrics its own port");
    return NULL;
  }
  struct metrics *m = metrics_start(&n->loop, c->metrics.host, c->metrics.port);
  if (m == NULL) return NULL;
  metrics_set_status(m, status_json, n);
  metrics_add_source(m, "process", write_process, n);
  metrics_add_source(m, "peers", write_peers, n);
  metrics_add_source(m, "traffic", write_traffic, n);
  metrics_add_source(m, "relay", write_relay, n);
  metrics_add_source(m, "scoring", write_scoring, n);
  metrics_add_source(m, "policy", write_policy, n);
  return m;
}
