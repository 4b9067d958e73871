/* relay: see relay.h. */
#include "relay.h"

#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

#include "json.h"
#include "log.h"
#include "netmgr.h"
#include "peer.h"
#include "policy.h"
#include "scoring.h"

/* SELECTIVE with no peer at the threshold falls back to this many of the
 * best eligible peers (not below neutral), so a young network propagates. */
#define SELECTIVE_FALLBACK 3
#define MODES_REFRESH_SECONDS 10.0
#define DIRECT_TIMEOUT_SECONDS 5.0

static const char *const drop_names[DROP_COUNT] = {
    "hops", "bad_id", "bad_json", "no_target", "not_relayable", "queue", "refused"};

const char *relay_drop_name(enum relay_drop d) {
  return (unsigned)d < DROP_COUNT ? drop_names[d] : "?";
}

static bool relayable(int type) {
  return type == MSG_BLOCK || type == MSG_TRANSACTION || type == MSG_CONSENSUS_VOTE ||
         type == MSG_CONSENSUS_PROPOSAL || type == MSG_VALIDATOR_SET;
}

/* Envelopes stay fetchable for announcements this long. */
#define PULL_WINDOW 5.0
#define PULL_CACHE 8192
#define PULL_CACHE_BYTES (32u << 20)

int relay_init(struct relay *r, struct netmgr *nm, const struct conf *c) {
  memset(r, 0, sizeof *r);
  r->nm = nm;
  r->conf = c;
  RAND_bytes((unsigned char *)&r->rng, sizeof r->rng);
  if (pull_init(&r->pull, PULL_CACHE, PULL_CACHE_BYTES, PULL_WINDOW) != 0) return -1;
  if (seen_init(&r->seen, c->messageRelay.seenCacheSize,
                c->messageRelay.messageExpiration / 1000.0) != 0) {
    pull_free(&r->pull);
    return -1;
  }
  return 0;
}

void relay_free(struct relay *r) {
  pull_free(&r->pull);
  seen_free(&r->seen);
}

void relay_invalidate_modes(struct relay *r) { r->modes_valid = false; }

static void refresh_modes(struct relay *r) {
  struct netmgr *nm = r->nm;
  struct policy_scoring_params sp;
  policy_scoring_params(nm->policy, &sp);
  struct policy_relay_situation sit = {0};
  for (struct peer *p = nm->peers; p; p = p->next) {
    if (!p->counted) continue;
    sit.peers++;
    if (netmgr_is_validator(nm, p)) sit.validators++;
    if (p->score && p->score->total >= sp.trusted) sit.trusted++;
  }
  for (int t = MSG_BLOCK; t < MSG_TYPE_COUNT; t++)
    r->modes[t] = policy_relay_select_mode(nm->policy, env_type_name(t), &sit);
  r->modes_valid = true;
  r->modes_at = log_monotonic();
}

enum relay_mode relay_mode_of(struct relay *r, int type) {
  if (!r->modes_valid) refresh_modes(r);
  return r->modes[type];
}

static bool on_path(const struct envelope *e, const uint8_t id[ENV_NODE_ID_LEN]) {
  for (int i = 0; i < e->path_len; i++)
    if (memcmp(e->path + (size_t)i * ENV_NODE_ID_LEN, id, ENV_NODE_ID_LEN) == 0) return true;
  return false;
}

#define MAX_SELECT 1024

static uint64_t next_random(uint64_t *state) { /* xorshift64* */
  uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ULL;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 2685821657736338717ULL;
}

static bool eligible(const struct relay_candidate *c, const struct envelope *e) {
  return !c->from && memcmp(c->id, e->origin, ENV_NODE_ID_LEN) != 0 && !on_path(e, c->id);
}

int relay_select(const struct relay_candidate *c, int n, const struct envelope *e,
                 const struct relay_choice *how, int *out, int cap) {
  int k = 0;
  switch (how->mode) {
    case RELAY_FLOOD:
      for (int i = 0; i < n && k < cap; i++)
        if (eligible(&c[i], e)) out[k++] = i;
      return k;
    case RELAY_VALIDATOR_ONLY:
      for (int i = 0; i < n && k < cap; i++)
        if (eligible(&c[i], e) && c[i].validator) out[k++] = i;
      return k;
    case RELAY_SELECTIVE: break;
  }
  /* A random `fanout` of the eligible peers at or above the threshold,
   * trusted ones first; when none qualifies, as in a young network, a random
   * few not below neutral. Random, so no peer is left out message after
   * message (a fixed "best few" would starve the others of everything). */
  int limit = how->fanout > 0 ? how->fanout : SELECTIVE_FALLBACK;
  if (limit > cap) limit = cap;
  for (int pass = 0; pass < 3 && k < limit; pass++) {
    if (pass == 2 && k) break; /* the fallback only when nobody qualified */
    int pool[MAX_SELECT];
    int m = 0;
    for (int i = 0; i < n && m < MAX_SELECT; i++) {
      if (!eligible(&c[i], e)) continue;
      bool trusted = c[i].score >= how->trusted;
      bool ok = pass == 0 ? trusted
              : pass == 1 ? !trusted && c[i].score >= how->threshold
                          : c[i].score >= how->neutral;
      if (ok) pool[m++] = i;
    }
    int want = pass == 2 ? (SELECTIVE_FALLBACK < limit ? SELECTIVE_FALLBACK : limit) : limit;
    while (m > 0 && k < want) { /* partial Fisher-Yates */
      int j = (int)(next_random(how->rng) % (uint64_t)m);
      out[k++] = pool[j];
      pool[j] = pool[--m];
    }
  }
  return k;
}

#define MAX_TARGETS 1024

/* Picks the targets of e (from `from`, NULL when we originate it) under mode
 * m into out; returns how many. */
static int select_targets(struct relay *r, const struct peer *from, const struct envelope *e,
                          enum relay_mode m, struct peer **out, int cap) {
  struct netmgr *nm = r->nm;
  if (e->target) { /* direct: the target itself when connected */
    struct peer *t = netmgr_find(nm, e->target);
    if (t && t->counted && t != from) {
      out[0] = t;
      return 1;
    }
    m = RELAY_FLOOD; /* otherwise bounded flooding toward it */
  }
  struct relay_candidate cand[MAX_TARGETS];
  struct peer *peers[MAX_TARGETS];
  int n = 0;
  for (struct peer *q = nm->peers; q && n < MAX_TARGETS; q = q->next) {
    if (!q->counted) continue;
    cand[n] = (struct relay_candidate){q->id, q->score ? q->score->total : 0, q->validator, q == from};
    peers[n++] = q;
  }
  struct policy_scoring_params sp;
  policy_scoring_params(nm->policy, &sp);
  struct relay_choice how = {m, policy_relay_threshold(nm->policy),
                             policy_relay_fanout(nm->policy), sp.trusted, sp.neutral, &r->rng};
  int idx[MAX_TARGETS];
  int k = relay_select(cand, n, e, &how, idx, cap < MAX_TARGETS ? cap : MAX_TARGETS);
  for (int i = 0; i < k; i++) out[i] = peers[idx[i]];
  return k;
}

static void forward(struct relay *r, struct peer *from, const struct envelope *e);

/* SELECTIVE sent m to `targets` only: the other eligible peers hear of its
 * id (they fetch it if they lack it), and m stays fetchable for a while. */
static void announce_rest(struct relay *r, const struct peer *from, const struct envelope *e,
                          struct peer **targets, int n, struct msgbuf *m) {
  struct netmgr *nm = r->nm;
  double now = log_monotonic();
  bool any = false;
  for (struct peer *q = nm->peers; q; q = q->next) {
    if (!q->counted || q == from || memcmp(q->id, e->origin, ENV_NODE_ID_LEN) == 0 ||
        on_path(e, q->id))
      continue;
    bool chosen = false;
    for (int i = 0; i < n && !chosen; i++) chosen = targets[i] == q;
    if (chosen) continue;
    pull_announce(&r->pull, nm, q, e->id);
    any = true;
  }
  if (any) pull_remember(&r->pull, e->id, m, now);
}

/* A queued copy older than messageExpiration is dropped, never sent late. */
static double expiry(const struct relay *r) {
  return log_monotonic() + r->conf->messageRelay.messageExpiration / 1000.0;
}

/* Queues one encoding of e for every target. */
static int send_to(struct relay *r, struct msgbuf *m, struct peer **targets, int n) {
  uint64_t dropped_before = r->nm->stats.dropped_sends;
  for (int i = 0; i < n; i++) netmgr_queue(r->nm, targets[i], m);
  r->dropped[DROP_QUEUE] += r->nm->stats.dropped_sends - dropped_before;
  return n;
}

/* Re-encodes e with this node appended to its path and queues it. */
static void forward(struct relay *r, struct peer *from, const struct envelope *e) {
  struct netmgr *nm = r->nm;
  if (e->hops >= r->conf->messageRelay.maxRelayHops || e->path_len >= ENV_MAX_PATH) {
    r->dropped[DROP_HOPS]++;
    return;
  }
  struct peer *targets[MAX_TARGETS];
  enum relay_mode mode = e->target ? RELAY_FLOOD : relay_mode_of(r, e->type);
  int n = select_targets(r, from, e, mode, targets, MAX_TARGETS);
  bool announce = mode == RELAY_SELECTIVE && e->target == NULL;
  if (n == 0) {
    r->dropped[DROP_NO_TARGET]++;
    return;
  }
  uint8_t path[ENV_MAX_PATH * ENV_NODE_ID_LEN];
  if (e->path_len) memcpy(path, e->path, (size_t)e->path_len * ENV_NODE_ID_LEN);
  memcpy(path + (size_t)e->path_len * ENV_NODE_ID_LEN, nm->me.id, ENV_NODE_ID_LEN);
  struct envelope out = *e;
  out.hops = e->hops + 1;
  out.path_len = e->path_len + 1;
  out.path = path;
  struct msgbuf *m = msgbuf_new(env_wire_len(out.path_len, out.target != NULL, out.payload_len));
  if (m == NULL) return;
  env_encode(m->data, &out);
  m->type = e->type;
  m->expires = expiry(r);
  send_to(r, m, targets, n);
  if (announce) {
    struct envelope view; /* the forwarded form: its path includes this node */
    const char *why;
    if (env_decode(m->data, m->len, &view, &why)) announce_rest(r, from, &view, targets, n, m);
  }
  msgbuf_unref(m);
  r->relayed += (uint64_t)n;
  r->by_type[e->type].relayed += (uint64_t)n;
}

static struct relay_direct *direct_find(struct relay *r, const uint8_t id[ENV_MSG_ID_LEN]) {
  for (int i = 0; i < RELAY_MAX_DIRECT; i++)
    if (r->direct[i].used && memcmp(r->direct[i].id, id, ENV_MSG_ID_LEN) == 0) return &r->direct[i];
  return NULL;
}

static void direct_finish(struct relay *r, struct relay_direct *d, const char *status) {
  if (strcmp(status, "delivered") == 0) r->direct_delivered++;
  else r->direct_failed++;
  log_at(LV_INFO, "direct_relay_result", "status=%s", status);
  if (r->direct_result) r->direct_result(r->ud, d->id, d->target, status);
  d->used = false;
}

/* A receipt for a direct message this node sent. */
static void on_receipt(struct relay *r, const struct envelope *e) {
  struct json_doc doc;
  char err[64];
  if (json_parse((const char *)e->payload, e->payload_len, &doc, err, sizeof err) != 0) return;
  const struct json_value *mid = json_get_string(doc.root, "messageId");
  const struct json_value *st = json_get_string(doc.root, "status");
  uint8_t id[ENV_MSG_ID_LEN];
  if (mid && st && hex_decode(mid->str, mid->len, id, sizeof id) == 0) {
    struct relay_direct *d = direct_find(r, id);
    if (d) direct_finish(r, d, st->str);
  }
  json_free(&doc);
}

static struct msgbuf *encode_direct(struct relay *r, const uint8_t target[ENV_NODE_ID_LEN], int type,
                                    const char *payload, size_t len, uint8_t id[ENV_MSG_ID_LEN]) {
  struct envelope e;
  memset(&e, 0, sizeof e);
  e.type = (uint8_t)type;
  e.flags = ENV_F_DIRECT | ENV_F_TARGET;
  memcpy(e.origin, r->nm->me.id, ENV_NODE_ID_LEN);
  env_message_id(e.type, payload, len, e.id);
  e.target = target;
  e.payload = (const uint8_t *)payload;
  e.payload_len = (uint32_t)len;
  struct msgbuf *m = msgbuf_new(env_wire_len(0, 1, len));
  if (m == NULL) return NULL;
  env_encode(m->data, &e);
  m->type = (uint8_t)type;
  if (id) memcpy(id, e.id, ENV_MSG_ID_LEN);
  return m;
}

/* Sends a receipt for the direct message e back to its origin. */
static void send_receipt(struct relay *r, const struct envelope *e) {
  char hex[ENV_MSG_ID_LEN * 2 + 1], payload[160];
  hex_encode(e->id, ENV_MSG_ID_LEN, hex);
  int len = snprintf(payload, sizeof payload, "{\"status\":\"delivered\",\"messageId\":\"%s\"}", hex);
  struct msgbuf *m = encode_direct(r, e->origin, MSG_RELAY, payload, (size_t)len, NULL);
  if (m == NULL) return;
  struct envelope view;
  const char *why;
  env_decode(m->data, m->len, &view, &why);
  struct peer *targets[MAX_TARGETS];
  int n = select_targets(r, NULL, &view, RELAY_FLOOD, targets, MAX_TARGETS);
  seen_check_insert(&r->seen, view.id, log_monotonic(), 0, NULL); /* our own: not back to us */
  send_to(r, m, targets, n);
  msgbuf_unref(m);
}

void relay_prefetch(const struct relay *r, const uint8_t *batch, size_t len) {
  enum { MAX_AHEAD = 128 };
  const uint8_t *ids[MAX_AHEAD];
  int n = 0;
  for (size_t off = 0; off < len && n < MAX_AHEAD;) {
    struct envelope e;
    const char *why;
    size_t used = env_decode(batch + off, len - off, &e, &why);
    if (used == 0) break;     /* env_batch_each will say why */
    ids[n++] = batch + off + 32; /* the id's place in the header (docs/PROTOCOL.md 2) */
    off += used;
  }
  if (n < 2) return;
  for (int i = 0; i < n; i++) seen_prefetch(&r->seen, ids[i], 0);
  for (int i = 0; i < n; i++) seen_prefetch(&r->seen, ids[i], 1);
}

int relay_on_message(struct relay *r, struct peer *p, const struct envelope *e) {
  struct netmgr *nm = r->nm;
  double now = log_monotonic();
  if (e->type == MSG_RELAY && e->target == NULL) { /* announcements and requests */
    int rc = pull_on_message(&r->pull, nm, &r->seen, p, e, now);
    if (rc < 0) {
      netmgr_reject(nm, p, e->type, 4012, "malformed have/want list");
      return -1;
    }
    if (rc > 0) return 0;
  }
  r->received++;
  r->by_type[e->type].received++;
  struct seen_entry *known = seen_lookup(&r->seen, e->id, now);
  if (known) {
    r->duplicates++;
    r->by_type[e->type].duplicates++;
    /* The first copy may have come the long way and stopped at the hop
     * limit; a copy with hops to spare carries it on (once per better
     * copy, so this cannot loop). */
    if (known->stopped && e->hops < known->hops && (e->flags & ENV_F_RELAY) &&
        e->hops < r->conf->messageRelay.maxRelayHops) {
      known->hops = e->hops;
      known->stopped = false;
      r->rescued++;
      forward(r, p, e);
    }
    if (e->type == MSG_BLOCK) scoring_block(&nm->scoring, p->score, DELIVERY_DUPLICATE);
    else if (e->type == MSG_TRANSACTION) scoring_transaction(&nm->scoring, p->score, DELIVERY_DUPLICATE);
    return 0;
  }
  /* A new id: it must be the payload's, so nobody can make us drop a
   * message before it arrives by sending junk under its id. */
  uint8_t id[ENV_MSG_ID_LEN];
  env_message_id(e->type, e->payload, e->payload_len, id);
  if (memcmp(id, e->id, ENV_MSG_ID_LEN) != 0) {
    r->dropped[DROP_BAD_ID]++;
    netmgr_reject(nm, p, e->type, 1002, "message id does not match the payload");
    return -1;
  }
  if (!json_object_valid((const char *)e->payload, e->payload_len)) {
    r->dropped[DROP_BAD_JSON]++;
    netmgr_reject(nm, p, e->type, 4012, "payload is not a JSON object");
    return -1;
  }
  struct seen_entry *entry = seen_insert(&r->seen, e->id, now, p->serial);
  if (entry) entry->hops = e->hops;
  if ((e->flags & ENV_F_RELAY) && !relayable(e->type)) {
    r->dropped[DROP_NOT_RELAYABLE]++;
    netmgr_reject(nm, p, e->type, 1002, "relay flag on a type that is never relayed");
    return -1;
  }

  bool for_me = e->target == NULL || memcmp(e->target, nm->me.id, ENV_NODE_ID_LEN) == 0;
  if (for_me) {
    r->delivered++;
    r->by_type[e->type].delivered++;
    if (e->type == MSG_BLOCK) scoring_block(&nm->scoring, p->score, DELIVERY_FIRST);
    else if (e->type == MSG_TRANSACTION) scoring_transaction(&nm->scoring, p->score, DELIVERY_FIRST);
    if (e->target && e->type == MSG_RELAY) on_receipt(r, e);
    if (netmgr_deliver(nm, p, e) < 0) {
      r->dropped[DROP_REFUSED]++; /* a consumer found it bad: it goes no further */
      return 0;
    }
    if (e->target && e->type != MSG_RELAY) send_receipt(r, e);
  }
  if ((e->flags & ENV_F_RELAY) || (e->target && !for_me)) {
    if (e->hops >= r->conf->messageRelay.maxRelayHops && entry) entry->stopped = true;
    forward(r, p, e);
  }
  return 0;
}

int relay_broadcast(struct relay *r, int type, const char *payload, size_t len,
                    uint8_t id[ENV_MSG_ID_LEN]) {
  if (!relayable(type) || !json_object_valid(payload, len)) return -1;
  struct netmgr *nm = r->nm;
  struct envelope e;
  memset(&e, 0, sizeof e);
  e.type = (uint8_t)type;
  e.flags = ENV_F_RELAY;
  memcpy(e.origin, nm->me.id, ENV_NODE_ID_LEN);
  env_message_id(e.type, payload, len, e.id);
  e.payload = (const uint8_t *)payload;
  e.payload_len = (uint32_t)len;
  if (id) memcpy(id, e.id, ENV_MSG_ID_LEN);
  seen_check_insert(&r->seen, e.id, log_monotonic(), 0, NULL); /* echoes are duplicates */
  struct peer *targets[MAX_TARGETS];
  enum relay_mode mode = relay_mode_of(r, type);
  int n = select_targets(r, NULL, &e, mode, targets, MAX_TARGETS);
  if (n == 0) return 0;
  struct msgbuf *m = msgbuf_new(env_wire_len(0, 0, len));
  if (m == NULL) return -1;
  env_encode(m->data, &e);
  m->type = (uint8_t)type;
  m->expires = expiry(r);
  send_to(r, m, targets, n);
  if (mode == RELAY_SELECTIVE) announce_rest(r, NULL, &e, targets, n, m);
  msgbuf_unref(m);
  return n;
}

int relay_send_direct(struct relay *r, const uint8_t target[ENV_NODE_ID_LEN], int type,
                      const char *payload, size_t len, uint8_t id[ENV_MSG_ID_LEN]) {
  if (type < MSG_BLOCK || type >= MSG_TYPE_COUNT || !json_object_valid(payload, len)) return -1;
  struct relay_direct *slot = NULL;
  for (int i = 0; i < RELAY_MAX_DIRECT && slot == NULL; i++)
    if (!r->direct[i].used) slot = &r->direct[i];
  if (slot == NULL) return -1;
  struct msgbuf *m = encode_direct(r, target, type, payload, len, id);
  if (m == NULL) return -1;
  struct envelope view;
  const char *why;
  env_decode(m->data, m->len, &view, &why);
  struct peer *targets[MAX_TARGETS];
  int n = select_targets(r, NULL, &view, RELAY_FLOOD, targets, MAX_TARGETS);
  if (n > 0) {
    seen_check_insert(&r->seen, view.id, log_monotonic(), 0, NULL);
    send_to(r, m, targets, n);
    memcpy(slot->id, view.id, ENV_MSG_ID_LEN);
    memcpy(slot->target, target, ENV_NODE_ID_LEN);
    slot->deadline = log_monotonic() + DIRECT_TIMEOUT_SECONDS;
    slot->used = true;
    r->direct_sent++;
  }
  msgbuf_unref(m);
  return n;
}

void relay_tick(struct relay *r, double now) {
  pull_flush(&r->pull, r->nm, now);
  if (now >= r->next_sweep) {
    r->next_sweep = now + r->conf->messageRelay.cleanupInterval / 1000.0;
    seen_sweep(&r->seen, now);
  }
  for (int i = 0; i < RELAY_MAX_DIRECT; i++)
    if (r->direct[i].used && now >= r->direct[i].deadline) direct_finish(r, &r->direct[i], "timeout");
  if (r->modes_valid && now - r->modes_at >= MODES_REFRESH_SECONDS) r->modes_valid = false;
}
