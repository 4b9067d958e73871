/* control: see control.h. */
#include "control.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

#include "candidates.h"
#include "json.h"
#include "log.h"
#include "netmgr.h"
#include "peerstore.h"
#include "scoring.h"
#include "turn_cand.h"

#define PING_MAX_PAYLOAD 256
#define EXCHANGE_MAX_PAYLOAD (64u << 10)
#define EXCHANGE_MAX_ENTRIES 64
#define EXCHANGE_REQUEST_MAX 32
#define PING_RATE 10.0   /* answered per second... */
#define PING_BURST 20.0  /* ...with bursts of */
#define PING_EXCESS_LIMIT 50 /* unanswered pings before the peer is closed */
#define EXCHANGE_SPACING 10.0 /* seconds between requests we answer per peer */
#define FIRST_EXCHANGE_DELAY 0.2
#define FIRST_PING_DELAY 1.0
/* NETWORK_STATUS: a health summary each peer gets this often (the first a
 * few seconds after the handshake); a peer may send us one per 10 s. */
#define STATUS_INTERVAL 60.0
#define FIRST_STATUS_DELAY 3.0
#define STATUS_SPACING 10.0
/* While the node has fewer outbound peers than this (or maxOutbound), it asks
 * for more peers this often, instead of every peerDiscoveryInterval. */
#define HUNGRY_OUTBOUND 8
#define HUNGRY_SPACING 12.0

void control_request_peers(struct netmgr *nm, struct peer *p) {
  struct buf b = {0};
  buf_appendf(&b, "{\"request\":true,\"max\":%d}", EXCHANGE_REQUEST_MAX);
  p->exchange_requested = true;
  netmgr_send_json(nm, p, MSG_PEER_EXCHANGE, &b);
  buf_free(&b);
}

void control_on_established(struct netmgr *nm, struct peer *p) {
  double now = log_monotonic();
  p->next_ping = now + FIRST_PING_DELAY; /* latency is known early */
  p->next_exchange = now + FIRST_EXCHANGE_DELAY;
  p->next_status = now + FIRST_STATUS_DELAY;
  p->last_rx = now;
}

static void send_ping(struct netmgr *nm, struct peer *p, double now) {
  uint64_t nonce;
  RAND_bytes((unsigned char *)&nonce, sizeof nonce);
  nonce &= (1ULL << 53) - 1; /* exact in a JSON number */
  p->ping_nonce = nonce;
  p->ping_sent_at = now;
  struct buf b = {0};
  buf_appendf(&b, "{\"nonce\":%llu,\"pong\":false}", (unsigned long long)nonce);
  netmgr_send_json(nm, p, MSG_PEER_PING, &b);
  buf_free(&b);
}

/* {"peers": n, "height": h, "version": "...", "uptime": s}: what a peer may
 * want to know about our health (docs/PROTOCOL.md section 7). */
static void send_status(struct netmgr *nm, struct peer *p, double now) {
  long long height = nm->hooks.height ? nm->hooks.height(nm->hooks.ud) : 0;
  struct buf b = {0};
  buf_appendf(&b, "{\"peers\":%d,\"height\":%lld,\"version\":\"%s\",\"uptime\":%.0f}",
              nm->n_inbound + nm->n_outbound, height, BT2C_VERSION, now - nm->started);
  netmgr_send_json(nm, p, MSG_NETWORK_STATUS, &b);
  buf_free(&b);
}

/* A peer's NETWORK_STATUS (a consumer: called once per message). Too
 * frequent ones are ignored and counted; malformed ones are invalid. */
int control_on_status(void *ud, struct peer *p, const struct envelope *e) {
  struct netmgr *nm = ud;
  double now = log_monotonic();
  if (!rate_allow(&p->status_rate, 1.0 / STATUS_SPACING, 2, now)) {
    nm->stats.invalid_messages++;
    return -1; /* not delivered, not relayed (it never is) */
  }
  struct json_doc doc;
  char err[64];
  if (json_parse((const char *)e->payload, e->payload_len, &doc, err, sizeof err) != 0) return -1;
  long long peers = 0, height = 0;
  const struct json_value *ver = json_get_string(doc.root, "version");
  const struct json_value *up = json_get_number(doc.root, "uptime");
  bool ok = json_get_int(doc.root, "peers", 0, 1000000, &peers) &&
            json_get_int(doc.root, "height", 0, (1LL << 53), &height);
  if (ok) {
    p->status_at = now;
    p->status_peers = peers;
    p->status_height = height;
    p->status_uptime = up ? up->num : 0;
    snprintf(p->status_version, sizeof p->status_version, "%s", ver ? ver->str : "");
  }
  json_free(&doc);
  return 0; /* listeners (network.on) get it too */
}

void control_tick(struct netmgr *nm, double now) {
  double interval = nm->conf->pingInterval / 1000.0;
  double discovery = nm->conf->peerDiscoveryInterval / 1000.0;
  int want = nm->conf->maxOutbound < HUNGRY_OUTBOUND ? nm->conf->maxOutbound : HUNGRY_OUTBOUND;
  if (nm->n_outbound < want && discovery > HUNGRY_SPACING) discovery = HUNGRY_SPACING;
  for (struct peer *p = nm->peers; p; p = p->next) {
    if (p->state != PEER_ESTABLISHED) continue;
    if (now - p->last_rx > 3 * interval) {
      char label[64];
      log_at(LV_INFO, "peer_unresponsive", "peer=%s silent_s=%.1f", peer_label(p, label, sizeof label),
             now - p->last_rx);
      transport_close(p, 4008, "unresponsive");
      netmgr_unestablish(nm, p);
      continue;
    }
    if (now >= p->next_ping) {
      if (p->ping_sent_at > 0) netmgr_penalise(nm, p, BH_TIMEOUT); /* the last one went unanswered */
      p->next_ping = now + interval;
      send_ping(nm, p, now);
    }
    if (now >= p->next_exchange) {
      p->next_exchange = now + discovery;
      control_request_peers(nm, p);
    }
    if (now >= p->next_status) {
      p->next_status = now + STATUS_INTERVAL;
      send_status(nm, p, now);
    }
  }
}

static int invalid(struct netmgr *nm, struct peer *p, const char *why, int code) {
  char label[64];
  nm->stats.invalid_messages++;
  netmgr_penalise(nm, p, code == 4011 ? BH_SPAM : BH_INVALID_MESSAGE);
  log_at(LV_INFO, "invalid_message", "peer=%s why=%s", peer_label(p, label, sizeof label), why);
  if (code) {
    transport_close(p, code, why);
    netmgr_unestablish(nm, p);
    return -1;
  }
  return 0;
}

static int on_ping(struct netmgr *nm, struct peer *p, const struct envelope *e) {
  if (e->payload_len > PING_MAX_PAYLOAD) return invalid(nm, p, "ping larger than 256 bytes", 4012);
  struct json_doc doc;
  char err[96];
  if (json_parse((const char *)e->payload, e->payload_len, &doc, err, sizeof err) != 0)
    return invalid(nm, p, "ping is not valid JSON", 4012);
  long long nonce;
  const struct json_value *pong = json_get(doc.root, "pong");
  bool ok = json_get_int(doc.root, "nonce", 0, (1LL << 53), &nonce) && pong && pong->type == JSON_BOOL;
  bool is_pong = ok && pong->b;
  json_free(&doc);
  if (!ok) return invalid(nm, p, "ping without an integer nonce and a boolean pong", 4012);
  double now = log_monotonic();
  if (is_pong) {
    if (p->ping_sent_at > 0 && (uint64_t)nonce == p->ping_nonce) {
      p->rtt_ms = (now - p->ping_sent_at) * 1000.0;
      p->rtt_avg_ms = p->rtt_avg_ms > 0 ? 0.8 * p->rtt_avg_ms + 0.2 * p->rtt_ms : p->rtt_ms;
      p->ping_sent_at = 0;
      scoring_latency(&nm->scoring, p->id_hex, p->rtt_ms);
    }
    return 0;
  }
  if (!rate_allow(&p->ping_rate, PING_RATE, PING_BURST, now)) {
    if (++p->ping_excess > PING_EXCESS_LIMIT) return invalid(nm, p, "ping flood", 4011);
    return 0;
  }
  struct buf b = {0};
  buf_appendf(&b, "{\"nonce\":%lld,\"pong\":true}", nonce);
  netmgr_send_json(nm, p, MSG_PEER_PING, &b);
  buf_free(&b);
  return 0;
}

struct reply {
  struct buf b;
  int n, max;
  const struct peer *asker;
  struct netmgr *nm;
  char seen[EXCHANGE_MAX_ENTRIES][ENV_NODE_ID_LEN * 2 + 1];
};

static bool reply_has(const struct reply *r, const char *id) {
  for (int i = 0; i < r->n; i++)
    if (strcmp(r->seen[i], id) == 0) return true;
  return false;
}

static void reply_add(struct reply *r, const char *id, const char *url, double last_seen_ms,
                      bool validator, const struct cand *c, int nc) {
  if (r->n >= r->max || !url[0] || reply_has(r, id) || strcmp(id, r->asker->id_hex) == 0) return;
  snprintf(r->seen[r->n], sizeof r->seen[0], "%s", id);
  buf_appendf(&r->b, "%s{\"nodeId\":\"%s\",\"address\":", r->n ? "," : "", id);
  json_write_string(&r->b, url, strlen(url));
  buf_appendf(&r->b, ",\"lastSeen\":%.0f,\"validator\":%s", last_seen_ms,
              validator ? "true" : "false");
  if (nc > 0) { /* what it advertised itself (HELLO, nat_traversal) */
    buf_appendf(&r->b, ",\"candidates\":");
    cand_write_json(&r->b, c, nc);
  }
  buf_append(&r->b, "}", 1);
  r->n++;
}

static void answer_exchange(struct netmgr *nm, struct peer *p, int max) {
  struct reply r = {.max = max, .asker = p, .nm = nm};
  buf_appendf(&r.b, "{\"response\":true,\"peers\":[");
  double now_ms = netmgr_wallclock_ms();
  /* Connected peers first: they were reachable a moment ago. */
  for (struct peer *q = nm->peers; q && r.n < max; q = q->next) {
    if (q->state != PEER_ESTABLISHED || q == p) continue;
    char url[128];
    netmgr_peer_url(q, url, sizeof url);
    reply_add(&r, q->id_hex, url, now_ms, netmgr_is_validator(nm, q), q->hello.cands,
              q->hello.n_cands);
  }
  if (nm->store && r.n < max) {
    struct peer_record recs[EXCHANGE_MAX_ENTRIES];
    int n = peerstore_best(nm->store, recs, max, now_ms / 1000.0);
    for (int i = 0; i < n; i++)
      reply_add(&r, recs[i].node_id, recs[i].addrs[0], recs[i].last_seen * 1000.0, false, NULL,
                0);
  }
  buf_appendf(&r.b, "]}");
  netmgr_send_json(nm, p, MSG_PEER_EXCHANGE, &r.b);
  buf_free(&r.b);
}

/* An address from another node: ws:// or wss:// with a host and a port. */
static bool address_ok(const char *url) {
  bool tls;
  char host[256];
  int port;
  if (strlen(url) >= PEERSTORE_ADDR_LEN) return false;
  if (transport_parse_url(url, &tls, host, sizeof host, &port) != 0) return false;
  if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) return false;
  for (const char *c = host; *c; c++)
    if (!(isalnum((unsigned char)*c) || *c == '.' || *c == '-' || *c == ':' || *c == '_'))
      return false;
  return true;
}

static int learn_peers(struct netmgr *nm, struct peer *p, const struct json_value *list) {
  if (list == NULL || list->type != JSON_ARRAY) return invalid(nm, p, "exchange response without a peers list", 4012);
  if (list->len > EXCHANGE_MAX_ENTRIES) return invalid(nm, p, "exchange response with more than 64 peers", 4012);
  double now = netmgr_wallclock_ms() / 1000.0;
  int learned = 0, dropped = 0;
  for (size_t i = 0; i < list->len; i++) {
    const struct json_value *e = list->items[i];
    const struct json_value *id = json_get_string(e, "nodeId");
    const struct json_value *addr = json_get_string(e, "address");
    uint8_t raw[ENV_NODE_ID_LEN];
    if (id == NULL || addr == NULL || hex_decode(id->str, id->len, raw, sizeof raw) != 0 ||
        !address_ok(addr->str) || memcmp(raw, nm->me.id, sizeof raw) == 0) {
      dropped++;
      continue;
    }
    char hex[ENV_NODE_ID_LEN * 2 + 1];
    hex_encode(raw, sizeof raw, hex); /* normalise case */
    /* Optional candidates: malformed ones are skipped, the entry stays. */
    struct cand c[CAND_MAX];
    int bad, nc = cand_parse_json(json_get(e, "candidates"), c, CAND_MAX, &bad);
    if (nm->store && nc > 0) {
      turncand_learn(nm, hex, addr->str, c, nc, "exchange");
      learned++;
    } else if (nm->store && peerstore_add_address(nm->store, hex, addr->str, "exchange", now) == 0) {
      learned++;
    }
  }
  char label[64];
  log_at(LV_DEBUG, "peers_learned", "peer=%s learned=%d dropped=%d", peer_label(p, label, sizeof label),
         learned, dropped);
  return 0;
}

static int on_exchange(struct netmgr *nm, struct peer *p, const struct envelope *e) {
  if (e->payload_len > EXCHANGE_MAX_PAYLOAD) return invalid(nm, p, "exchange larger than 64 KiB", 4012);
  struct json_doc doc;
  char err[96];
  if (json_parse((const char *)e->payload, e->payload_len, &doc, err, sizeof err) != 0)
    return invalid(nm, p, "exchange is not valid JSON", 4012);
  int rc = 0;
  const struct json_value *req = json_get(doc.root, "request");
  const struct json_value *resp = json_get(doc.root, "response");
  if (req && req->type == JSON_BOOL && req->b) {
    long long max = EXCHANGE_REQUEST_MAX;
    if (json_get(doc.root, "max") && !json_get_int(doc.root, "max", 1, EXCHANGE_MAX_ENTRIES, &max)) {
      rc = invalid(nm, p, "exchange request max must be 1..64", 4012);
    } else if (!rate_allow(&p->exchange_rate, 1.0 / EXCHANGE_SPACING, 1, log_monotonic())) {
      nm->stats.invalid_messages++; /* too frequent: ignored, counted */
      netmgr_penalise(nm, p, BH_SPAM);
    } else {
      answer_exchange(nm, p, (int)max);
    }
  } else if (resp && resp->type == JSON_BOOL && resp->b) {
    if (!p->exchange_requested) {
      nm->stats.invalid_messages++; /* unsolicited: ignored, counted */
      netmgr_penalise(nm, p, BH_INVALID_MESSAGE);
    } else {
      p->exchange_requested = false;
      rc = learn_peers(nm, p, json_get(doc.root, "peers"));
    }
  } else {
    rc = invalid(nm, p, "exchange is neither a request nor a response", 4012);
  }
  json_free(&doc);
  return rc;
}

int control_on_message(struct netmgr *nm, struct peer *p, const struct envelope *e) {
  return e->type == MSG_PEER_PING ? on_ping(nm, p, e) : on_exchange(nm, p, e);
}
