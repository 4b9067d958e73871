/* sync: see sync.h. Peers are remembered by node id, never by pointer: a
 * peer may go away between a request and its answer. */
#include "sync.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "chain.h"
#include "chain_jcs.h"
#include "log.h"
#include "netmgr.h"
#include "scoring.h"

#define SERVE_RATE 20.0  /* requests per second a peer may make of us */
#define SERVE_BURST 40.0
#define AVOID_BAD 120.0  /* seconds a peer that lied is not asked */
#define AVOID_TIMEOUT 30.0
#define AVOID_FORK 60.0
#define TX_TIMEOUT 10.0
#define MAX_TX_REQUESTS 4

int sync_init(struct sync *s, struct netmgr *nm, const struct bt2c_blockchain_store *store,
              size_t max_block, size_t max_payload) {
  memset(s, 0, sizeof *s);
  s->nm = nm;
  s->store = store;
  s->max_block = max_block;
  s->max_payload = max_payload;
  s->timeout = 5.0;
  /* Random ids: two nodes asking the same peer for the same range must not
   * send identical payloads, or its duplicate filter drops the second. */
  uint8_t r[6];
  RAND_bytes(r, sizeof r);
  for (int i = 0; i < 6; i++) s->next_id = s->next_id << 8 | r[i];
  s->window = calloc(SYNC_WINDOW, sizeof *s->window);
  return s->window ? 0 : -1;
}

static void slot_free(struct sync *s, struct sync_slot *sl) {
  if (!sl->used) return;
  s->window_bytes -= sl->b.json_len;
  s->buffered--;
  chain_block_free(&sl->b);
  sl->used = false;
}

void sync_free(struct sync *s) {
  if (s->window)
    for (int i = 0; i < SYNC_WINDOW; i++) slot_free(s, &s->window[i]);
  free(s->window);
  s->window = NULL;
}

static double unix_now(void) { return netmgr_wallclock_ms() / 1000.0; }

/* ---- peers -------------------------------------------------------------------- */

static struct peer *connected(const struct sync *s, const char *id) {
  struct peer *p = netmgr_find_hex(s->nm, id);
  return p && p->counted && p->state == PEER_ESTABLISHED ? p : NULL;
}

static struct sync_peer *find_peer(struct sync *s, const char *id, bool create) {
  struct sync_peer *free_slot = NULL, *stale = NULL;
  for (int i = 0; i < SYNC_MAX_PEERS; i++) {
    struct sync_peer *sp = &s->peers[i];
    if (sp->used && strcmp(sp->id, id) == 0) return sp;
    if (!sp->used && !free_slot) free_slot = sp;
    if (sp->used && !stale && sp->in_flight == 0 && !connected(s, sp->id)) stale = sp;
  }
  if (!create) return NULL;
  struct sync_peer *sp = free_slot ? free_slot : stale;
  if (sp == NULL) return NULL;
  memset(sp, 0, sizeof *sp);
  snprintf(sp->id, sizeof sp->id, "%s", id);
  sp->used = true;
  return sp;
}

void sync_saw_height(struct sync *s, const char *peer_id, long long height) {
  struct sync_peer *sp = find_peer(s, peer_id, true);
  if (sp && height > sp->height) sp->height = height;
}

static void event(struct sync *s, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void event(struct sync *s, const char *name, const char *fmt, ...) {
  if (s->event == NULL) return;
  char json[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(json, sizeof json, fmt, ap);
  va_end(ap);
  s->event(s->ud, name, json);
}

/* A provably wrong answer: the sender is scored down and rested. */
static void blame(struct sync *s, struct peer *p, bool blocks, const char *why) {
  struct sync_peer *sp = find_peer(s, p->id_hex, true);
  double now = log_monotonic();
  if (sp) {
    sp->bad++;
    sp->avoid_until = now + AVOID_BAD;
  }
  s->bad_responses++;
  char label[64];
  log_at(LV_WARN, "sync_bad_response", "peer=%s kind=%s why=%s", peer_label(p, label, sizeof label),
         blocks ? "blocks" : "transactions", why);
  event(s, "sync_bad_response", "{\"peer\":\"%s\",\"kind\":\"%s\"}", p->id_hex,
        blocks ? "blocks" : "transactions");
  if (blocks) scoring_block(&s->nm->scoring, p->score, DELIVERY_INVALID);
  else scoring_transaction(&s->nm->scoring, p->score, DELIVERY_INVALID);
}

/* ---- the window ----------------------------------------------------------------- */

static struct sync_slot *slot_at(struct sync *s, long long h) {
  struct sync_slot *sl = &s->window[h % SYNC_WINDOW];
  return sl->used && sl->b.height == h ? sl : NULL;
}

/* Keeps b (taking it) if it fits the window; otherwise frees it. An
 * announcement nobody asked for is kept only close to the tip: a peer must
 * not fill the window with blocks of its own making. */
static void keep(struct sync *s, struct bt2c_block *b, const char *peer, bool solicited) {
  long long tip = s->store->height(s->store->ctx);
  struct sync_slot *sl = &s->window[b->height % SYNC_WINDOW];
  long long ahead = solicited ? SYNC_WINDOW : SYNC_AHEAD;
  if (sl->used && sl->b.height <= tip) slot_free(s, sl); /* the tip passed it by another way */
  if (b->height <= tip || b->height > tip + ahead || sl->used ||
      s->window_bytes + b->json_len > SYNC_WINDOW_BYTES) {
    chain_block_free(b);
    return;
  }
  sl->b = *b;
  memset(b, 0, sizeof *b);
  snprintf(sl->peer, sizeof sl->peer, "%s", peer);
  sl->solicited = solicited;
  sl->used = true;
  s->window_bytes += sl->b.json_len;
  s->buffered++;
}

/* Drops every block of the window that came from `peer`. */
static void drop_from(struct sync *s, const char *peer) {
  for (int i = 0; i < SYNC_WINDOW; i++)
    if (s->window[i].used && strcmp(s->window[i].peer, peer) == 0) slot_free(s, &s->window[i]);
}

static void check_done(struct sync *s) {
  long long tip = s->store->height(s->store->ctx);
  if (!s->syncing || tip < s->target) return;
  s->syncing = false;
  s->completed_at = unix_now();
  log_at(LV_INFO, "sync_completed", "height=%lld blocks=%lld seconds=%.2f", tip,
         tip - s->started_height, s->completed_at - s->started_at);
  event(s, "sync_completed", "{\"height\":%lld,\"seconds\":%.3f}", tip,
        s->completed_at - s->started_at);
  /* a node that was behind has likely missed pending transactions too */
  int asked = 0;
  for (int i = 0; i < SYNC_MAX_PEERS && asked < 2; i++) {
    struct peer *p = s->peers[i].used && s->peers[i].avoid_until <= log_monotonic()
                         ? connected(s, s->peers[i].id) : NULL;
    if (p) {
      sync_request_mempool(s, p);
      asked++;
    }
  }
}

void sync_drain(struct sync *s) {
  const struct bt2c_blockchain_store *st = s->store;
  bool batch = false;
  for (;;) {
    long long h = st->height(st->ctx) + 1;
    struct sync_slot *sl = slot_at(s, h);
    if (sl == NULL) break;
    if (!batch && st->begin) st->begin(st->ctx);
    batch = true;
    int rc = s->apply(s->ud, &sl->b, sl->peer);
    if (rc == 0) {
      s->blocks_applied++;
      slot_free(s, sl);
      continue;
    }
    /* It does not extend our tip (a fork: who is wrong cannot be told, so
     * nobody is blamed) or the validators refused it (its sender is, if it
     * answered our request; a relayed announcement is nobody's in
     * particular and is just dropped). */
    if (!sl->solicited) {
      slot_free(s, sl);
      break;
    }
    char peer[BT2C_ID_HEX + 1];
    snprintf(peer, sizeof peer, "%s", sl->peer);
    struct sync_peer *sp = find_peer(s, peer, true);
    if (sp) sp->avoid_until = log_monotonic() + (rc < 0 ? AVOID_BAD : AVOID_FORK);
    log_at(LV_WARN, rc < 0 ? "sync_block_refused" : "sync_fork", "peer=%s height=%lld hash=%s",
           peer, sl->b.height, sl->b.hash);
    struct peer *p = rc < 0 ? connected(s, peer) : NULL;
    if (p) scoring_block(&s->nm->scoring, p->score, DELIVERY_INVALID);
    drop_from(s, peer);
    break;
  }
  if (batch && st->commit) st->commit(st->ctx);
  check_done(s);
}

void sync_on_future_block(struct sync *s, struct bt2c_block *b, const char *peer_id) {
  sync_saw_height(s, peer_id, b->height);
  keep(s, b, peer_id, false);
}

/* ---- requests ------------------------------------------------------------------- */

static bool covered(const struct sync *s, long long h) {
  for (size_t i = 0; i < sizeof s->req / sizeof s->req[0]; i++) {
    const struct sync_request *r = &s->req[i];
    if (r->used && !r->tx && r->from <= h && h <= r->to) return true;
  }
  return false;
}

static int count_requests(const struct sync *s, bool tx) {
  int n = 0;
  for (size_t i = 0; i < sizeof s->req / sizeof s->req[0]; i++)
    n += s->req[i].used && s->req[i].tx == tx;
  return n;
}

static struct sync_request *new_request(struct sync *s) {
  for (size_t i = 0; i < sizeof s->req / sizeof s->req[0]; i++)
    if (!s->req[i].used) return &s->req[i];
  return NULL;
}

static void end_request(struct sync *s, struct sync_request *r) {
  struct sync_peer *sp = find_peer(s, r->peer, false);
  if (sp && sp->in_flight > 0) sp->in_flight--;
  r->used = false;
}

/* The peer to ask for blocks from h: connected, claims h, not resting, the
 * least busy, the longest not asked. */
static struct sync_peer *choose(struct sync *s, long long h, double now) {
  struct sync_peer *best = NULL;
  for (int i = 0; i < SYNC_MAX_PEERS; i++) {
    struct sync_peer *sp = &s->peers[i];
    if (!sp->used || sp->height < h || sp->avoid_until > now || sp->in_flight >= SYNC_PER_PEER ||
        !connected(s, sp->id))
      continue;
    if (best == NULL || sp->in_flight < best->in_flight ||
        (sp->in_flight == best->in_flight && sp->last_asked < best->last_asked))
      best = sp;
  }
  return best;
}

/* Sends one request for the first missing range; false when there is
 * nothing to ask or nobody to ask. */
static bool request_next(struct sync *s, double now) {
  if (count_requests(s, false) >= SYNC_MAX_INFLIGHT || s->window_bytes > SYNC_WINDOW_BYTES)
    return false;
  long long tip = s->store->height(s->store->ctx);
  long long limit = s->target < tip + SYNC_WINDOW ? s->target : tip + SYNC_WINDOW;
  long long h = tip + 1;
  while (h <= limit && (slot_at(s, h) || covered(s, h))) h++;
  if (h > limit) return false;
  struct sync_peer *sp = choose(s, h, now);
  struct peer *p = sp ? connected(s, sp->id) : NULL;
  struct sync_request *r = new_request(s);
  if (p == NULL || r == NULL) return false;
  long long end = h;
  long long cap = h + SYNC_BATCH - 1;
  if (cap > limit) cap = limit;
  if (cap > sp->height) cap = sp->height;
  while (end + 1 <= cap && !slot_at(s, end + 1) && !covered(s, end + 1)) end++;
  char payload[128];
  int len = snprintf(payload, sizeof payload,
                     "{\"fromHeight\":%lld,\"requestId\":%llu,\"toHeight\":%lld}", h,
                     (unsigned long long)s->next_id, end);
  if (netmgr_send(s->nm, p, MSG_BLOCK_REQUEST, payload, (size_t)len) <= 0) return false;
  *r = (struct sync_request){.id = s->next_id++, .from = h, .to = end, .deadline = now + s->timeout,
                             .used = true};
  snprintf(r->peer, sizeof r->peer, "%s", sp->id);
  sp->in_flight++;
  sp->last_asked = now;
  s->requests_sent++;
  log_at(LV_DEBUG, "sync_request", "peer=%s from=%lld to=%lld id=%llu", sp->id, h, end,
         (unsigned long long)r->id);
  return true;
}

static void update_target(struct sync *s, double now) {
  long long target = 0;
  for (int i = 0; i < SYNC_MAX_PEERS; i++) {
    const struct sync_peer *sp = &s->peers[i];
    if (sp->used && sp->height > target && connected(s, sp->id)) target = sp->height;
  }
  s->target = target;
  long long tip = s->store->height(s->store->ctx);
  if (target <= tip) {
    s->behind_since = 0;
    return;
  }
  if (s->behind_since == 0) s->behind_since = now;
  /* a small gap is usually gossip out of order: give it a moment to fill */
  bool small = target - tip <= SYNC_AHEAD && now - s->behind_since < SYNC_GRACE;
  if (!s->syncing && !small) {
    s->syncing = true;
    s->started_at = unix_now();
    s->started_height = tip;
    int peers = 0;
    for (int i = 0; i < SYNC_MAX_PEERS; i++)
      peers += s->peers[i].used && connected(s, s->peers[i].id);
    log_at(LV_INFO, "sync_started", "height=%lld target=%lld peers=%d", tip, target, peers);
    event(s, "sync_started", "{\"height\":%lld,\"target\":%lld}", tip, target);
  }
}

void sync_tick(struct sync *s, double now) {
  for (size_t i = 0; i < sizeof s->req / sizeof s->req[0]; i++) {
    struct sync_request *r = &s->req[i];
    if (!r->used) continue;
    if (!r->tx && !connected(s, r->peer)) { /* it left: ask someone else now */
      end_request(s, r);
      continue;
    }
    if (r->deadline > now) continue;
    if (!r->tx) {
      struct sync_peer *sp = find_peer(s, r->peer, false);
      if (sp) {
        sp->timeouts++;
        sp->avoid_until = now + AVOID_TIMEOUT;
      }
      s->timeouts++;
      log_at(LV_INFO, "sync_timeout", "peer=%s from=%lld to=%lld after_s=%.1f", r->peer, r->from,
             r->to, s->timeout);
      scoring_record(&s->nm->scoring, r->peer, BH_TIMEOUT);
    }
    end_request(s, r);
  }
  for (int i = 0; i < SYNC_WINDOW; i++) { /* blocks the tip passed by another way */
    struct sync_slot *sl = &s->window[i];
    if (sl->used && sl->b.height <= s->store->height(s->store->ctx)) slot_free(s, sl);
  }
  sync_drain(s);
  update_target(s, now);
  while (s->syncing && request_next(s, now)) {
  }
  check_done(s);
}

void sync_peer_ready(struct sync *s, struct peer *p) {
  struct sync_peer *sp = find_peer(s, p->id_hex, true);
  if (sp == NULL) return;
  sp->height = p->hello.height > 0 ? p->hello.height : 0;
}

/* ---- answers to our requests ------------------------------------------------------- */

static struct sync_request *find_request(struct sync *s, uint64_t id, const char *peer, bool tx) {
  for (size_t i = 0; i < sizeof s->req / sizeof s->req[0]; i++) {
    struct sync_request *r = &s->req[i];
    if (r->used && r->id == id && r->tx == tx && strcmp(r->peer, peer) == 0) return r;
  }
  return NULL;
}

int sync_on_blocks(struct sync *s, struct peer *p, const struct json_value *v) {
  long long rid;
  const struct json_value *list = json_get(v, "blocks");
  if (!json_get_int(v, "requestId", 0, (long long)CHAIN_MAX_INT, &rid) || list == NULL ||
      list->type != JSON_ARRAY) {
    blame(s, p, true, "a block response needs requestId and a blocks array");
    return -1;
  }
  struct sync_request *r = find_request(s, (uint64_t)rid, p->id_hex, false);
  if (r == NULL) return 0; /* late (timed out) or not ours: ignored */
  long long from = r->from, to = r->to;
  end_request(s, r);
  struct sync_peer *sp = find_peer(s, p->id_hex, true);
  if (list->len == 0) { /* it does not have them (any more): ask someone else */
    s->empty_responses++;
    if (sp && sp->height >= from) sp->height = from - 1;
    return 0;
  }
  if ((long long)list->len > to - from + 1) {
    blame(s, p, true, "more blocks than asked for");
    return -1;
  }
  size_t n = list->len;
  struct bt2c_block *got = calloc(n, sizeof *got);
  if (got == NULL) abort();
  char why[300] = "";
  size_t ok = 0;
  for (; ok < n; ok++) {
    char err[256];
    if (chain_block_check(list->items[ok], s->max_block, &got[ok], err, sizeof err) != 0) {
      snprintf(why, sizeof why, "%s", err);
      break;
    }
    if (got[ok].height != from + (long long)ok) {
      snprintf(why, sizeof why, "block %zu has height %lld, asked for %lld", ok, got[ok].height,
               from + (long long)ok);
      ok++;
      break;
    }
    if (ok > 0 && strcmp(got[ok].previous_hash, got[ok - 1].hash) != 0) {
      snprintf(why, sizeof why, "block %lld does not follow block %lld", got[ok].height,
               got[ok - 1].height);
      ok++;
      break;
    }
  }
  if (why[0]) {
    for (size_t i = 0; i < ok && i < n; i++) chain_block_free(&got[i]);
    free(got);
    blame(s, p, true, why);
    return -1;
  }
  s->blocks_received += n;
  if (sp) {
    sp->served += n;
    if (got[n - 1].height > sp->height) sp->height = got[n - 1].height;
  }
  for (size_t i = 0; i < n; i++) keep(s, &got[i], p->id_hex, true);
  free(got);
  sync_drain(s);
  return 0;
}

int sync_on_transactions(struct sync *s, struct peer *p, const struct json_value *v) {
  long long rid;
  const struct json_value *list = json_get(v, "transactions");
  if (!json_get_int(v, "requestId", 0, (long long)CHAIN_MAX_INT, &rid) || list == NULL ||
      list->type != JSON_ARRAY || list->len > SYNC_MAX_TX) {
    blame(s, p, false, "a transaction response needs requestId and a transactions array");
    return -1;
  }
  struct sync_request *r = find_request(s, (uint64_t)rid, p->id_hex, true);
  if (r == NULL) return 0;
  end_request(s, r);
  for (size_t i = 0; i < list->len; i++) {
    struct buf canon = {0};
    struct bt2c_transaction t;
    char err[256];
    if (chain_tx_check(list->items[i], &canon, t.hash, err, sizeof err) != 0) {
      buf_free(&canon);
      blame(s, p, false, err);
      return -1;
    }
    t.json = canon.data;
    t.json_len = canon.len;
    if (s->add_tx) s->add_tx(s->ud, &t, p->id_hex);
    s->tx_received++;
    buf_free(&canon);
  }
  return 0;
}

static struct sync_request *tx_request(struct sync *s, struct peer *p) {
  if (count_requests(s, true) >= MAX_TX_REQUESTS) return NULL;
  struct sync_request *r = new_request(s);
  if (r == NULL) return NULL;
  *r = (struct sync_request){.id = s->next_id++, .from = 1, .to = 0, .tx = true, .used = true,
                             .deadline = log_monotonic() + TX_TIMEOUT};
  snprintf(r->peer, sizeof r->peer, "%s", p->id_hex);
  s->tx_requests_sent++;
  return r;
}

void sync_request_mempool(struct sync *s, struct peer *p) {
  struct sync_request *r = tx_request(s, p);
  if (r == NULL) return;
  char payload[96];
  int len = snprintf(payload, sizeof payload, "{\"max\":%d,\"mempool\":true,\"requestId\":%llu}",
                     SYNC_MAX_TX, (unsigned long long)r->id);
  if (netmgr_send(s->nm, p, MSG_TRANSACTION_REQUEST, payload, (size_t)len) <= 0) r->used = false;
}

int sync_request_transactions(struct sync *s, const char (*hashes)[BT2C_HASH_HEX + 1], int n,
                              int fanout) {
  int sent = 0;
  for (struct peer *p = s->nm->peers; p && sent < fanout; p = p->next) {
    if (!p->counted || p->state != PEER_ESTABLISHED) continue;
    struct sync_request *r = tx_request(s, p);
    if (r == NULL) break;
    struct buf b = {0};
    buf_append(&b, "{\"hashes\":[", 11);
    for (int i = 0; i < n && i < SYNC_MAX_TX; i++)
      buf_appendf(&b, "%s\"%s\"", i ? "," : "", hashes[i]);
    buf_appendf(&b, "],\"requestId\":%llu}", (unsigned long long)r->id);
    if (netmgr_send(s->nm, p, MSG_TRANSACTION_REQUEST, b.data, b.len) > 0) sent++;
    else r->used = false;
    buf_free(&b);
  }
  return sent;
}

/* ---- serving ------------------------------------------------------------------------ */

static bool may_serve(struct sync *s, struct peer *p) {
  struct sync_peer *sp = find_peer(s, p->id_hex, true);
  if (sp == NULL || rate_allow(&sp->serve_rate, SERVE_RATE, SERVE_BURST, log_monotonic()))
    return true;
  log_at(LV_DEBUG, "sync_request_ignored", "peer=%s why=%s", p->id_hex, "rate limit");
  return false;
}

/* The fault injector: the same block with another timestamp, so its hash
 * no longer matches. */
static void corrupt_block(struct buf *b) {
  struct json_doc doc;
  char err[64];
  if (json_parse(b->data, b->len, &doc, err, sizeof err) != 0) return;
  for (size_t i = 0; i < doc.root->len; i++)
    if (doc.root->members[i].key_len == 9 && memcmp(doc.root->members[i].key, "timestamp", 9) == 0)
      doc.root->members[i].value->num += 1;
  buf_reset(b);
  jcs_canonical(b, doc.root, NULL, err, sizeof err);
  json_free(&doc);
}

/* Appends block text to the response unless it would outgrow it. */
static bool add_block(struct sync *s, struct buf *resp, struct buf *blk, int k) {
  if (s->corrupt) corrupt_block(blk);
  if (resp->len + blk->len + 64 > s->max_payload) return false;
  if (k) buf_append(resp, ",", 1);
  buf_append(resp, blk->data, blk->len);
  return true;
}

int sync_serve_blocks(struct sync *s, struct peer *p, const struct json_value *v) {
  long long rid, from = 0, to = -1;
  const struct json_value *hashes = json_get(v, "hashes");
  if (!json_get_int(v, "requestId", 0, (long long)CHAIN_MAX_INT, &rid)) return -1;
  if (hashes) {
    if (hashes->type != JSON_ARRAY || hashes->len > SYNC_BATCH) return -1;
    for (size_t i = 0; i < hashes->len; i++)
      if (hashes->items[i]->type != JSON_STRING || hashes->items[i]->len != BT2C_HASH_HEX)
        return -1;
  } else if (!json_get_int(v, "fromHeight", 0, (long long)CHAIN_MAX_INT, &from) ||
             !json_get_int(v, "toHeight", 0, (long long)CHAIN_MAX_INT, &to) || to < from) {
    return -1;
  }
  if (s->silent || !may_serve(s, p)) return 0;
  const struct bt2c_blockchain_store *st = s->store;
  struct buf resp = {0}, blk = {0};
  buf_append(&resp, "{\"blocks\":[", 11);
  int k = 0;
  if (hashes) {
    for (size_t i = 0; i < hashes->len; i++) {
      char h[BT2C_HASH_HEX + 1];
      uint8_t raw[32];
      if (hex_decode(hashes->items[i]->str, BT2C_HASH_HEX, raw, sizeof raw) != 0) continue;
      hex_encode(raw, sizeof raw, h);
      buf_reset(&blk);
      if (st->get_block(st->ctx, -1, h, &blk) != 0) continue;
      if (!add_block(s, &resp, &blk, k)) break;
      k++;
    }
  } else {
    long long tip = st->height(st->ctx);
    if (to > tip) to = tip;
    if (to > from + SYNC_BATCH - 1) to = from + SYNC_BATCH - 1;
    for (long long h = from; h <= to; h++) {
      buf_reset(&blk);
      if (st->get_block(st->ctx, h, NULL, &blk) != 0) break;
      if (!add_block(s, &resp, &blk, k)) break;
      k++;
    }
  }
  buf_appendf(&resp, "],\"requestId\":%lld}", rid);
  netmgr_send(s->nm, p, MSG_BLOCK, resp.data, resp.len);
  s->served_requests++;
  s->served_blocks += (uint64_t)k;
  buf_free(&resp);
  buf_free(&blk);
  return 0;
}

struct tx_reply {
  struct sync *s;
  struct buf *resp;
  int k;
};

static int add_tx_text(void *ud, const struct bt2c_transaction *t) {
  struct tx_reply *r = ud;
  if (r->resp->len + t->json_len + 64 > r->s->max_payload) return 1;
  if (r->k++) buf_append(r->resp, ",", 1);
  buf_append(r->resp, t->json, t->json_len);
  return 0;
}

int sync_serve_transactions(struct sync *s, struct peer *p, const struct json_value *v) {
  long long rid, max = SYNC_MAX_TX;
  const struct json_value *hashes = json_get(v, "hashes");
  const struct json_value *pool = json_get(v, "mempool");
  if (!json_get_int(v, "requestId", 0, (long long)CHAIN_MAX_INT, &rid)) return -1;
  if (hashes) {
    if (hashes->type != JSON_ARRAY || hashes->len > SYNC_MAX_TX) return -1;
  } else if (pool == NULL || pool->type != JSON_BOOL || !pool->b ||
             (json_get(v, "max") && !json_get_int(v, "max", 1, SYNC_MAX_TX, &max))) {
    return -1;
  }
  if (!may_serve(s, p)) return 0;
  const struct bt2c_blockchain_store *st = s->store;
  struct buf resp = {0}, tx = {0};
  buf_appendf(&resp, "{\"requestId\":%lld,\"transactions\":[", rid);
  struct tx_reply r = {s, &resp, 0};
  if (hashes) {
    for (size_t i = 0; i < hashes->len; i++) {
      const struct json_value *h = hashes->items[i];
      uint8_t raw[32];
      char hex[BT2C_HASH_HEX + 1];
      if (h->type != JSON_STRING || hex_decode(h->str, h->len, raw, sizeof raw) != 0) continue;
      hex_encode(raw, sizeof raw, hex);
      buf_reset(&tx);
      if (st->get_transaction(st->ctx, hex, &tx) != 0) continue;
      struct bt2c_transaction t = {.json = tx.data, .json_len = tx.len};
      if (add_tx_text(&r, &t)) break;
    }
  } else if (st->pending) {
    st->pending(st->ctx, (int)max, add_tx_text, &r);
  }
  buf_append(&resp, "]}", 2);
  netmgr_send(s->nm, p, MSG_TRANSACTION, resp.data, resp.len);
  s->served_requests++;
  buf_free(&resp);
  buf_free(&tx);
  return 0;
}

void sync_get_status(const struct sync *s, struct bt2c_sync_status *out) {
  memset(out, 0, sizeof *out);
  double now = log_monotonic();
  out->height = s->store->height(s->store->ctx);
  out->target = s->target > out->height ? s->target : out->height;
  out->syncing = s->syncing;
  for (int i = 0; i < SYNC_MAX_PEERS; i++)
    out->peers +=
        s->peers[i].used && s->peers[i].avoid_until <= now && connected(s, s->peers[i].id);
  out->requests_in_flight = count_requests(s, false);
  out->buffered = s->buffered;
  out->blocks_received = s->blocks_received;
  out->blocks_applied = s->blocks_applied;
  out->requests_sent = s->requests_sent;
  out->bad_responses = s->bad_responses;
  out->timeouts = s->timeouts;
  out->empty_responses = s->empty_responses;
  out->served_requests = s->served_requests;
  out->served_blocks = s->served_blocks;
  out->started_at = s->started_at;
  out->completed_at = s->completed_at;
}
