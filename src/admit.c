/* admit: see admit.h. */
#include "admit.h"

#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

#include "control.h"
#include "json.h"
#include "log.h"
#include "netmgr.h"
#include "netmgr_dial.h"
#include "peerstore.h"
#include "policy.h"
#include "scoring.h"

static void on_handshake_timeout(struct loop_timer *t) {
  struct peer *p = t->user;
  if (p->state == PEER_HANDSHAKING) {
    char label[64];
    log_at(LV_INFO, "handshake_timeout", "peer=%s remote=%s after_ms=%d",
           peer_label(p, label, sizeof label), p->remote, p->nm->conf->handshakeTimeout);
    p->nm->stats.handshakes_failed++;
    transport_close(p, 4007, "handshake timeout");
  }
}

static void send_hello(struct netmgr *nm, struct peer *p) {
  RAND_bytes(p->my_nonce, sizeof p->my_nonce);
  struct buf b = {0};
  const struct conf *c = nm->conf;
  struct buf meta = {0};
  buf_appendf(&meta, "{\"version\":");
  json_write_string(&meta, c->metaVersion ? c->metaVersion : "", c->metaVersion ? strlen(c->metaVersion) : 0);
  buf_appendf(&meta, ",\"isValidator\":%s}", c->isValidator ? "true" : "false");
  long long height = nm->hooks.height ? nm->hooks.height(nm->hooks.ud) : 0;
  struct cand cands[CAND_MAX];
  int nc = nm->hooks.candidates ? nm->hooks.candidates(nm->hooks.candidates_ud, cands, CAND_MAX) : 0;
  hs_hello_write(&b, &nm->me, c->networkId, p->my_nonce, netmgr_wallclock_ms(),
                 nm->tr.listen_port, nm->tr.tls, meta.data, height, cands, nc);
  netmgr_send_json(nm, p, MSG_PEER_HANDSHAKE, &b);
  buf_free(&b);
  buf_free(&meta);
}

void admit_start(struct netmgr *nm, struct peer *p) {
  p->state = PEER_HANDSHAKING;
  nm->n_handshaking++;
  p->timer.user = p;
  loop_timer_start(nm->loop, &p->timer, nm->conf->handshakeTimeout, on_handshake_timeout);
  send_hello(nm, p);
}

/* The score of a node (0 if never seen). */
static double known_score(struct netmgr *nm, const char *id_hex) {
  struct score *s = scoring_find(&nm->scoring, id_hex);
  return s ? s->total : 0;
}

/* A validator is a peer whose handshake proved a key in the validator set;
 * its own isValidator claim counts for nothing. */
/* The inbound peer a newcomer may replace: neither persistent, validator nor
 * trusted, and with the lowest score; NULL if there is none. */
static struct peer *eviction_candidate(struct netmgr *nm, double *score) {
  struct policy_scoring_params sp;
  policy_scoring_params(nm->policy, &sp);
  struct peer *worst = NULL;
  double worst_score = 0;
  for (struct peer *q = nm->peers; q; q = q->next) {
    if (q->state != PEER_ESTABLISHED || !q->inbound || q->persistent ||
        netmgr_is_validator(nm, q))
      continue;
    double s = known_score(nm, q->id_hex);
    if (s >= sp.trusted) continue; /* trusted peers are protected */
    if (worst == NULL || s < worst_score || (s == worst_score && q->established_at > worst->established_at)) {
      worst = q;
      worst_score = s;
    }
  }
  *score = worst_score;
  return worst;
}

void admit_refuse(struct netmgr *nm, struct peer *p, int code, const char *why) {
  char label[64];
  log_at(LV_INFO, "handshake_refused", "peer=%s remote=%s code=%d why=%s",
         peer_label(p, label, sizeof label), p->remote, code, why);
  nm->stats.handshakes_failed++;
  if (code >= 4000 && code < 4016) nm->stats.refused[code - 4000]++;
  transport_close(p, code, why);
}

/* Which of two connections to the same node survives: the one dialled by
 * the node with the smaller id (both ends compute the same answer). */
static bool keep_first(const struct netmgr *nm, const struct peer *a, const struct peer *b) {
  const uint8_t *da = a->inbound ? a->id : nm->me.id;
  const uint8_t *db = b->inbound ? b->id : nm->me.id;
  int c = memcmp(da, db, ENV_NODE_ID_LEN);
  if (c == 0) return true; /* same direction twice: keep the older */
  return c < 0;
}

static void record_connection(struct netmgr *nm, struct peer *p) {
  if (nm->store == NULL) return;
  struct peer_record r;
  double now = netmgr_wallclock_ms() / 1000.0;
  if (peerstore_get(nm->store, p->id_hex, &r) != 0) {
    memset(&r, 0, sizeof r);
    memcpy(r.node_id, p->id_hex, sizeof r.node_id);
    r.first_seen = now;
    snprintf(r.source, sizeof r.source, "%s", p->dial_source);
  }
  memcpy(r.pubkey, p->hello.pub, sizeof r.pubkey);
  r.has_pubkey = true;
  r.last_seen = r.last_connected = now;
  r.failures = 0;
  peerstore_put(nm->store, &r);
  char url[128];
  netmgr_peer_url(p, url, sizeof url);
  if (url[0]) peerstore_add_address(nm->store, p->id_hex, url, p->dial_source, now);
}

static void finish_handshake(struct netmgr *nm, struct peer *p) {
  const struct conf *c = nm->conf;
  double now_s = scoring_now();
  struct score *sc = scoring_find(&nm->scoring, p->id_hex);
  char addrs[2][80];
  int na = netmgr_ban_keys(p, addrs);
  bool addr_banned = false;
  for (int i = 0; i < na && nm->store; i++)
    addr_banned |= peerstore_address_banned(nm->store, addrs[i], now_s) > 0;
  if (scoring_banned(sc, now_s) || addr_banned) {
    admit_refuse(nm, p, 4010, "banned");
    return;
  }
  struct policy_handshake in = {
      .node_id = p->id_hex,
      .address = p->remote,
      .inbound = p->inbound,
      .protocol_version = p->hello.version,
      .network_id = p->hello.network_id,
      .local_network_id = c->networkId,
      .clock_skew_ms = p->clock_skew_ms,
      .metadata_json = p->hello.metadata_json,
  };
  char reason[128] = "";
  if (!policy_handshake_validate(nm->policy, &in, reason, sizeof reason)) {
    admit_refuse(nm, p, 4003, reason[0] ? reason : "refused by policy");
    return;
  }
  struct peer *other = netmgr_find(nm, p->id);
  if (other) {
    if (keep_first(nm, other, p)) {
      admit_refuse(nm, p, 4005, "duplicate connection");
      return;
    }
    admit_refuse(nm, other, 4005, "duplicate connection");
    netmgr_unestablish(nm, other);
  }
  int total = nm->n_inbound + nm->n_outbound;
  if (p->inbound && (nm->n_inbound >= c->maxInbound || total >= c->maxPeers)) {
    double worst_score, mine = known_score(nm, p->id_hex);
    struct peer *victim = eviction_candidate(nm, &worst_score);
    if (victim == NULL || worst_score >= mine) {
      admit_refuse(nm, p, 4006, "no free inbound slot");
      return;
    }
    char label[64];
    log_at(LV_INFO, "peer_evicted", "peer=%s score=%.2f for=%s score_new=%.2f",
           peer_label(victim, label, sizeof label), worst_score, p->id_hex, mine);
    transport_close(victim, 4006, "replaced by a better peer");
    netmgr_unestablish(nm, victim);
  } else if (!p->inbound && (nm->n_outbound >= c->maxOutbound || total >= c->maxPeers)) {
    admit_refuse(nm, p, 4006, "no free outbound slot");
    return;
  }

  loop_timer_stop(&p->timer);
  nm->n_handshaking--;
  p->state = PEER_ESTABLISHED;
  p->established_at = log_monotonic();
  netmgr_table_insert(nm, p);
  p->counted = true;
  if (p->inbound) nm->n_inbound++;
  else nm->n_outbound++;
  nm->stats.handshakes_ok++;
  control_on_established(nm, p);
  record_connection(nm, p);
  scoring_connected(&nm->scoring, p->id_hex);
  p->score = scoring_get(&nm->scoring, p->id_hex);
  p->validator = netmgr_is_validator(nm, p);
  scoring_set_validator(&nm->scoring, p->id_hex, p->validator);
  relay_invalidate_modes(&nm->relay);
  dial_on_established(nm, p);

  char label[64];
  log_at(LV_INFO, "peer_connected", "peer=%s direction=%s remote=%s url=%s inbound=%d outbound=%d",
         peer_label(p, label, sizeof label), p->inbound ? "inbound" : "outbound", p->remote,
         p->url[0] ? p->url : "-", nm->n_inbound, nm->n_outbound);
  if (nm->hooks.peer_ready) nm->hooks.peer_ready(nm->hooks.ud, p);
  if (nm->ev.connected) nm->ev.connected(nm->ev.ud, p);
}

/* Handles one peer_handshake envelope; returns -1 if p is being closed. */
int admit_on_handshake(struct netmgr *nm, struct peer *p, const struct envelope *e) {
  struct hs_hello h;
  uint8_t sig[ID_SIG_LEN];
  int code = 0;
  char why[160];
  int step = hs_parse(e->payload, e->payload_len, e->origin, &h, sig, &code, why, sizeof why);
  if (step < 0) {
    admit_refuse(nm, p, code, why);
    return -1;
  }
  if (step == HS_STEP_HELLO) {
    if (p->hello_received) {
      hs_hello_free(&h);
      admit_refuse(nm, p, 4000, "second hello");
      return -1;
    }
    p->hello = h;
    p->hello_received = true;
    memcpy(p->id, h.node_id, ENV_NODE_ID_LEN);
    hex_encode(p->id, ENV_NODE_ID_LEN, p->id_hex);
    p->clock_skew_ms = h.time_ms - netmgr_wallclock_ms();
    if (h.version != HS_PROTOCOL_VERSION) {
      admit_refuse(nm, p, 4000, "unsupported protocol version");
      return -1;
    }
    if (strcmp(h.network_id, nm->conf->networkId) != 0) {
      admit_refuse(nm, p, 4002, "wrong network");
      return -1;
    }
    if (memcmp(p->id, nm->me.id, ENV_NODE_ID_LEN) == 0) {
      admit_refuse(nm, p, 4004, "connection to self");
      return -1;
    }
    uint8_t t[HS_TRANSCRIPT_MAX];
    const uint8_t *dialer_id = p->inbound ? p->id : nm->me.id;
    const uint8_t *listener_id = p->inbound ? nm->me.id : p->id;
    const uint8_t *dn = p->inbound ? p->hello.nonce : p->my_nonce;
    const uint8_t *ln = p->inbound ? p->my_nonce : p->hello.nonce;
    size_t tl = hs_transcript(t, !p->inbound, nm->conf->networkId, dialer_id, listener_id, dn, ln);
    uint8_t mysig[ID_SIG_LEN];
    if (identity_sign(&nm->me, t, tl, mysig) != 0) {
      admit_refuse(nm, p, 4000, "cannot sign");
      return -1;
    }
    struct buf b = {0};
    hs_auth_write(&b, mysig);
    netmgr_send_json(nm, p, MSG_PEER_HANDSHAKE, &b);
    buf_free(&b);
    p->auth_sent = true;
    return 0;
  }
  /* AUTH */
  if (!p->hello_received) {
    admit_refuse(nm, p, 4000, "auth before hello");
    return -1;
  }
  uint8_t t[HS_TRANSCRIPT_MAX];
  const uint8_t *dialer_id = p->inbound ? p->id : nm->me.id;
  const uint8_t *listener_id = p->inbound ? nm->me.id : p->id;
  const uint8_t *dn = p->inbound ? p->hello.nonce : p->my_nonce;
  const uint8_t *ln = p->inbound ? p->my_nonce : p->hello.nonce;
  /* The peer signed in its own role. */
  size_t tl = hs_transcript(t, p->inbound, nm->conf->networkId, dialer_id, listener_id, dn, ln);
  if (!identity_verify(p->hello.pub, t, tl, sig)) {
    admit_refuse(nm, p, 4001, "bad handshake signature");
    return -1;
  }
  finish_handshake(nm, p);
  return p->state == PEER_ESTABLISHED ? 0 : -1;
}

