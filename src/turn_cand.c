/* turn_cand: see turn_cand.h. */
#include "turn_cand.h"

#include <stdio.h>
#include <string.h>

#include "candidates.h"
#include "envelope.h"
#include "handshake.h"
#include "json.h"
#include "nat.h"
#include "nat_cand.h"
#include "netmgr.h"
#include "peer.h"
#include "peerstore.h"
#include "turn.h"

#define NAT_TRAVERSAL_MAX 16384

/* This node's candidates for the wire: host and srflx addresses with the
 * TCP listen port (the WebSocket listener is on the same address), relay
 * addresses as the TURN server gave them. */
int turncand_local(const struct nat *nt, int listen_port, struct cand *out, int cap) {
  struct nat_candidate nc[NAT_MAX_CANDIDATES];
  size_t total = natcand_list(nt, nc, NAT_MAX_CANDIDATES);
  int n = 0;
  for (size_t i = 0; i < total && n < cap; i++) {
    struct cand c;
    memset(&c, 0, sizeof c);
    c.type = (uint8_t)nc[i].type;
    c.priority = nc[i].priority;
    if (nc[i].type == NAT_CAND_RELAY) {
      c.transport = nc[i].transport == STUN_TRANSPORT_TCP ? CAND_TCP : CAND_UDP;
      c.port = nc[i].addr.port;
    } else {
      if (listen_port <= 0 || listen_port > 65535) continue;
      c.transport = CAND_TCP;
      c.port = (uint16_t)listen_port;
    }
    stun_addr_ip(&nc[i].addr, c.ip, sizeof c.ip);
    bool dup = false;
    for (int k = 0; k < n && !dup; k++) {
      if (out[k].port != c.port || out[k].transport != c.transport || strcmp(out[k].ip, c.ip))
        continue;
      dup = true;
      if (c.priority > out[k].priority) out[k] = c; /* srflx == host: keep host */
    }
    if (!dup) out[n++] = c;
  }
  return n;
}

void turncand_learn(struct netmgr *nm, const char *node_id_hex, const char *entry_url,
                    const struct cand *c, int n, const char *source) {
  if (nm->store == NULL) return;
  double now = netmgr_wallclock_ms() / 1000.0;
  if (n <= 0) { /* nothing but the address: as it always was */
    if (entry_url && entry_url[0])
      peerstore_add_address(nm->store, node_id_hex, entry_url, source, now);
    return;
  }
  bool tls = entry_url && strncmp(entry_url, "wss://", 6) == 0;
  struct cand_pref pref;
  cand_pref_set(&pref, nm->conf->natTraversal.preferredMethod,
                nm->conf->natTraversal.candidatePreference);
  char urls[CAND_MAX_URLS][CAND_URL_LEN];
  int k = cand_dial_urls(c, n, entry_url, tls, &pref, urls, CAND_MAX_URLS);
  if (k == 0) return;
  struct peer_record r;
  bool dirty = false;
  if (peerstore_get(nm->store, node_id_hex, &r) != 0) {
    if (peerstore_add_address(nm->store, node_id_hex, urls[0], source, now) != 0 ||
        peerstore_get(nm->store, node_id_hex, &r) != 0)
      return;
  } else if (now > r.last_seen) {
    r.last_seen = now;
    dirty = true;
  }
  if (cand_merge_urls(&r, urls, k) || dirty) peerstore_put(nm->store, &r);
}

int turncand_hello(void *ud, struct cand *out, int cap) {
  struct turn *t = ud;
  return turncand_local(t->nat, t->listen_port, out, cap);
}

/* A nat_traversal message whenever this node's candidates change. */
void turncand_advertise(struct turn *t) {
  if (t->nm == NULL) return;
  struct cand c[CAND_MAX];
  int n = turncand_local(t->nat, t->listen_port, c, CAND_MAX);
  struct buf b = {0};
  cand_write_json(&b, c, n);
  bool same = t->advertised.len == b.len && memcmp(t->advertised.data, b.data, b.len) == 0;
  if (!same) {
    buf_reset(&t->advertised);
    buf_append(&t->advertised, b.data, b.len);
    struct buf msg = {0};
    buf_appendf(&msg, "{\"candidates\":%s,\"time\":%.0f}", b.data, netmgr_wallclock_ms());
    int sent = netmgr_send(t->nm, NULL, MSG_NAT_TRAVERSAL, msg.data, msg.len);
    if (sent > 0) {
      t->stats.nat_traversal_sent += (uint64_t)sent;
      log_at(LV_DEBUG, "nat_traversal_sent", "peers=%d candidates=%d", sent, n);
    }
    buf_free(&msg);
  }
  buf_free(&b);
}

/* Candidates that arrived in a HELLO or nat_traversal go to the peer store. */
void turncand_learn_peers(struct turn *t) {
  if (t->nm == NULL) return;
  for (struct peer *p = t->nm->peers; p; p = p->next) {
    if (p->state != PEER_ESTABLISHED || p->hello.n_cands == 0 || p->hello.cands_learned) continue;
    char url[128];
    netmgr_peer_url(p, url, sizeof url);
    turncand_learn(t->nm, p->id_hex, url, p->hello.cands, p->hello.n_cands, "hello");
    p->hello.cands_learned = true;
  }
}

int turncand_on_nat_traversal(void *ud, struct peer *p, const struct envelope *e) {
  (void)ud;
  struct netmgr *nm = p->nm;
  struct json_doc doc;
  char err[96], label[64];
  const char *why = NULL;
  struct cand c[CAND_MAX];
  int bad = 0, n = -1;
  if (e->payload_len > NAT_TRAVERSAL_MAX) {
    why = "nat_traversal larger than 16 KiB";
  } else if (json_parse((const char *)e->payload, e->payload_len, &doc, err, sizeof err) != 0) {
    why = "nat_traversal is not valid JSON";
  } else {
    n = cand_parse_json(json_get(doc.root, "candidates"), c, CAND_MAX, &bad);
    json_free(&doc);
    if (n < 0) why = "nat_traversal without a candidates array of at most 32 entries";
  }
  if (why) {
    nm->stats.invalid_messages++;
    netmgr_penalise(nm, p, BH_INVALID_MESSAGE);
    log_at(LV_INFO, "invalid_message", "peer=%s type=nat_traversal why=%s",
           peer_label(p, label, sizeof label), why);
    return -1;
  }
  hs_hello_set_candidates(&p->hello, c, n); /* the tick files them */
  log_at(LV_DEBUG, "nat_traversal_received", "peer=%s candidates=%d skipped=%d",
         peer_label(p, label, sizeof label), n, bad);
  return 0;
}
