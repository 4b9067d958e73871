/* netmgr: see netmgr.h. Connections, the handshake flow, limits, events.
 * Dialling and peer exchange are in netmgr_dial.c and control.c. */
#include "netmgr.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "admit.h"
#include "control.h"
#include "json.h"
#include "log.h"
#include "netmgr_dial.h"
#include "peerstore.h"
#include "policy.h"
#include "scoring.h"

#define TICK_MS 100
#define FLUSH_SECONDS 2.0

double netmgr_wallclock_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* ---- the id table of established peers --------------------------------- */

static unsigned id_hash(const uint8_t id[ENV_NODE_ID_LEN], unsigned cap) {
  return ((unsigned)id[0] << 24 | (unsigned)id[1] << 16 | (unsigned)id[2] << 8 | id[3]) &
         (cap - 1);
}

void netmgr_table_insert(struct netmgr *nm, struct peer *p) {
  unsigned n = (unsigned)(nm->n_inbound + nm->n_outbound);
  if (nm->table == NULL || n + 1 > nm->table_cap / 2) {
    unsigned cap = nm->table_cap ? nm->table_cap * 2 : 64;
    struct peer **t = calloc(cap, sizeof *t);
    if (t == NULL) abort();
    for (unsigned i = 0; i < nm->table_cap; i++) {
      struct peer *q = nm->table[i];
      while (q) {
        struct peer *nx = q->hnext;
        unsigned h = id_hash(q->id, cap);
        q->hnext = t[h];
        t[h] = q;
        q = nx;
      }
    }
    free(nm->table);
    nm->table = t;
    nm->table_cap = cap;
  }
  unsigned h = id_hash(p->id, nm->table_cap);
  p->hnext = nm->table[h];
  nm->table[h] = p;
}

static void table_remove(struct netmgr *nm, struct peer *p) {
  if (nm->table == NULL) return;
  for (struct peer **q = &nm->table[id_hash(p->id, nm->table_cap)]; *q; q = &(*q)->hnext) {
    if (*q == p) {
      *q = p->hnext;
      p->hnext = NULL;
      return;
    }
  }
}

struct peer *netmgr_find(const struct netmgr *nm, const uint8_t id[ENV_NODE_ID_LEN]) {
  if (nm->table == NULL) return NULL;
  for (struct peer *q = nm->table[id_hash(id, nm->table_cap)]; q; q = q->hnext)
    if (memcmp(q->id, id, ENV_NODE_ID_LEN) == 0) return q;
  return NULL;
}

struct peer *netmgr_find_hex(const struct netmgr *nm, const char *id_hex) {
  uint8_t id[ENV_NODE_ID_LEN];
  if (id_hex == NULL || hex_decode(id_hex, strlen(id_hex), id, sizeof id) != 0) return NULL;
  return netmgr_find(nm, id);
}

/* ---- the list of all connections --------------------------------------- */

static void list_add(struct netmgr *nm, struct peer *p) {
  p->serial = ++nm->next_serial;
  p->next = nm->peers;
  p->prev = NULL;
  if (nm->peers) nm->peers->prev = p;
  nm->peers = p;
}

static void list_remove(struct netmgr *nm, struct peer *p) {
  if (p->prev) p->prev->next = p->next;
  else nm->peers = p->next;
  if (p->next) p->next->prev = p->prev;
  p->next = p->prev = NULL;
}

struct peer *netmgr_new_peer(struct netmgr *nm, bool inbound) {
  struct peer *p = peer_new(nm, inbound);
  if (p == NULL) return NULL;
  list_add(nm, p);
  return p;
}

/* Forgets p entirely (its connection is already gone). */
void netmgr_release(struct netmgr *nm, struct peer *p) {
  loop_timer_stop(&p->timer);
  list_remove(nm, p);
  peer_free(p);
}

/* ---- sending ------------------------------------------------------------ */

struct msgbuf *netmgr_encode(struct netmgr *nm, int type, const char *payload, size_t len) {
  struct msgbuf *m = msgbuf_new(env_wire_len(0, 0, len));
  if (m == NULL) return NULL;
  struct envelope e;
  memset(&e, 0, sizeof e);
  e.type = (uint8_t)type;
  memcpy(e.origin, nm->me.id, ENV_NODE_ID_LEN);
  env_message_id(e.type, payload, len, e.id);
  e.payload = (const uint8_t *)payload;
  e.payload_len = (uint32_t)len;
  env_encode(m->data, &e);
  m->type = (uint8_t)type;
  return m;
}

/* Queues m for p; a peer that cannot take it is closed. */
void netmgr_queue(struct netmgr *nm, struct peer *p, struct msgbuf *m) {
  if (p->state == PEER_CLOSING) return;
  int rc = peer_enqueue(p, m);
  if (rc < 0) {
    char label[64];
    log_at(LV_WARN, "peer_too_slow", "peer=%s queued_bytes=%zu why=%s",
           peer_label(p, label, sizeof label), p->q_bytes,
           "its send queue is full of messages that cannot be shed");
    transport_close(p, 4009, "send queue overflow");
    netmgr_unestablish(nm, p);
    return;
  }
  if (rc > 0) {
    nm->stats.dropped_sends++;
    return;
  }
  nm->stats.msgs_out[m->type]++;
  nm->stats.bytes_out[m->type] += m->len;
  transport_want_write(p);
}

void netmgr_send_json(struct netmgr *nm, struct peer *p, int type, const struct buf *b) {
  struct msgbuf *m = netmgr_encode(nm, type, b->data, b->len);
  if (m == NULL) return;
  netmgr_queue(nm, p, m);
  msgbuf_unref(m);
}

int netmgr_send(struct netmgr *nm, struct peer *target, int type, const char *payload,
                size_t len) {
  if (type < MSG_BLOCK || type >= MSG_TYPE_COUNT) return -1;
  if (len > nm->conf->maxMessageSize - ENV_HEADER_LEN || !json_object_valid(payload, len))
    return -1;
  struct msgbuf *m = netmgr_encode(nm, type, payload, len);
  if (m == NULL) return -1;
  int n = 0;
  for (struct peer *p = nm->peers; p; p = p->next) {
    if (p->state != PEER_ESTABLISHED || (target && p != target)) continue;
    netmgr_queue(nm, p, m);
    n++;
  }
  msgbuf_unref(m);
  return n;
}

/* ---- connections opening (the handshake itself is in admit.c) ---------- */

struct peer *netmgr_inbound_opened(struct netmgr *nm, struct lws *wsi, const char *remote) {
  if (nm->stopping) return NULL;
  struct peer *p = netmgr_new_peer(nm, true);
  if (p == NULL) return NULL;
  p->wsi = wsi;
  snprintf(p->remote, sizeof p->remote, "%s", remote);
  snprintf(p->dial_source, sizeof p->dial_source, "inbound");
  nm->stats.accepted++;
  admit_start(nm, p);
  return p;
}

void netmgr_outbound_opened(struct netmgr *nm, struct peer *p) {
  nm->n_dialing--;
  admit_start(nm, p);
}

void netmgr_peer_url(const struct peer *p, char *out, size_t cap) {
  if (!p->inbound) {
    snprintf(out, cap, "%s", p->url);
    return;
  }
  out[0] = '\0';
  if (p->hello.listen_port <= 0) return;
  char ip[64];
  snprintf(ip, sizeof ip, "%s", p->remote);
  char *colon = strrchr(ip, ':');
  if (colon == NULL) return;
  *colon = '\0'; /* an IPv6 remote keeps its brackets */
  snprintf(out, cap, "%s://%s:%d", p->hello.listen_tls ? "wss" : "ws", ip, p->hello.listen_port);
}

bool netmgr_is_validator(const struct netmgr *nm, const struct peer *p) {
  if (!p->hello_received || p->id_hex[0] == '\0') return false;
  if (nm->hooks.is_validator) return nm->hooks.is_validator(nm->hooks.ud, p->id_hex);
  for (size_t i = 0; i < nm->conf->n_validators; i++)
    if (strcmp(nm->conf->validators[i], p->id_hex) == 0) return true;
  return false;
}

void netmgr_reject(struct netmgr *nm, struct peer *p, int type, int code, const char *why) {
  if (p->state == PEER_HANDSHAKING) {
    admit_refuse(nm, p, code, why);
    return;
  }
  char label[64];
  nm->stats.invalid_messages++;
  log_at(LV_INFO, "invalid_message", "peer=%s remote=%s type=%s code=%d why=%s",
         peer_label(p, label, sizeof label), p->remote, type ? env_type_name(type) : "-", code,
         why);
  netmgr_penalise(nm, p, code == 4011 ? BH_SPAM : BH_INVALID_MESSAGE);
  transport_close(p, code, why);
  netmgr_unestablish(nm, p);
}

int netmgr_deliver(struct netmgr *nm, struct peer *p, const struct envelope *e) {
  netmgr_consumer c = nm->hooks.consume[e->type];
  void *ud = nm->hooks.consume_ud[e->type] ? nm->hooks.consume_ud[e->type] : nm->hooks.ud;
  if (c && c(ud, p, e) < 0) return -1; /* the consumer penalised and logged it */
  if (nm->ev.message && (nm->ev.message_mask & (1u << e->type))) nm->ev.message(nm->ev.ud, p, e);
  return 0;
}

/* The validator set changed: every connected peer is looked at again. */
void netmgr_validators_changed(struct netmgr *nm) {
  for (struct peer *p = nm->peers; p; p = p->next) {
    if (!p->counted) continue;
    p->validator = netmgr_is_validator(nm, p);
    scoring_set_validator(&nm->scoring, p->id_hex, p->validator);
  }
  relay_invalidate_modes(&nm->relay);
}

/* Takes an established peer out of the counts and the id table (it is
 * closing). */
void netmgr_unestablish(struct netmgr *nm, struct peer *p) {
  if (!p->counted) return;
  p->counted = false;
  p->score = NULL;
  relay_invalidate_modes(&nm->relay);
  table_remove(nm, p);
  if (p->inbound) nm->n_inbound--;
  else nm->n_outbound--;
  p->state = PEER_CLOSING;
}

/* ---- receiving ------------------------------------------------------------ */

struct rx_ctx {
  struct netmgr *nm;
  struct peer *p;
};

/* Types that are never relayed come from the sender itself. */
static bool direct_only(int type) {
  return type == MSG_PEER_HANDSHAKE || type == MSG_PEER_EXCHANGE || type == MSG_PEER_PING;
}

static int on_envelope(const struct envelope *e, void *ud) {
  struct rx_ctx *x = ud;
  struct netmgr *nm = x->nm;
  struct peer *p = x->p;
  if (p->state == PEER_CLOSING) return 1;
  if (direct_only(e->type) && (e->flags || e->path_len)) {
    netmgr_reject(nm, p, e->type, e->type == MSG_PEER_HANDSHAKE ? 4000 : 1002,
                  "control message with relay flags or a path");
    return 1;
  }
  if (direct_only(e->type) && p->hello_received && memcmp(e->origin, p->id, ENV_NODE_ID_LEN) != 0) {
    netmgr_reject(nm, p, e->type, e->type == MSG_PEER_HANDSHAKE ? 4001 : 1002,
                  "control message from another origin");
    return 1;
  }
  nm->stats.msgs_in[e->type]++;
  nm->stats.bytes_in[e->type] += env_wire_len(e->path_len, e->target != NULL, e->payload_len);
  p->msgs_in++;
  p->type_in[e->type]++;
  if (p->state == PEER_HANDSHAKING) {
    if (e->type != MSG_PEER_HANDSHAKE) {
      nm->stats.invalid_messages++;
      admit_refuse(nm, p, 4000, "message before the handshake completed");
      return 1;
    }
    return admit_on_handshake(nm, p, e) < 0 ? 1 : 0;
  }
  switch (e->type) {
    case MSG_PEER_HANDSHAKE:
      netmgr_reject(nm, p, e->type, 4000, "handshake message after the handshake");
      return 1;
    case MSG_PEER_PING:
    case MSG_PEER_EXCHANGE:
      return control_on_message(nm, p, e) < 0 ? 1 : 0;
    default:
      break;
  }
  return relay_on_message(&nm->relay, p, e) < 0 ? 1 : 0;
}

void netmgr_on_message(struct netmgr *nm, struct peer *p, const uint8_t *data, size_t len) {
  p->last_rx = log_monotonic();
  p->bytes_in += len;
  struct rx_ctx x = {nm, p};
  const char *why = NULL;
  if (p->state == PEER_ESTABLISHED) relay_prefetch(&nm->relay, data, len);
  if (env_batch_each(data, len, on_envelope, &x, &why) < 0 && p->state != PEER_CLOSING) {
    nm->stats.invalid_messages++;
    netmgr_penalise(nm, p, BH_INVALID_MESSAGE);
    char label[64], reason[100];
    log_at(LV_INFO, "invalid_message", "peer=%s remote=%s why=%s",
           peer_label(p, label, sizeof label), p->remote, why);
    snprintf(reason, sizeof reason, "malformed envelope: %s", why);
    transport_close(p, 1002, reason);
  }
}

/* ---- connection end ------------------------------------------------------ */

void netmgr_dial_failed(struct netmgr *nm, struct peer *p, const char *why) {
  nm->stats.dial_failures++;
  log_at(LV_INFO, "dial_failed", "url=%s why=%s source=%s", p->url, why, p->dial_source);
  dial_on_failed(nm, p);
  if (p->state == PEER_DIALING) nm->n_dialing--;
  else if (p->state == PEER_HANDSHAKING) nm->n_handshaking--;
  if (p->in_dial) {
    p->dial_failed = true; /* transport_dial reports it; the dialler frees p */
    p->state = PEER_CLOSING;
    return;
  }
  netmgr_release(nm, p);
}

void netmgr_on_closed(struct netmgr *nm, struct peer *p, int code, const char *reason) {
  bool was_established = p->established_at > 0;
  if (p->state == PEER_HANDSHAKING) nm->n_handshaking--;
  else if (p->state == PEER_DIALING) nm->n_dialing--;
  netmgr_unestablish(nm, p);
  char label[64];
  if (was_established)
    log_at(LV_INFO, "peer_disconnected", "peer=%s remote=%s code=%d reason=%s by=%s",
           peer_label(p, label, sizeof label), p->remote, code ? code : 1006,
           reason && reason[0] ? reason : "-", p->remote_close ? "peer" : "us");
  else
    log_limited(&nm->prehandshake_limit, LV_INFO, "connection_closed",
                "peer=%s remote=%s code=%d reason=%s by=%s stage=%s",
                peer_label(p, label, sizeof label), p->remote, code ? code : 1006,
                reason && reason[0] ? reason : "-", p->remote_close ? "peer" : "us",
                p->state == PEER_DIALING ? "dial" : "handshake");
  if (was_established) {
    /* A clean close, or one we chose for reasons that are not the peer's
     * fault (shutdown, eviction, duplicates, bans already counted), is no
     * DISCONNECT behaviour; a dropped connection or an unresponsive peer is. */
    int c = code ? code : 1006;
    bool clean = c == 1000 || c == 1001 || c == 4005 || c == 4006 || c == 4010 ||
                 (!p->remote_close && c != 4008);
    scoring_disconnected(&nm->scoring, p->id_hex, clean);
    if (nm->store) {
      struct peer_record r;
      if (peerstore_get(nm->store, p->id_hex, &r) == 0) {
        r.last_seen = netmgr_wallclock_ms() / 1000.0;
        peerstore_put(nm->store, &r);
      }
    }
    if (nm->ev.disconnected) nm->ev.disconnected(nm->ev.ud, p);
  }
  dial_on_closed(nm, p, was_established);
  netmgr_release(nm, p);
}

bool netmgr_allow_inbound(struct netmgr *nm, const char *ip) {
  if (nm->stopping) return false;
  double until = nm->store ? peerstore_address_banned(nm->store, ip, netmgr_wallclock_ms() / 1000.0) : 0;
  if (until > 0) {
    log_at(LV_INFO, "inbound_refused", "ip=%s why=%s", ip, "banned address");
    nm->stats.refused[10]++;
    return false;
  }
  return true;
}

int netmgr_disconnect(struct netmgr *nm, const char *id_hex, int code, const char *reason) {
  struct peer *p = netmgr_find_hex(nm, id_hex);
  if (p == NULL) return -1;
  transport_close(p, code, reason);
  netmgr_unestablish(nm, p);
  return 0;
}

/* ---- scores and bans -------------------------------------------------------- */

static bool loopback(const char *ip) {
  return strncmp(ip, "127.", 4) == 0 || strcmp(ip, "[::1]") == 0 || strcmp(ip, "::1") == 0;
}

int netmgr_ban_keys(const struct peer *p, char out[2][80]) {
  char ip[64];
  snprintf(ip, sizeof ip, "%s", p->remote);
  char *colon = strrchr(ip, ':');
  if (colon == NULL) return 0;
  *colon = '\0';
  int n = 0;
  /* Every node on a host shares a loopback address: ban its listen port there. */
  if (!loopback(ip)) snprintf(out[n++], 80, "%s", ip);
  int port = p->inbound ? p->hello.listen_port : atoi(colon + 1);
  if (port > 0) snprintf(out[n++], 80, "%s:%d", ip, port);
  return n;
}

/* Address keys of a node that is not connected: the host (and host:port)
 * of its best known URL. */
static int record_ban_keys(struct netmgr *nm, const char *id, char out[2][80]) {
  struct peer_record r;
  if (nm->store == NULL || peerstore_get(nm->store, id, &r) != 0 || r.n_addrs == 0) return 0;
  bool tls;
  char host[64];
  int port;
  if (transport_parse_url(r.addrs[0], &tls, host, sizeof host, &port) != 0) return 0;
  int n = 0;
  if (!loopback(host)) snprintf(out[n++], 80, "%s", host);
  snprintf(out[n++], 80, "%.63s:%d", host, port);
  return n;
}

static void apply_ban(struct netmgr *nm, struct score *s, double until, const char *reason) {
  char keys[2][80];
  struct peer *p = netmgr_find_hex(nm, s->id);
  int n = p ? netmgr_ban_keys(p, keys) : record_ban_keys(nm, s->id, keys);
  for (int i = 0; i < n && nm->store; i++) peerstore_ban_address(nm->store, keys[i], until);
  log_at(LV_WARN, "peer_banned", "peer=%s until_s=%.0f addresses=%d reason=%s", s->id,
         until - scoring_now(), n, reason);
  if (p) {
    transport_close(p, 4010, reason);
    netmgr_unestablish(nm, p);
  }
}

static void on_level_change(void *ud, struct score *s, enum policy_level from,
                            enum policy_level to, const struct policy_threshold_action *a) {
  struct netmgr *nm = ud;
  (void)from;
  relay_invalidate_modes(&nm->relay); /* trusted/validator counts may change */
  if (a->ban_seconds > 0) {
    apply_ban(nm, s, s->ban_until, "banned: score fell to the banned threshold");
  } else if (a->disconnect) {
    struct peer *p = netmgr_find_hex(nm, s->id);
    if (p) {
      transport_close(p, 1000, to == PL_BANNED ? "score too low" : "disconnected by policy");
      netmgr_unestablish(nm, p);
    }
  }
}

void netmgr_ban(struct netmgr *nm, struct score *s, double seconds, const char *reason) {
  scoring_set_ban(&nm->scoring, s, seconds);
  apply_ban(nm, s, s->ban_until, reason);
}

void netmgr_unban(struct netmgr *nm, struct score *s) {
  char keys[2][80];
  int n = record_ban_keys(nm, s->id, keys);
  for (int i = 0; i < n && nm->store; i++) peerstore_unban_address(nm->store, keys[i]);
  scoring_set_ban(&nm->scoring, s, 0);
  log_at(LV_INFO, "peer_unbanned", "peer=%s", s->id);
}

void netmgr_penalise(struct netmgr *nm, struct peer *p, enum behavior b) {
  if (p->established_at > 0 && p->id_hex[0]) scoring_record(&nm->scoring, p->id_hex, b);
}

void netmgr_policies_reloaded(struct netmgr *nm) {
  scoring_rescore_all(&nm->scoring);
  relay_invalidate_modes(&nm->relay);
}

/* ---- periodic work and lifecycle ------------------------------------------- */

static void on_tick(struct loop_timer *t) {
  struct netmgr *nm = t->user;
  double now = log_monotonic();
  control_tick(nm, now);
  dial_tick(nm, now);
  relay_tick(&nm->relay, now);
  if (now >= nm->next_score) {
    nm->next_score = now + 1.0;
    scoring_tick(&nm->scoring);
  }
  if (nm->store && now >= nm->next_flush) {
    nm->next_flush = now + FLUSH_SECONDS;
    dial_save_anchors(nm);
    peerstore_flush(nm->store);
  }
  loop_timer_start(nm->loop, &nm->tick, TICK_MS, on_tick);
}

int netmgr_start(struct netmgr *nm, struct conf *c, struct loop *l, struct policy_host *policy) {
  memset(nm, 0, sizeof *nm);
  nm->conf = c;
  nm->loop = l;
  nm->policy = policy;
  char err[512];
  if (identity_load_or_create(&nm->me, c->dataDir, err, sizeof err) != 0) {
    log_at(LV_ERROR, "start_failed", "err=%s", err);
    return -1;
  }
  if (c->nodeId && strcmp(c->nodeId, nm->me.id_hex) != 0) {
    log_at(LV_ERROR, "start_failed", "nodeId=%s key_id=%s err=%s", c->nodeId, nm->me.id_hex,
           "the configured nodeId does not match the key in dataDir (wrong dataDir?)");
    identity_free(&nm->me);
    return -1;
  }
  char path[4096];
  snprintf(path, sizeof path, "%s/peers.db", c->dataDir);
  nm->store = peerstore_open(path, 0, err, sizeof err);
  if (nm->store == NULL) {
    log_at(LV_ERROR, "start_failed", "err=%s", err);
    identity_free(&nm->me);
    return -1;
  }
  scoring_init(&nm->scoring, c, policy, nm->store, on_level_change, nm);
  if (relay_init(&nm->relay, nm, c) != 0) {
    log_at(LV_ERROR, "start_failed", "err=%s", "cannot allocate the duplicate filter");
    scoring_free(&nm->scoring);
    peerstore_close(nm->store);
    identity_free(&nm->me);
    return -1;
  }
  if (transport_start(&nm->tr, l, c, nm) != 0) {
    relay_free(&nm->relay);
    scoring_free(&nm->scoring);
    peerstore_close(nm->store);
    identity_free(&nm->me);
    return -1;
  }
  if (dial_init(nm) != 0) {
    netmgr_stop(nm);
    return -1;
  }
  nm->tick.user = nm;
  nm->started = log_monotonic();
  nm->hooks.consume[MSG_NETWORK_STATUS] = control_on_status;
  nm->hooks.consume_ud[MSG_NETWORK_STATUS] = nm;
  nm->prehandshake_limit.burst = 20; /* connection-level events come in bursts */
  loop_timer_start(l, &nm->tick, TICK_MS, on_tick);
  log_at(LV_INFO, "network_started", "nodeId=%s listen=%s:%d networkId=%s known_peers=%d",
         nm->me.id_hex, c->host, nm->tr.listen_port, c->networkId, peerstore_count(nm->store));
  return 0;
}

void netmgr_close_all(struct netmgr *nm, int code, const char *reason) {
  if (nm->store && !nm->stopping) dial_save_anchors(nm); /* while they are still connected */
  nm->stopping = true;
  for (struct peer *p = nm->peers; p; p = p->next) {
    if (p->wsi) transport_close(p, code, reason);
    netmgr_unestablish(nm, p);
  }
}

bool netmgr_idle(const struct netmgr *nm) {
  for (const struct peer *p = nm->peers; p; p = p->next)
    if (p->wsi) return false;
  return true;
}

void netmgr_stop(struct netmgr *nm) {
  nm->stopping = true;
  loop_timer_stop(&nm->tick);
  /* Whatever is left has no connection any more (the loop is gone). */
  while (nm->peers) {
    struct peer *p = nm->peers;
    if (p->wsi) lws_set_opaque_user_data(p->wsi, NULL);
    p->wsi = NULL;
    netmgr_release(nm, p);
  }
  relay_free(&nm->relay);
  scoring_free(&nm->scoring); /* saves unsaved scores into the store */
  if (nm->store) {
    peerstore_close(nm->store);
    nm->store = NULL;
  }
  dial_free(nm);
  transport_stop(&nm->tr);
  free(nm->table);
  nm->table = NULL;
  identity_free(&nm->me);
}
