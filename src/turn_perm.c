/* turn_perm: see turn_perm.h. */
#include "turn_perm.h"

#include <stdlib.h>
#include <string.h>

#include "netmgr.h"
#include "peer.h"
#include "peerstore.h"
#include "transport.h"
#include "turn_alloc.h"
#include "turn_txn.h"

#define PERM_LIFETIME 300.0  /* RFC 8656 §9 */
#define PERMS_PER_TICK 8
#define STORE_PERMS 32       /* most recently seen stored nodes whose IPs are permitted */

static double now_s(void) { return log_monotonic(); }

struct turn_perm *turnperm_find(struct turn_alloc *a, const struct stun_addr *ip) {
  for (int i = 0; i < a->n_perm; i++)
    if (stun_addr_same_ip(&a->perm[i].ip, ip)) return &a->perm[i];
  return NULL;
}

struct turn_perm *turnperm_add(struct turn_alloc *a, const struct stun_addr *ip, double now) {
  if (a->n_perm < TURN_MAX_PERMS) {
    struct turn_perm *p = &a->perm[a->n_perm++];
    memset(p, 0, sizeof *p);
    p->ip = *ip;
    p->ip.port = 0;
    return p;
  }
  for (int i = 0; i < a->n_perm; i++) { /* reuse one nobody wants any more */
    struct turn_perm *p = &a->perm[i];
    if (p->pending || p->wanted >= now - 0.5) continue;
    memset(p, 0, sizeof *p);
    p->ip = *ip;
    p->ip.port = 0;
    return p;
  }
  return NULL;
}

void turnperm_on_permission(struct turn_alloc *a, enum turn_verdict v,
                            const struct turn_answer *ans, const struct stun_addr *peer) {
  struct turn_perm *p = turnperm_find(a, peer);
  if (v == TV_WRONG_CREDENTIALS) {
    turnalloc_auth_failed(a, ans);
    return;
  }
  if (p == NULL) return;
  p->pending = false;
  double now = now_s();
  if (v == TV_SUCCESS) {
    p->installed = now;
    a->t->stats.permissions++;
    return;
  }
  if (v == TV_ERROR && (ans->code == 403 || ans->code == 443)) {
    char ip[STUN_ADDR_STRLEN];
    p->refused_until = now + PERM_LIFETIME;
    log_limited(&a->t->drop_limit, LV_INFO, "turn_permission_refused",
                "server=%s ip=%s code=%d reason=%s", a->url, stun_addr_ip(peer, ip, sizeof ip),
                ans->code, ans->reason);
  }
}

struct turn_chan *turnperm_chan_find(struct turn_alloc *a, const struct stun_addr *peer) {
  for (int i = 0; i < a->n_chan; i++)
    if (stun_addr_equal(&a->chan[i].peer, peer)) return &a->chan[i];
  return NULL;
}

void turnperm_on_channel(struct turn_alloc *a, enum turn_verdict v, const struct turn_answer *ans,
                         const struct stun_addr *peer, uint16_t number) {
  if (v == TV_WRONG_CREDENTIALS) {
    turnalloc_auth_failed(a, ans);
    return;
  }
  struct turn_chan *c = turnperm_chan_find(a, peer);
  if (c == NULL || c->number != number) return;
  c->pending = false;
  if (v == TV_SUCCESS) {
    c->bound = now_s();
    a->t->stats.channel_binds++;
  }
}

/* ---- permissions: who may reach the relays ------------------------------------ */

static void add_ip(struct stun_addr *ips, int *n, int cap, const char *ip) {
  struct stun_addr a;
  if (*n >= cap || stun_addr_set(&a, ip, 0) != 0) return;
  for (int i = 0; i < *n; i++)
    if (stun_addr_same_ip(&ips[i], &a)) return;
  ips[(*n)++] = a;
}

/* "ip:port" or "[v6]:port" to the IP alone. */
static void add_hostport(struct stun_addr *ips, int *n, int cap, const char *hp) {
  char ip[64];
  snprintf(ip, sizeof ip, "%s", hp);
  char *colon = strrchr(ip, ':');
  if (colon == NULL) return;
  *colon = '\0';
  const char *s = ip;
  if (ip[0] == '[') {
    s = ip + 1;
    char *close = strchr(ip, ']');
    if (close) *close = '\0';
  }
  add_ip(ips, n, cap, s);
}

/* The most recently seen stored nodes: a min-heap on last_seen holding
 * their addresses' IPs, so a scan of a large store copies little. */
struct recent_node {
  double seen;
  struct stun_addr ip[PEERSTORE_MAX_ADDRS];
  int n;
};
struct recent_nodes {
  struct recent_node heap[STORE_PERMS];
  int n;
};

static void heap_down(struct recent_nodes *rn, int i) {
  for (;;) {
    int l = 2 * i + 1, r = l + 1, m = i;
    if (l < rn->n && rn->heap[l].seen < rn->heap[m].seen) m = l;
    if (r < rn->n && rn->heap[r].seen < rn->heap[m].seen) m = r;
    if (m == i) return;
    struct recent_node tmp = rn->heap[i];
    rn->heap[i] = rn->heap[m];
    rn->heap[m] = tmp;
    i = m;
  }
}

static int keep_recent(const struct peer_record *r, void *ud) {
  struct recent_nodes *rn = ud;
  if (r->n_addrs == 0 || (rn->n == STORE_PERMS && r->last_seen <= rn->heap[0].seen)) return 0;
  struct recent_node node = {.seen = r->last_seen};
  for (int k = 0; k < r->n_addrs; k++) {
    bool tls;
    char host[256];
    int port;
    if (transport_parse_url(r->addrs[k], &tls, host, sizeof host, &port) == 0 &&
        stun_addr_set(&node.ip[node.n], host, 0) == 0)
      node.n++;
  }
  if (node.n == 0) return 0;
  if (rn->n < STORE_PERMS) { /* sift up */
    int i = rn->n++;
    while (i > 0 && rn->heap[(i - 1) / 2].seen > node.seen) {
      rn->heap[i] = rn->heap[(i - 1) / 2];
      i = (i - 1) / 2;
    }
    rn->heap[i] = node;
  } else {
    rn->heap[0] = node;
    heap_down(rn, 0);
  }
  return 0;
}

/* The rule (docs/NAT.md): the IPs of the nodes connected now (their
 * address, and the host and srflx candidates they advertised), then those of
 * the most recently seen nodes of the peer store, at most `cap`. */
int turnperm_collect_ips(struct turn *t, struct stun_addr *ips, int cap) {
  int n = 0;
  struct netmgr *nm = t->nm;
  if (nm == NULL) return 0;
  for (struct peer *p = nm->peers; p && n < cap; p = p->next) {
    if (p->state != PEER_ESTABLISHED && p->state != PEER_HANDSHAKING) continue;
    add_hostport(ips, &n, cap, p->remote);
    for (int i = 0; i < p->hello.n_cands; i++)
      if (p->hello.cands[i].type != CAND_RELAY) add_ip(ips, &n, cap, p->hello.cands[i].ip);
  }
  if (nm->store == NULL || n >= cap) return n;
  struct recent_nodes *rn = calloc(1, sizeof *rn);
  if (rn == NULL) return n;
  peerstore_each(nm->store, keep_recent, rn);
  /* newest first: take the heap apart from its minimum, then reverse */
  struct stun_addr got[STORE_PERMS * PEERSTORE_MAX_ADDRS];
  int ng = 0;
  while (rn->n > 0) {
    struct recent_node *top = &rn->heap[0];
    for (int k = top->n - 1; k >= 0; k--) got[ng++] = top->ip[k];
    rn->heap[0] = rn->heap[--rn->n];
    heap_down(rn, 0);
  }
  free(rn);
  for (int i = ng - 1; i >= 0 && n < cap; i--) {
    char ip[STUN_ADDR_STRLEN];
    add_ip(ips, &n, cap, stun_addr_ip(&got[i], ip, sizeof ip));
  }
  return n;
}

void turnperm_sync(struct turn_alloc *a, double now, const struct stun_addr *ips, int n) {
  for (int i = 0; i < n; i++) {
    if (ips[i].family != a->relayed.family) continue;
    struct turn_perm *p = turnperm_find(a, &ips[i]);
    if (p == NULL) p = turnperm_add(a, &ips[i], now);
    if (p && p->wanted < now) p->wanted = now;
  }
  int started = 0;
  for (int i = 0; i < a->n_perm && started < PERMS_PER_TICK; i++) {
    struct turn_perm *p = &a->perm[i];
    if (p->wanted < now - 0.5 || p->pending || p->refused_until > now) continue;
    if (p->installed > 0 && now - p->installed < TURN_PERMISSION_REFRESH) continue;
    if (turntxn_start(a, TP_PERMISSION, &p->ip, 0, 0) != 0) break; /* no free transaction */
    p->pending = true;
    started++;
  }
  int k = 0; /* forget what nobody wants and has lapsed */
  for (int i = 0; i < a->n_perm; i++) {
    struct turn_perm *p = &a->perm[i];
    bool keep = p->pending || p->wanted >= now - 0.5 || p->refused_until > now ||
                (p->installed > 0 && now - p->installed < PERM_LIFETIME);
    if (keep) a->perm[k++] = *p;
  }
  a->n_perm = k;
}

void turnperm_channels_refresh(struct turn_alloc *a, double now) {
  for (int i = 0; i < a->n_chan; i++) {
    struct turn_chan *c = &a->chan[i];
    struct turn_perm *p = turnperm_find(a, &c->peer);
    if (c->pending || c->bound <= 0 || now - c->bound < TURN_CHANNEL_REFRESH || p == NULL ||
        p->wanted < now)
      continue;
    if (turntxn_start(a, TP_CHANNEL_BIND, &c->peer, c->number, 0) == 0) c->pending = true;
  }
}
