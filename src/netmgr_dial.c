/* netmgr_dial: see netmgr_dial.h. */
#include "netmgr_dial.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "log.h"
#include "netmgr.h"
#include "peerstore.h"

#define BACKOFF_FIRST 1.0
#define BACKOFF_CAP 60.0
#define STABLE_SECONDS 60.0
#define STORE_REST_CAP 300.0
#define DIALS_PER_TICK 8

static double jitter(void) { /* uniform in [0.8, 1.2] */
  uint32_t r;
  RAND_bytes((unsigned char *)&r, sizeof r);
  return 0.8 + 0.4 * ((double)r / 4294967295.0);
}

static void add_target(struct netmgr *nm, const char *url, bool persistent) {
  for (int i = 0; i < nm->n_targets; i++)
    if (strcmp(nm->targets[i].url, url) == 0) {
      nm->targets[i].persistent |= persistent;
      return;
    }
  struct dial_target *t = &nm->targets[nm->n_targets++];
  memset(t, 0, sizeof *t);
  snprintf(t->url, sizeof t->url, "%s", url);
  t->persistent = persistent;
}

int dial_init(struct netmgr *nm) {
  const struct conf *c = nm->conf;
  size_t n = c->n_persistentPeers + c->n_bootstrapPeers;
  nm->targets = calloc(n ? n : 1, sizeof *nm->targets);
  if (nm->targets == NULL) return -1;
  for (size_t i = 0; i < c->n_persistentPeers; i++) add_target(nm, c->persistentPeers[i], true);
  for (size_t i = 0; i < c->n_bootstrapPeers; i++) add_target(nm, c->bootstrapPeers[i], false);
  return 0;
}

void dial_free(struct netmgr *nm) {
  free(nm->targets);
  nm->targets = NULL;
  nm->n_targets = 0;
}

static struct dial_target *target_of(struct netmgr *nm, const struct peer *p) {
  for (int i = 0; i < nm->n_targets; i++)
    if (nm->targets[i].conn == p) return &nm->targets[i];
  return NULL;
}

static bool url_busy(const struct netmgr *nm, const char *url) {
  for (const struct peer *p = nm->peers; p; p = p->next)
    if (!p->inbound && strcmp(p->url, url) == 0) return true;
  return false;
}

static double recent_until(const struct netmgr *nm, const char *id) {
  for (unsigned i = 0; i < sizeof nm->recent / sizeof nm->recent[0]; i++)
    if (strcmp(nm->recent[i].id, id) == 0) return nm->recent[i].until;
  return 0;
}

static void recent_set(struct netmgr *nm, const char *id, double until) {
  unsigned n = sizeof nm->recent / sizeof nm->recent[0];
  for (unsigned i = 0; i < n; i++)
    if (strcmp(nm->recent[i].id, id) == 0) {
      nm->recent[i].until = until;
      return;
    }
  struct dial_recent *r = &nm->recent[nm->recent_next++ % n];
  snprintf(r->id, sizeof r->id, "%s", id);
  r->until = until;
}

/* Whether the host of url is banned (the store bans addresses, not URLs). */
static bool url_banned(const struct netmgr *nm, const char *url, double wall) {
  bool tls;
  char host[256];
  int port;
  if (nm->store == NULL || transport_parse_url(url, &tls, host, sizeof host, &port) != 0)
    return false;
  char hostport[300];
  snprintf(hostport, sizeof hostport, "%s:%d", host, port);
  return peerstore_address_banned(nm->store, host, wall) > 0 ||
         peerstore_address_banned(nm->store, hostport, wall) > 0;
}

static struct peer *start_dial(struct netmgr *nm, const char *url, const char *source,
                               const char *expect_id, char *err, size_t errcap) {
  struct peer *p = netmgr_new_peer(nm, false);
  if (p == NULL) {
    snprintf(err, errcap, "out of memory");
    return NULL;
  }
  p->state = PEER_DIALING;
  snprintf(p->dial_source, sizeof p->dial_source, "%s", source);
  if (expect_id) snprintf(p->expect_id, sizeof p->expect_id, "%s", expect_id);
  nm->n_dialing++;
  nm->stats.dialled++;
  if (transport_dial(&nm->tr, p, url, err, errcap) != 0) {
    if (!p->dial_failed) nm->n_dialing--; /* else netmgr_dial_failed counted it */
    netmgr_release(nm, p);
    return NULL;
  }
  log_at(LV_DEBUG, "dialing", "url=%s source=%s", url, source);
  return p;
}

int netmgr_connect(struct netmgr *nm, const char *url, const char *source, char *err,
                   size_t errcap) {
  if (url_busy(nm, url)) {
    snprintf(err, errcap, "already connected or connecting to %s", url);
    return -1;
  }
  return start_dial(nm, url, source, NULL, err, errcap) ? 0 : -1;
}

static void backoff(struct dial_target *t, double now) {
  t->failures++;
  t->backoff = t->backoff ? t->backoff * 2 : BACKOFF_FIRST;
  if (t->backoff > BACKOFF_CAP) t->backoff = BACKOFF_CAP;
  t->next_try = now + t->backoff * jitter();
  if (t->persistent)
    log_at(LV_INFO, "persistent_redial", "url=%s attempt=%d in_s=%.2f backoff_s=%.0f", t->url,
           t->failures, t->next_try - now, t->backoff);
}

/* Outbound connections that count against the limits: established, dialling
 * and handshaking. */
static int outbound_in_use(const struct netmgr *nm, int *pending) {
  int n = 0;
  for (const struct peer *p = nm->peers; p; p = p->next)
    if (!p->inbound && (p->state == PEER_DIALING || p->state == PEER_HANDSHAKING)) n++;
  *pending = n;
  return nm->n_outbound + n;
}

void dial_tick(struct netmgr *nm, double now) {
  if (nm->stopping) return;
  const struct conf *c = nm->conf;
  int pending;
  int used = outbound_in_use(nm, &pending);
  int room = c->maxOutbound - used;
  int total_room = c->maxPeers - (nm->n_inbound + used);
  if (total_room < room) room = total_room;
  int budget = DIALS_PER_TICK;
  char err[128];

  /* Persistent peers are dialled even when the slots are full: they are the
   * operator's explicit choice. */
  for (int i = 0; i < nm->n_targets && budget > 0; i++) {
    struct dial_target *t = &nm->targets[i];
    if (!t->persistent || t->conn || now < t->next_try || url_busy(nm, t->url)) continue;
    t->conn = start_dial(nm, t->url, "persistent", NULL, err, sizeof err);
    if (t->conn) {
      t->conn->persistent = true;
      budget--;
    } else {
      backoff(t, now);
    }
  }
  if (room <= 0) return;

  /* Anchors first, then the best known nodes. */
  struct peer_record recs[32];
  double wall = netmgr_wallclock_ms() / 1000.0;
  int n = nm->store ? peerstore_best(nm->store, recs, 32, wall) : 0;
  for (int i = 0; i < n && room > 0 && budget > 0; i++) {
    struct peer_record *r = &recs[i];
    /* A node's addresses are its candidates in dial order (the one that
     * worked last first): each failure moves on to the next. */
    const char *url = r->addrs[r->n_addrs > 1 ? r->failures % r->n_addrs : 0];
    if (strcmp(r->node_id, nm->me.id_hex) == 0 || netmgr_find_hex(nm, r->node_id) ||
        recent_until(nm, r->node_id) > now || url_busy(nm, url) || url_banned(nm, url, wall))
      continue;
    double rest = 1.0;
    for (int f = 0; f < r->failures && rest < STORE_REST_CAP; f++) rest *= 2;
    recent_set(nm, r->node_id, now + (rest > STORE_REST_CAP ? STORE_REST_CAP : rest));
    if (start_dial(nm, url, r->anchor ? "anchor" : "store", r->node_id, err, sizeof err)) {
      room--;
      budget--;
    }
  }

  for (int i = 0; i < nm->n_targets && room > 0 && budget > 0; i++) {
    struct dial_target *t = &nm->targets[i];
    if (t->persistent || t->conn || now < t->next_try || url_busy(nm, t->url)) continue;
    t->conn = start_dial(nm, t->url, "bootstrap", NULL, err, sizeof err);
    if (t->conn) {
      room--;
      budget--;
    } else {
      backoff(t, now); /* it failed at once: not again on the next tick */
    }
  }
}

void dial_on_established(struct netmgr *nm, struct peer *p) {
  if (p->expect_id[0]) recent_set(nm, p->expect_id, 0);
  recent_set(nm, p->id_hex, 0);
}

void dial_on_failed(struct netmgr *nm, struct peer *p) {
  if (p == NULL) return;
  double now = log_monotonic();
  struct dial_target *t = target_of(nm, p);
  if (t) {
    t->conn = NULL;
    backoff(t, now);
  }
  if (p->expect_id[0] && nm->store) {
    struct peer_record r;
    if (peerstore_get(nm->store, p->expect_id, &r) == 0) {
      r.failures++;
      peerstore_put(nm->store, &r);
    }
  }
}

void dial_on_closed(struct netmgr *nm, struct peer *p, bool was_established) {
  struct dial_target *t = target_of(nm, p);
  if (t == NULL) return;
  t->conn = NULL;
  double now = log_monotonic();
  if (was_established && now - p->established_at >= STABLE_SECONDS) {
    t->backoff = 0; /* a connection that lasted: start again from the first step */
    t->failures = 0;
  }
  backoff(t, now);
}

void dial_save_anchors(struct netmgr *nm) {
  const char *ids[64];
  int n = 0;
  for (struct peer *p = nm->peers; p && n < 64; p = p->next)
    if (p->counted && !p->inbound) ids[n++] = p->id_hex;
  peerstore_set_anchors(nm->store, ids, n);
}
