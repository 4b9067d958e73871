/* peer: see peer.h. */
#include "peer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "log.h"

/* Per-peer bound on queued bytes. Large enough for a burst of maximum-size
 * blocks, small enough that a thousand stalled peers cannot exhaust memory. */
#define PEER_QUEUE_BYTES (8u << 20)
#define PEER_QUEUE_ITEMS 65536u

struct msgbuf *msgbuf_new(size_t len) {
  struct msgbuf *m = malloc(sizeof *m + len);
  if (m == NULL) return NULL;
  m->refs = 1;
  m->type = 0;
  m->len = (uint32_t)len;
  m->expires = 0;
  return m;
}

void msgbuf_ref(struct msgbuf *m) { m->refs++; }

void msgbuf_unref(struct msgbuf *m) {
  if (m && --m->refs == 0) free(m);
}

enum peer_class peer_class_of(int t) {
  switch (t) {
    case MSG_PEER_HANDSHAKE:
    case MSG_PEER_PING: return PC_CONTROL;
    case MSG_CONSENSUS_VOTE:
    case MSG_CONSENSUS_PROPOSAL:
    case MSG_VALIDATOR_SET: return PC_CONSENSUS;
    case MSG_BLOCK:
    case MSG_BLOCK_REQUEST: return PC_BLOCKS;
    case MSG_TRANSACTION:
    case MSG_TRANSACTION_REQUEST: return PC_TRANSACTIONS;
    default: return PC_OTHER;
  }
}

struct peer *peer_new(struct netmgr *nm, bool inbound) {
  struct peer *p = calloc(1, sizeof *p);
  if (p == NULL) return NULL;
  p->magic = PEER_MAGIC;
  p->nm = nm;
  p->inbound = inbound;
  p->created = log_monotonic();
  p->last_rx = p->created;
  return p;
}

static void q_clear(struct sendq *q) {
  for (unsigned i = 0; i < q->count; i++) msgbuf_unref(q->items[(q->head + i) % q->cap]);
  free(q->items);
  memset(q, 0, sizeof *q);
}

void peer_free(struct peer *p) {
  if (p == NULL) return;
  for (int c = 0; c < PC_COUNT; c++) q_clear(&p->q[c]);
  buf_free(&p->rx);
  hs_hello_free(&p->hello);
  free(p->have);
  free(p->ws_upgrade);
  SSL_free(p->ws_tls);
  free(p);
}

static int q_push(struct sendq *q, struct msgbuf *m) {
  if (q->count == q->cap) {
    unsigned cap = q->cap ? q->cap * 2 : 16;
    struct msgbuf **items = malloc(cap * sizeof *items);
    if (items == NULL) return -1;
    for (unsigned i = 0; i < q->count; i++) items[i] = q->items[(q->head + i) % q->cap];
    free(q->items);
    q->items = items;
    q->head = 0;
    q->cap = cap;
  }
  q->items[(q->head + q->count) % q->cap] = m;
  q->count++;
  return 0;
}

static struct msgbuf *q_front(const struct sendq *q) {
  return q->count ? q->items[q->head] : NULL;
}

static struct msgbuf *q_pop(struct sendq *q) {
  struct msgbuf *m = q->items[q->head];
  q->head = (q->head + 1) % q->cap;
  q->count--;
  if (q->count == 0 && q->cap > 64) { /* give a burst's memory back */
    free(q->items);
    q->items = NULL;
    q->cap = q->head = 0;
  }
  return m;
}

/* Drops the newest message of the lowest class below `above`. */
static bool shed_one(struct peer *p, enum peer_class above) {
  for (int c = PC_COUNT - 1; c > (int)above; c--) {
    struct sendq *q = &p->q[c];
    if (q->count == 0) continue;
    unsigned last = (q->head + q->count - 1) % q->cap;
    struct msgbuf *m = q->items[last];
    q->count--;
    p->q_bytes -= m->len;
    p->dropped++;
    msgbuf_unref(m);
    return true;
  }
  return false;
}

int peer_enqueue(struct peer *p, struct msgbuf *m) {
  enum peer_class c = peer_class_of(m->type);
  unsigned items = 0;
  for (int i = 0; i < PC_COUNT; i++) items += p->q[i].count;
  while (p->q_bytes + m->len > PEER_QUEUE_BYTES || items >= PEER_QUEUE_ITEMS) {
    if (!shed_one(p, c)) {
      /* Nothing less important to give up: either this message is dropped
       * (it is itself of the lowest classes) or the peer is not draining. */
      if (c >= PC_TRANSACTIONS) {
        p->dropped++;
        return 1;
      }
      return -1;
    }
    items--;
  }
  if (q_push(&p->q[c], m) != 0) return -1;
  msgbuf_ref(m);
  p->q_bytes += m->len;
  return 0;
}

bool peer_has_output(const struct peer *p) { return p->q_bytes > 0; }

size_t peer_pack_size(const struct peer *p, size_t max) {
  size_t n = 0;
  for (int c = 0; c < PC_COUNT; c++) {
    const struct sendq *q = &p->q[c];
    for (unsigned i = 0; i < q->count; i++) {
      const struct msgbuf *m = q->items[(q->head + i) % q->cap];
      if (n && n + m->len > max) return n;
      n += m->len;
      if (n >= max) return n;
    }
  }
  return n;
}

size_t peer_pack(struct peer *p, uint8_t *out, size_t max, double now) {
  size_t n = 0;
  for (int c = 0; c < PC_COUNT; c++) {
    struct sendq *q = &p->q[c];
    struct msgbuf *m;
    while ((m = q_front(q)) != NULL) {
      if (m->expires && m->expires < now) { /* never sent late */
        q_pop(q);
        p->q_bytes -= m->len;
        p->dropped++;
        msgbuf_unref(m);
        continue;
      }
      if (n && n + m->len > max) return n;
      memcpy(out + n, m->data, m->len);
      n += m->len;
      q_pop(q);
      p->q_bytes -= m->len;
      p->msgs_out++;
      p->type_out[m->type]++;
      msgbuf_unref(m);
      if (n >= max) return n;
    }
  }
  return n;
}

bool rate_allow(struct rate *r, double rate, double burst, double now) {
  if (r->last == 0) {
    r->tokens = burst;
  } else {
    r->tokens += (now - r->last) * rate;
    if (r->tokens > burst) r->tokens = burst;
  }
  r->last = now;
  if (r->tokens < 1) return false;
  r->tokens -= 1;
  return true;
}

const char *peer_label(const struct peer *p, char *buf, size_t cap) {
  snprintf(buf, cap, "%s#%u", p->id_hex[0] ? p->id_hex : (p->inbound ? "in" : "out"), p->serial);
  return buf;
}
