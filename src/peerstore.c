/* peerstore: see peerstore.h.
 *
 * Memory. Two open-addressing hash tables (linear probing, backward-shift
 * deletion, so no tombstones), one of node records keyed by node id and one
 * of address bans keyed by address. Node ids arrive from peer exchange, so a
 * remote peer chooses them: the hash is SipHash-1-3 under a random key drawn
 * per store, which keeps crafted ids from piling into one probe run. Each
 * item is CLEAN (as on disk), DIRTY (to be written) or GONE (to be deleted;
 * invisible to every reader). An item that never reached the disk is freed at
 * once instead of going GONE.
 *
 * Disk. application_id "bt2c" and user_version PS_SCHEMA_VERSION mark the
 * file as ours; anything else is refused untouched (not even switched to
 * WAL). A node's addresses are one text column, space-separated: addresses
 * with whitespace or control characters are rejected on the way in, so the
 * list is unambiguous.
 *
 * Usefulness, for the bound (least useful dropped first; anchors and nodes
 * whose ban is still running are never dropped):
 *   1. hopeless before hopeful: hopeless means PS_HOPELESS_FAILURES or more
 *      consecutive failed dials, or no sign of life (max of last_seen and
 *      last_connected) for PS_STALE_AFTER;
 *   2. never connected before connected at least once;
 *   3. more consecutive failures before fewer;
 *   4. older last sign of life before newer;
 *   5. lower score before higher;
 *   6. node id, so the choice is deterministic.
 * Between flushes the table may grow past the bound; at twice the bound it is
 * pruned in memory at once, so a flood of addresses cannot exhaust memory.
 */
#include "peerstore.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "log.h"

#define PS_APPLICATION_ID 0x62743263 /* "bt2c" */
#define PS_SCHEMA_VERSION 1
#define PS_DEFAULT_MAX 10000
/* The event loop waits on a busy database; a busy flush just retries later. */
#define PS_BUSY_MS 1000
#define PS_PRESIZE_MAX ((size_t)1 << 17)
#define PS_HOPELESS_FAILURES 10
#define PS_STALE_AFTER (30.0 * 86400.0)
#define PS_SOURCE_LEN ((int)sizeof(((struct peer_record *)0)->source))

enum { PS_CLEAN, PS_DIRTY, PS_GONE };

/* The head of every table item, so flush and drop treat nodes and bans alike. */
struct ps_item {
  unsigned char state;
  bool on_disk;
};

struct ps_node {
  struct ps_item it;
  bool mark; /* scratch for set_anchors */
  struct peer_record rec;
};

struct ps_ban {
  struct ps_item it;
  double until;
  char addr[PEERSTORE_ADDR_LEN];
};

struct ps_slot {
  uint64_t hash;
  void *item; /* NULL: empty */
};

struct ps_map {
  struct ps_slot *slot;
  size_t cap;  /* a power of two */
  size_t used; /* occupied slots, GONE items included */
  size_t live; /* items that are not GONE */
  uint64_t k0, k1;
  const char *(*key)(const void *item);
};

struct peerstore {
  sqlite3 *db;
  char *path;
  int max_entries;
  bool dirty;          /* something changed since the last successful flush */
  size_t nodes_guard;  /* prune in memory above this many live nodes... */
  size_t bans_guard;   /* ...or bans (see ps_guard) */
  struct ps_map nodes, bans;
  sqlite3_stmt *put_node, *del_node, *put_ban, *del_ban;
  struct peerstore_stats stats;
  struct log_limit full_log;
};

static const char ps_schema[] =
    "CREATE TABLE nodes (\n"
    "  node_id TEXT PRIMARY KEY NOT NULL,\n"
    "  pubkey BLOB,\n"
    "  addrs TEXT NOT NULL DEFAULT '',\n"
    "  first_seen REAL NOT NULL DEFAULT 0,\n"
    "  last_seen REAL NOT NULL DEFAULT 0,\n"
    "  last_connected REAL NOT NULL DEFAULT 0,\n"
    "  failures INTEGER NOT NULL DEFAULT 0,\n"
    "  source TEXT NOT NULL DEFAULT '',\n"
    "  is_validator INTEGER NOT NULL DEFAULT 0,\n"
    "  score REAL NOT NULL DEFAULT 0,\n"
    "  ban_until REAL NOT NULL DEFAULT 0,\n"
    "  anchor INTEGER NOT NULL DEFAULT 0\n"
    ") WITHOUT ROWID;\n"
    "CREATE TABLE address_bans (\n"
    "  addr TEXT PRIMARY KEY NOT NULL,\n"
    "  until REAL NOT NULL\n"
    ") WITHOUT ROWID;\n";

#define PS_NODE_COLUMNS                                                                   \
  "node_id, pubkey, addrs, first_seen, last_seen, last_connected, failures, source, " \
  "is_validator, score, ban_until, anchor"

/* ---- hashing ------------------------------------------------------------ */

static uint64_t ps_rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

#define PS_SIPROUND                                                             \
  do {                                                                          \
    v0 += v1, v1 = ps_rotl(v1, 13), v1 ^= v0, v0 = ps_rotl(v0, 32);             \
    v2 += v3, v3 = ps_rotl(v3, 16), v3 ^= v2;                                   \
    v0 += v3, v3 = ps_rotl(v3, 21), v3 ^= v0;                                   \
    v2 += v1, v1 = ps_rotl(v1, 17), v1 ^= v2, v2 = ps_rotl(v2, 32);             \
  } while (0)

/* SipHash-1-3: keyed, so the probe sequence of an id is not predictable. */
static uint64_t ps_siphash(uint64_t k0, uint64_t k1, const char *s, size_t len) {
  uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
  const unsigned char *p = (const unsigned char *)s;
  size_t full = len & ~(size_t)7;
  for (size_t i = 0; i < full; i += 8) {
    uint64_t m = 0;
    for (int j = 7; j >= 0; j--) m = (m << 8) | p[i + (size_t)j];
    v3 ^= m;
    PS_SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  for (size_t j = 0; j < (len & 7); j++) b |= (uint64_t)p[full + j] << (8 * j);
  v3 ^= b;
  PS_SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  PS_SIPROUND;
  PS_SIPROUND;
  PS_SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- the hash table ----------------------------------------------------- */

#define PS_NONE SIZE_MAX

static int ps_map_init(struct ps_map *m, size_t expect, const char *(*key)(const void *),
                       uint64_t k0, uint64_t k1) {
  size_t cap = 16;
  if (expect > PS_PRESIZE_MAX) expect = PS_PRESIZE_MAX; /* a huge bound grows on demand */
  while (cap < expect * 2) cap <<= 1; /* load factor stays under 1/2 at the bound */
  m->slot = calloc(cap, sizeof *m->slot);
  m->cap = cap;
  m->used = m->live = 0;
  m->k0 = k0;
  m->k1 = k1;
  m->key = key;
  return m->slot ? 0 : -1;
}

static uint64_t ps_map_hash(const struct ps_map *m, const char *key) {
  return ps_siphash(m->k0, m->k1, key, strlen(key));
}

static size_t ps_map_find(const struct ps_map *m, const char *key, uint64_t h) {
  size_t mask = m->cap - 1;
  for (size_t i = h & mask; m->slot[i].item; i = (i + 1) & mask)
    if (m->slot[i].hash == h && strcmp(m->key(m->slot[i].item), key) == 0) return i;
  return PS_NONE;
}

static void ps_map_place(struct ps_slot *slot, size_t cap, uint64_t h, void *item) {
  size_t i = h & (cap - 1);
  while (slot[i].item) i = (i + 1) & (cap - 1);
  slot[i].hash = h;
  slot[i].item = item;
}

static int ps_map_insert(struct ps_map *m, void *item, uint64_t h) {
  if ((m->used + 1) * 2 > m->cap) {
    size_t cap = m->cap * 2;
    struct ps_slot *slot = calloc(cap, sizeof *slot);
    if (!slot) return -1;
    for (size_t i = 0; i < m->cap; i++)
      if (m->slot[i].item) ps_map_place(slot, cap, m->slot[i].hash, m->slot[i].item);
    free(m->slot);
    m->slot = slot;
    m->cap = cap;
  }
  ps_map_place(m->slot, m->cap, h, item);
  m->used++;
  return 0;
}

/* Empties slot i and pulls later members of its probe run back into the hole,
 * so that lookups never need tombstones. An item may move to a lower index
 * (or wrap to the end): callers that iterate must tolerate seeing it twice. */
static void ps_map_remove_at(struct ps_map *m, size_t i) {
  size_t mask = m->cap - 1, j = i;
  m->slot[i].item = NULL;
  for (;;) {
    j = (j + 1) & mask;
    if (!m->slot[j].item) break;
    size_t home = m->slot[j].hash & mask;
    bool movable = j > i ? (home <= i || home > j) : (home <= i && home > j);
    if (movable) {
      m->slot[i] = m->slot[j];
      m->slot[j].item = NULL;
      i = j;
    }
  }
  m->used--;
}

static void ps_map_free(struct ps_map *m) {
  if (!m->slot) return;
  for (size_t i = 0; i < m->cap; i++) free(m->slot[i].item);
  free(m->slot);
  m->slot = NULL;
}

static const char *ps_node_key(const void *item) {
  return ((const struct ps_node *)item)->rec.node_id;
}
static const char *ps_ban_key(const void *item) { return ((const struct ps_ban *)item)->addr; }

/* ---- validation --------------------------------------------------------- */

/* Reads at most PEERSTORE_ID_LEN + 1 bytes: safe on an unterminated array. */
static bool ps_valid_id(const char *id) {
  for (int i = 0; i < PEERSTORE_ID_LEN; i++) {
    char c = id[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return id[PEERSTORE_ID_LEN] == '\0';
}

static bool ps_valid_text(const char *s, size_t cap, bool allow_empty) {
  size_t n = strnlen(s, cap);
  if (n == cap || (n == 0 && !allow_empty)) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= ' ' || c == 0x7f) return false; /* the space separates the stored list */
  }
  return true;
}

static bool ps_valid_addr(const char *a) { return ps_valid_text(a, PEERSTORE_ADDR_LEN, false); }
static bool ps_valid_source(const char *s) { return ps_valid_text(s, PS_SOURCE_LEN, true); }
static bool ps_valid_time(double t) { return isfinite(t) && t >= 0; }

/* Checks rec and writes a canonical copy (zero padding, duplicate addresses
 * dropped) to out. */
static int ps_normalise(const struct peer_record *rec, struct peer_record *out) {
  if (!ps_valid_id(rec->node_id) || !ps_valid_source(rec->source)) return -1;
  if (rec->n_addrs < 0 || rec->n_addrs > PEERSTORE_MAX_ADDRS) return -1;
  if (!ps_valid_time(rec->first_seen) || !ps_valid_time(rec->last_seen) ||
      !ps_valid_time(rec->last_connected) || !ps_valid_time(rec->ban_until) ||
      !isfinite(rec->score) || rec->failures < 0)
    return -1;
  for (int i = 0; i < rec->n_addrs; i++)
    if (!ps_valid_addr(rec->addrs[i])) return -1;

  memset(out, 0, sizeof *out);
  memcpy(out->node_id, rec->node_id, PEERSTORE_ID_LEN);
  out->has_pubkey = rec->has_pubkey;
  if (rec->has_pubkey) memcpy(out->pubkey, rec->pubkey, sizeof out->pubkey);
  for (int i = 0; i < rec->n_addrs; i++) {
    bool dup = false;
    for (int j = 0; j < out->n_addrs && !dup; j++) dup = strcmp(out->addrs[j], rec->addrs[i]) == 0;
    if (!dup) strcpy(out->addrs[out->n_addrs++], rec->addrs[i]);
  }
  out->first_seen = rec->first_seen;
  out->last_seen = rec->last_seen;
  out->last_connected = rec->last_connected;
  out->failures = rec->failures;
  strcpy(out->source, rec->source);
  out->is_validator = rec->is_validator;
  out->score = rec->score;
  out->ban_until = rec->ban_until;
  out->anchor = rec->anchor;
  return 0;
}

static double ps_wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- usefulness and the bound ------------------------------------------- */

struct ps_rank {
  const struct peer_record *rec;
  bool hopeless;
};

static double ps_last_alive(const struct peer_record *r) {
  return r->last_seen > r->last_connected ? r->last_seen : r->last_connected;
}

#define PS_CMP(a, b) (((a) > (b)) - ((a) < (b)))

/* Ascending: least useful first (the order in the header comment). */
static int ps_usefulness_cmp(const void *pa, const void *pb) {
  const struct ps_rank *a = pa, *b = pb;
  int c;
  if ((c = PS_CMP(!a->hopeless, !b->hopeless))) return c;
  if ((c = PS_CMP(a->rec->last_connected > 0, b->rec->last_connected > 0))) return c;
  if ((c = PS_CMP(b->rec->failures, a->rec->failures))) return c;
  if ((c = PS_CMP(ps_last_alive(a->rec), ps_last_alive(b->rec)))) return c;
  if ((c = PS_CMP(a->rec->score, b->rec->score))) return c;
  return strcmp(a->rec->node_id, b->rec->node_id);
}

static unsigned char ps_state(const struct ps_map *m, size_t i) {
  return ((const struct ps_item *)m->slot[i].item)->state;
}

/* Drops the item in slot i: GONE if the disk has it, freed otherwise.
 * Returns true if it was freed (slot i may then hold another item). */
static bool ps_drop(struct peerstore *ps, struct ps_map *m, size_t i) {
  struct ps_item *it = m->slot[i].item;
  m->live--;
  if (it->on_disk) {
    it->state = PS_GONE;
    ps->dirty = true;
    return false;
  }
  ps_map_remove_at(m, i);
  free(it);
  return true;
}

/* Drops the least useful nodes until at most `bound` are live. */
static void ps_prune_nodes(struct peerstore *ps, double now, size_t bound) {
  if (ps->nodes.live <= bound) return;
  struct ps_rank *rank = malloc(ps->nodes.live * sizeof *rank);
  if (!rank) {
    log_limited(&ps->full_log, LV_ERROR, "peerstore_prune_failed", "path=%s err=%s", ps->path,
                "out of memory");
    return;
  }
  size_t n = 0;
  for (size_t i = 0; i < ps->nodes.cap; i++) {
    const struct ps_node *node = ps->nodes.slot[i].item;
    if (!node || node->it.state == PS_GONE) continue;
    const struct peer_record *r = &node->rec;
    if (r->anchor || r->ban_until > now) continue;
    rank[n].rec = r;
    rank[n].hopeless =
        r->failures >= PS_HOPELESS_FAILURES || now - ps_last_alive(r) > PS_STALE_AFTER;
    n++;
  }
  size_t excess = ps->nodes.live - bound, drop = excess < n ? excess : n;
  qsort(rank, n, sizeof *rank, ps_usefulness_cmp);
  /* Dropping moves items between slots, so the victims are named by id. */
  char(*ids)[PEERSTORE_ID_LEN + 1] = malloc((drop ? drop : 1) * sizeof *ids);
  if (ids) {
    for (size_t k = 0; k < drop; k++) memcpy(ids[k], rank[k].rec->node_id, sizeof *ids);
    for (size_t k = 0; k < drop; k++) {
      size_t i = ps_map_find(&ps->nodes, ids[k], ps_map_hash(&ps->nodes, ids[k]));
      if (i != PS_NONE) ps_drop(ps, &ps->nodes, i);
    }
    ps->stats.pruned += drop;
    free(ids);
  }
  free(rank);
  if (drop) log_at(LV_DEBUG, "peerstore_pruned", "path=%s dropped=%zu", ps->path, drop);
  if (drop < excess)
    log_limited(&ps->full_log, LV_WARN, "peerstore_over_bound",
                "path=%s live=%zu max=%d hint=%s", ps->path, ps->nodes.live, ps->max_entries,
                "every remaining record is an anchor or banned; raise the bound");
}

static int ps_ban_until_cmp(const void *pa, const void *pb) {
  const struct ps_ban *a = *(const struct ps_ban *const *)pa, *b = *(const struct ps_ban *const *)pb;
  int c = PS_CMP(a->until, b->until);
  return c ? c : strcmp(a->addr, b->addr);
}

/* Drops expired bans, then the soonest-expiring ones past the bound. */
static void ps_prune_bans(struct peerstore *ps, double now, size_t bound) {
  /* remove_at may pull a later item into slot i: look at i again */
  for (size_t i = 0; i < ps->bans.cap;) {
    const struct ps_ban *b = ps->bans.slot[i].item;
    if (b && b->it.state != PS_GONE && b->until <= now && ps_drop(ps, &ps->bans, i)) continue;
    i++;
  }
  if (ps->bans.live <= bound) return;
  struct ps_ban **v = malloc(ps->bans.live * sizeof *v);
  if (!v) return;
  size_t n = 0;
  for (size_t i = 0; i < ps->bans.cap; i++) {
    struct ps_ban *b = ps->bans.slot[i].item;
    if (b && b->it.state != PS_GONE) v[n++] = b;
  }
  qsort(v, n, sizeof *v, ps_ban_until_cmp);
  char(*addrs)[PEERSTORE_ADDR_LEN] = malloc((n - bound) * sizeof *addrs);
  if (addrs) {
    for (size_t k = 0; k < n - bound; k++) memcpy(addrs[k], v[k]->addr, sizeof *addrs);
    for (size_t k = 0; k < n - bound; k++) {
      size_t i = ps_map_find(&ps->bans, addrs[k], ps_map_hash(&ps->bans, addrs[k]));
      if (i != PS_NONE) ps_drop(ps, &ps->bans, i);
    }
    free(addrs);
  }
  free(v);
}

static size_t ps_bound(const struct peerstore *ps) { return (size_t)ps->max_entries; }

/* The next in-memory prune waits until another `bound` items have arrived, so
 * a table held over the bound by protected records is not re-sorted on every
 * insert. */
static size_t ps_guard(const struct peerstore *ps, size_t live) {
  size_t b = ps_bound(ps);
  return live + b > 2 * b ? live + b : 2 * b;
}

/* ---- in-memory operations ----------------------------------------------- */

static struct ps_node *ps_node_live(const struct peerstore *ps, const char *id) {
  if (!ps_valid_id(id)) return NULL;
  size_t i = ps_map_find(&ps->nodes, id, ps_map_hash(&ps->nodes, id));
  if (i == PS_NONE) return NULL;
  struct ps_node *n = ps->nodes.slot[i].item;
  return n->it.state == PS_GONE ? NULL : n;
}

/* Stores a normalised record as DIRTY. */
static int ps_node_store(struct peerstore *ps, const struct peer_record *rec) {
  uint64_t h = ps_map_hash(&ps->nodes, rec->node_id);
  size_t i = ps_map_find(&ps->nodes, rec->node_id, h);
  ps->dirty = true;
  if (i != PS_NONE) {
    struct ps_node *n = ps->nodes.slot[i].item;
    if (n->it.state == PS_GONE) ps->nodes.live++;
    n->rec = *rec;
    n->it.state = PS_DIRTY;
    return 0;
  }
  struct ps_node *n = calloc(1, sizeof *n);
  if (!n) return -1;
  n->rec = *rec;
  n->it.state = PS_DIRTY;
  if (ps_map_insert(&ps->nodes, n, h) != 0) {
    free(n);
    return -1;
  }
  ps->nodes.live++;
  if (ps->nodes.live > ps->nodes_guard) {
    ps_prune_nodes(ps, ps_wall_now(), ps_bound(ps));
    ps->nodes_guard = ps_guard(ps, ps->nodes.live);
  }
  return 0;
}

int peerstore_get(const struct peerstore *ps, const char *node_id, struct peer_record *out) {
  if (!ps || !node_id || !out) return -1;
  const struct ps_node *n = ps_node_live(ps, node_id);
  if (!n) return -1;
  *out = n->rec;
  return 0;
}

int peerstore_put(struct peerstore *ps, const struct peer_record *rec) {
  struct peer_record clean;
  if (!ps || !rec || ps_normalise(rec, &clean) != 0) return -1;
  return ps_node_store(ps, &clean);
}

/* A node we only hear of gets first_seen = now; hearing of it again counts
 * as a sign of life (last_seen). The source is where we first heard of it. */
int peerstore_add_address(struct peerstore *ps, const char *node_id, const char *addr,
                          const char *source, double now) {
  if (!source) source = "";
  if (!ps || !node_id || !addr || !ps_valid_id(node_id) || !ps_valid_addr(addr) ||
      !ps_valid_source(source) || !ps_valid_time(now))
    return -1;
  struct peer_record r;
  const struct ps_node *n = ps_node_live(ps, node_id);
  if (n) {
    r = n->rec;
  } else {
    memset(&r, 0, sizeof r);
    memcpy(r.node_id, node_id, PEERSTORE_ID_LEN);
  }
  if (r.source[0] == '\0') strcpy(r.source, source);
  if (r.first_seen == 0) r.first_seen = now;
  if (now > r.last_seen) r.last_seen = now;
  int k = 0;
  while (k < r.n_addrs && strcmp(r.addrs[k], addr) != 0) k++;
  if (k == r.n_addrs) { /* new: the oldest falls off when full */
    if (r.n_addrs < PEERSTORE_MAX_ADDRS) r.n_addrs++;
    k = r.n_addrs - 1;
  }
  memmove(r.addrs[1], r.addrs[0], (size_t)k * sizeof r.addrs[0]);
  memset(r.addrs[0], 0, sizeof r.addrs[0]);
  strcpy(r.addrs[0], addr);
  return ps_node_store(ps, &r);
}

int peerstore_forget(struct peerstore *ps, const char *node_id) {
  if (!ps || !node_id || !ps_valid_id(node_id)) return -1;
  size_t i = ps_map_find(&ps->nodes, node_id, ps_map_hash(&ps->nodes, node_id));
  if (i == PS_NONE || ps_state(&ps->nodes, i) == PS_GONE) return -1;
  ps_drop(ps, &ps->nodes, i);
  return 0;
}

int peerstore_count(const struct peerstore *ps) { return ps ? (int)ps->nodes.live : 0; }

int peerstore_set_anchors(struct peerstore *ps, const char *const *node_ids, int n) {
  if (!ps || n < 0 || (n > 0 && !node_ids)) return -1;
  for (int k = 0; k < n; k++)
    if (!node_ids[k] || !ps_valid_id(node_ids[k])) return -1;
  for (size_t i = 0; i < ps->nodes.cap; i++) {
    struct ps_node *node = ps->nodes.slot[i].item;
    if (node) node->mark = false;
  }
  for (int k = 0; k < n; k++) {
    struct ps_node *node = ps_node_live(ps, node_ids[k]);
    if (node) node->mark = true;
  }
  for (size_t i = 0; i < ps->nodes.cap; i++) {
    struct ps_node *node = ps->nodes.slot[i].item;
    if (!node || node->it.state == PS_GONE || node->mark == node->rec.anchor) continue;
    node->rec.anchor = node->mark;
    node->it.state = PS_DIRTY;
    ps->dirty = true;
  }
  return 0;
}

/* Ascending: best first. */
static int ps_best_cmp(const void *pa, const void *pb) {
  const struct peer_record *a = *(const struct peer_record *const *)pa;
  const struct peer_record *b = *(const struct peer_record *const *)pb;
  int c;
  if ((c = PS_CMP(b->anchor, a->anchor))) return c;
  if ((c = PS_CMP(b->score, a->score))) return c;
  if ((c = PS_CMP(a->failures, b->failures))) return c;
  if ((c = PS_CMP(b->last_seen, a->last_seen))) return c;
  return strcmp(a->node_id, b->node_id);
}

int peerstore_best(const struct peerstore *ps, struct peer_record *out, int max, double now) {
  if (!ps || !out || max <= 0 || ps->nodes.live == 0) return 0;
  const struct peer_record **v = malloc(ps->nodes.live * sizeof *v);
  if (!v) return 0;
  size_t n = 0;
  for (size_t i = 0; i < ps->nodes.cap; i++) {
    const struct ps_node *node = ps->nodes.slot[i].item;
    if (!node || node->it.state == PS_GONE || node->rec.n_addrs == 0) continue;
    if (node->rec.ban_until > now) continue;
    v[n++] = &node->rec;
  }
  qsort(v, n, sizeof *v, ps_best_cmp);
  int k = 0;
  for (; k < max && (size_t)k < n; k++) out[k] = *v[k];
  free(v);
  return k;
}

void peerstore_each(const struct peerstore *ps, int (*fn)(const struct peer_record *, void *),
                    void *ud) {
  if (!ps || !fn) return;
  for (size_t i = 0; i < ps->nodes.cap; i++) {
    const struct ps_node *node = ps->nodes.slot[i].item;
    if (node && node->it.state != PS_GONE && fn(&node->rec, ud) != 0) return;
  }
}

int peerstore_ban_address(struct peerstore *ps, const char *addr, double until) {
  if (!ps || !addr || !ps_valid_addr(addr) || !ps_valid_time(until) || until == 0) return -1;
  uint64_t h = ps_map_hash(&ps->bans, addr);
  size_t i = ps_map_find(&ps->bans, addr, h);
  ps->dirty = true;
  if (i != PS_NONE) {
    struct ps_ban *b = ps->bans.slot[i].item;
    if (b->it.state == PS_GONE) ps->bans.live++;
    b->until = until;
    b->it.state = PS_DIRTY;
    return 0;
  }
  struct ps_ban *b = calloc(1, sizeof *b);
  if (!b) return -1;
  strcpy(b->addr, addr);
  b->until = until;
  b->it.state = PS_DIRTY;
  if (ps_map_insert(&ps->bans, b, h) != 0) {
    free(b);
    return -1;
  }
  ps->bans.live++;
  if (ps->bans.live > ps->bans_guard) {
    ps_prune_bans(ps, ps_wall_now(), ps_bound(ps));
    ps->bans_guard = ps_guard(ps, ps->bans.live);
  }
  return 0;
}

int peerstore_unban_address(struct peerstore *ps, const char *addr) {
  if (!ps || !addr || !ps_valid_addr(addr)) return -1;
  size_t i = ps_map_find(&ps->bans, addr, ps_map_hash(&ps->bans, addr));
  if (i == PS_NONE || ps_state(&ps->bans, i) == PS_GONE) return -1;
  ps_drop(ps, &ps->bans, i);
  return 0;
}

double peerstore_address_banned(const struct peerstore *ps, const char *addr, double now) {
  if (!ps || !addr || !ps_valid_addr(addr)) return 0;
  size_t i = ps_map_find(&ps->bans, addr, ps_map_hash(&ps->bans, addr));
  if (i == PS_NONE) return 0;
  const struct ps_ban *b = ps->bans.slot[i].item;
  return b->it.state != PS_GONE && b->until > now ? b->until : 0;
}

void peerstore_get_stats(const struct peerstore *ps, struct peerstore_stats *out) {
  if (!out) return;
  if (ps) *out = ps->stats;
  else memset(out, 0, sizeof *out);
}

/* ---- flush -------------------------------------------------------------- */

static int ps_step(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int ps_write_node(struct peerstore *ps, const struct peer_record *r) {
  char addrs[PEERSTORE_MAX_ADDRS * PEERSTORE_ADDR_LEN];
  size_t len = 0;
  addrs[0] = '\0';
  for (int i = 0; i < r->n_addrs; i++)
    len += (size_t)snprintf(addrs + len, sizeof addrs - len, "%s%s", i ? " " : "", r->addrs[i]);
  sqlite3_stmt *st = ps->put_node;
  sqlite3_bind_text(st, 1, r->node_id, -1, SQLITE_STATIC);
  if (r->has_pubkey) sqlite3_bind_blob(st, 2, r->pubkey, (int)sizeof r->pubkey, SQLITE_STATIC);
  else sqlite3_bind_null(st, 2);
  sqlite3_bind_text(st, 3, addrs, (int)len, SQLITE_STATIC);
  sqlite3_bind_double(st, 4, r->first_seen);
  sqlite3_bind_double(st, 5, r->last_seen);
  sqlite3_bind_double(st, 6, r->last_connected);
  sqlite3_bind_int(st, 7, r->failures);
  sqlite3_bind_text(st, 8, r->source, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 9, r->is_validator);
  sqlite3_bind_double(st, 10, r->score);
  sqlite3_bind_double(st, 11, r->ban_until);
  sqlite3_bind_int(st, 12, r->anchor);
  return ps_step(st);
}

static int ps_write_all(struct peerstore *ps, unsigned long *written, unsigned long *deleted) {
  int rc = SQLITE_OK;
  for (size_t i = 0; i < ps->nodes.cap && rc == SQLITE_OK; i++) {
    const struct ps_node *n = ps->nodes.slot[i].item;
    if (!n || n->it.state == PS_CLEAN) continue;
    if (n->it.state == PS_DIRTY) {
      rc = ps_write_node(ps, &n->rec);
      ++*written;
    } else {
      sqlite3_bind_text(ps->del_node, 1, n->rec.node_id, -1, SQLITE_STATIC);
      rc = ps_step(ps->del_node);
      ++*deleted;
    }
  }
  for (size_t i = 0; i < ps->bans.cap && rc == SQLITE_OK; i++) {
    const struct ps_ban *b = ps->bans.slot[i].item;
    if (!b || b->it.state == PS_CLEAN) continue;
    sqlite3_stmt *st = b->it.state == PS_DIRTY ? ps->put_ban : ps->del_ban;
    sqlite3_bind_text(st, 1, b->addr, -1, SQLITE_STATIC);
    if (b->it.state == PS_DIRTY) {
      sqlite3_bind_double(st, 2, b->until);
      ++*written;
    } else {
      ++*deleted;
    }
    rc = ps_step(st);
  }
  return rc;
}

static size_t ps_pending(const struct ps_map *m) {
  size_t n = 0;
  for (size_t i = 0; i < m->cap; i++)
    if (m->slot[i].item && ((const struct ps_item *)m->slot[i].item)->state != PS_CLEAN) n++;
  return n;
}

/* After a commit: DIRTY becomes CLEAN, GONE is freed. remove_at may pull a
 * later item into slot i (or wrap one to the end), so slot i is looked at
 * again; marking CLEAN twice is harmless. */
static void ps_settle(struct ps_map *m) {
  for (size_t i = 0; i < m->cap;) {
    struct ps_item *it = m->slot[i].item;
    if (it && it->state == PS_GONE) {
      ps_map_remove_at(m, i);
      free(it);
      continue;
    }
    if (it) {
      it->state = PS_CLEAN;
      it->on_disk = true;
    }
    i++;
  }
}

int peerstore_flush(struct peerstore *ps) {
  if (!ps) return -1;
  double now = ps_wall_now();
  ps_prune_nodes(ps, now, ps_bound(ps));
  ps_prune_bans(ps, now, ps_bound(ps));
  ps->nodes_guard = ps_guard(ps, ps->nodes.live);
  ps->bans_guard = ps_guard(ps, ps->bans.live);
  if (!ps->dirty) return 0;

  unsigned long written = 0, deleted = 0;
  int rc = sqlite3_exec(ps->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (rc == SQLITE_OK) rc = ps_write_all(ps, &written, &deleted);
  if (rc == SQLITE_OK) rc = sqlite3_exec(ps->db, "COMMIT", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(ps->db));
    if (!sqlite3_get_autocommit(ps->db)) sqlite3_exec(ps->db, "ROLLBACK", NULL, NULL, NULL);
    ps->stats.flush_failures++;
    log_at(LV_ERROR, "peerstore_flush_failed", "path=%s err=%s pending=%zu hint=%s", ps->path,
           msg, ps_pending(&ps->nodes) + ps_pending(&ps->bans),
           "records stay dirty; the next flush retries");
    return -1;
  }
  ps_settle(&ps->nodes);
  ps_settle(&ps->bans);
  ps->dirty = false;
  ps->stats.flushes++;
  ps->stats.rows_written += written;
  ps->stats.rows_deleted += deleted;
  return 0;
}

/* ---- open / close ------------------------------------------------------- */

static int ps_on_commit(void *ud) {
  ((struct peerstore *)ud)->stats.commits++;
  return 0; /* let it commit */
}

static int ps_query_int(sqlite3 *db, const char *sql, long long *out) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK) return rc;
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *out = sqlite3_column_int64(st, 0);
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    rc = SQLITE_ERROR;
  }
  sqlite3_finalize(st);
  return rc;
}

/* Fills err with "<path>: <what>" and returns -1. */
static int ps_fail(char *err, size_t errcap, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int ps_fail(char *err, size_t errcap, const char *path, const char *fmt, ...) {
  if (!err || errcap == 0) return -1;
  int n = snprintf(err, errcap, "%s: ", path);
  if (n >= 0 && (size_t)n < errcap) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errcap - (size_t)n, fmt, ap);
    va_end(ap);
  }
  return -1;
}

/* Refuses anything but an empty database or one of ours, before touching it. */
static int ps_check_or_create(struct peerstore *ps, char *err, size_t errcap) {
  sqlite3 *db = ps->db;
  const char *path = ps->path;
  long long appid = 0, version = 0, objects = 0;
  int rc = ps_query_int(db, "PRAGMA application_id", &appid);
  if (rc == SQLITE_OK) rc = ps_query_int(db, "PRAGMA user_version", &version);
  if (rc == SQLITE_OK) rc = ps_query_int(db, "SELECT count(*) FROM sqlite_master", &objects);
  if ((rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT)
    return ps_fail(err, errcap, path, "not a bt2c peer store (%s)", sqlite3_errmsg(db));
  if (rc != SQLITE_OK) return ps_fail(err, errcap, path, "%s", sqlite3_errmsg(db));

  if (appid == 0 && objects > 0)
    return ps_fail(err, errcap, path,
                   "not a bt2c peer store (a sqlite database with %lld other objects)", objects);
  if (appid != 0 && appid != PS_APPLICATION_ID)
    return ps_fail(err, errcap, path, "not a bt2c peer store (application_id 0x%08llx)",
                   (unsigned long long)appid & 0xffffffffULL);
  if (appid == PS_APPLICATION_ID && version > PS_SCHEMA_VERSION)
    return ps_fail(err, errcap, path,
                   "peer store schema version %lld is newer than this bt2cd reads (%d); "
                   "upgrade bt2cd or move the file away",
                   version, PS_SCHEMA_VERSION);
  if (appid == PS_APPLICATION_ID && version < 1)
    return ps_fail(err, errcap, path, "not a bt2c peer store (schema version %lld)", version);

  /* journal_mode answers with the mode it ended up in (":memory:" stays "memory") */
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW) {
      const char *mode = (const char *)sqlite3_column_text(st, 0);
      if (!mode || strcmp(mode, "wal") != 0)
        log_at(LV_WARN, "peerstore_no_wal", "path=%s journal_mode=%s", path, mode ? mode : "?");
    }
    sqlite3_finalize(st);
  }
  if (sqlite3_exec(db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK)
    return ps_fail(err, errcap, path, "%s", sqlite3_errmsg(db));
  if (appid == PS_APPLICATION_ID) return 0;

  /* Empty: create, unless another process did so while we looked. */
  rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (rc == SQLITE_OK) rc = ps_query_int(db, "PRAGMA application_id", &appid);
  if (rc == SQLITE_OK && appid == 0) {
    char mark[96];
    snprintf(mark, sizeof mark, "PRAGMA application_id = %d; PRAGMA user_version = %d;",
             PS_APPLICATION_ID, PS_SCHEMA_VERSION);
    rc = sqlite3_exec(db, ps_schema, NULL, NULL, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, mark, NULL, NULL, NULL);
  }
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    ps_fail(err, errcap, path, "cannot create the peer store: %s", sqlite3_errmsg(db));
    if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
  }
  if (appid != 0 && appid != PS_APPLICATION_ID)
    return ps_fail(err, errcap, path, "not a bt2c peer store (application_id 0x%08llx)",
                   (unsigned long long)appid & 0xffffffffULL);
  return 0;
}

static int ps_prepare(struct peerstore *ps, char *err, size_t errcap) {
  static const struct {
    size_t off;
    const char *sql;
  } stmts[] = {
      {offsetof(struct peerstore, put_node),
       "INSERT OR REPLACE INTO nodes (" PS_NODE_COLUMNS ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"},
      {offsetof(struct peerstore, del_node), "DELETE FROM nodes WHERE node_id = ?"},
      {offsetof(struct peerstore, put_ban),
       "INSERT OR REPLACE INTO address_bans (addr, until) VALUES (?, ?)"},
      {offsetof(struct peerstore, del_ban), "DELETE FROM address_bans WHERE addr = ?"},
  };
  for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) {
    sqlite3_stmt **st = (sqlite3_stmt **)((char *)ps + stmts[i].off);
    if (sqlite3_prepare_v3(ps->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) !=
        SQLITE_OK)
      return ps_fail(err, errcap, ps->path, "not a bt2c peer store (%s)", sqlite3_errmsg(ps->db));
  }
  return 0;
}

/* Turns a stored row into a record; returns -1 if it cannot be one, 1 if it
 * had to be repaired (so it gets rewritten), 0 if it was fine. */
static int ps_row_to_record(sqlite3_stmt *st, struct peer_record *r) {
  memset(r, 0, sizeof *r);
  const char *id = (const char *)sqlite3_column_text(st, 0);
  if (!id || sqlite3_column_bytes(st, 0) != PEERSTORE_ID_LEN || !ps_valid_id(id)) return -1;
  memcpy(r->node_id, id, PEERSTORE_ID_LEN);
  int repaired = 0;
  if (sqlite3_column_type(st, 1) != SQLITE_NULL) {
    if (sqlite3_column_bytes(st, 1) == (int)sizeof r->pubkey) {
      memcpy(r->pubkey, sqlite3_column_blob(st, 1), sizeof r->pubkey);
      r->has_pubkey = true;
    } else {
      repaired = 1;
    }
  }
  const char *list = (const char *)sqlite3_column_text(st, 2);
  while (list && *list) {
    size_t n = strcspn(list, " ");
    if (n > 0 && n < PEERSTORE_ADDR_LEN && r->n_addrs < PEERSTORE_MAX_ADDRS) {
      char *a = r->addrs[r->n_addrs];
      memcpy(a, list, n);
      if (ps_valid_addr(a)) r->n_addrs++;
      else memset(a, 0, PEERSTORE_ADDR_LEN), repaired = 1;
    } else if (n > 0) {
      repaired = 1;
    }
    list += n;
    list += strspn(list, " ");
  }
  double *times[] = {&r->first_seen, &r->last_seen, &r->last_connected, &r->ban_until};
  int cols[] = {3, 4, 5, 10};
  for (int i = 0; i < 4; i++) {
    *times[i] = sqlite3_column_double(st, cols[i]);
    if (!ps_valid_time(*times[i])) *times[i] = 0, repaired = 1;
  }
  long long failures = sqlite3_column_int64(st, 6);
  r->failures = failures < 0 ? 0 : failures > INT_MAX ? INT_MAX : (int)failures;
  if (r->failures != failures) repaired = 1;
  const char *src = (const char *)sqlite3_column_text(st, 7);
  if (src && strlen(src) < sizeof r->source) strcpy(r->source, src);
  if (!ps_valid_source(r->source)) memset(r->source, 0, sizeof r->source), repaired = 1;
  r->is_validator = sqlite3_column_int(st, 8) != 0;
  r->score = sqlite3_column_double(st, 9);
  if (!isfinite(r->score)) r->score = 0, repaired = 1;
  r->anchor = sqlite3_column_int(st, 11) != 0;
  return repaired;
}

static int ps_load(struct peerstore *ps, char *err, size_t errcap) {
  sqlite3_stmt *st;
  size_t skipped = 0;
  int rc = sqlite3_prepare_v2(ps->db, "SELECT " PS_NODE_COLUMNS " FROM nodes", -1, &st, NULL);
  while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    struct peer_record r;
    int how = ps_row_to_record(st, &r);
    struct ps_node *n = how < 0 ? NULL : calloc(1, sizeof *n);
    rc = SQLITE_OK;
    if (how < 0) {
      skipped++;
      continue;
    }
    if (!n) {
      rc = SQLITE_NOMEM;
      break;
    }
    n->rec = r;
    n->it.on_disk = true;
    n->it.state = how ? PS_DIRTY : PS_CLEAN;
    ps->dirty |= how != 0;
    if (ps_map_insert(&ps->nodes, n, ps_map_hash(&ps->nodes, r.node_id)) != 0) {
      free(n);
      rc = SQLITE_NOMEM;
      break;
    }
    ps->nodes.live++;
  }
  sqlite3_finalize(st);
  st = NULL;
  if (rc == SQLITE_DONE)
    rc = sqlite3_prepare_v2(ps->db, "SELECT addr, until FROM address_bans", -1, &st, NULL);
  while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *addr = (const char *)sqlite3_column_text(st, 0);
    double until = sqlite3_column_double(st, 1);
    rc = SQLITE_OK;
    if (!addr || !ps_valid_addr(addr) || !ps_valid_time(until)) {
      skipped++;
      continue;
    }
    struct ps_ban *b = calloc(1, sizeof *b);
    if (!b) {
      rc = SQLITE_NOMEM;
      break;
    }
    strcpy(b->addr, addr);
    b->until = until;
    b->it.on_disk = true;
    if (ps_map_insert(&ps->bans, b, ps_map_hash(&ps->bans, addr)) != 0) {
      free(b);
      rc = SQLITE_NOMEM;
      break;
    }
    ps->bans.live++;
  }
  sqlite3_finalize(st);
  if (rc != SQLITE_DONE) {
    if (rc == SQLITE_NOMEM) return ps_fail(err, errcap, ps->path, "out of memory loading");
    return ps_fail(err, errcap, ps->path, "%s", sqlite3_errmsg(ps->db));
  }
  if (skipped)
    log_at(LV_WARN, "peerstore_bad_rows", "path=%s skipped=%zu hint=%s", ps->path, skipped,
           "rows with an invalid node id or address were ignored");
  return 0;
}

static void ps_free(struct peerstore *ps) {
  sqlite3_finalize(ps->put_node);
  sqlite3_finalize(ps->del_node);
  sqlite3_finalize(ps->put_ban);
  sqlite3_finalize(ps->del_ban);
  if (ps->db) sqlite3_close(ps->db);
  ps_map_free(&ps->nodes);
  ps_map_free(&ps->bans);
  free(ps->path);
  free(ps);
}

struct peerstore *peerstore_open(const char *path, int max_entries, char *err, size_t errcap) {
  if (err && errcap) err[0] = '\0';
  if (!path || !*path) {
    if (err && errcap) snprintf(err, errcap, "peerstore: empty database path");
    return NULL;
  }
  if (max_entries < 0) {
    ps_fail(err, errcap, path, "max_entries must be >= 0 (0 means %d), not %d", PS_DEFAULT_MAX,
            max_entries);
    return NULL;
  }
  struct peerstore *ps = calloc(1, sizeof *ps);
  if (!ps || !(ps->path = strdup(path))) {
    free(ps);
    ps_fail(err, errcap, path, "out of memory");
    return NULL;
  }
  ps->max_entries = max_entries ? max_entries : PS_DEFAULT_MAX;
  ps->nodes_guard = ps->bans_guard = ps_guard(ps, 0);
  uint64_t key[2];
  if (getrandom(key, sizeof key, 0) != (ssize_t)sizeof key) {
    /* only the flooding resistance suffers; the table still works */
    key[0] = (uint64_t)(uintptr_t)ps ^ (uint64_t)getpid();
    key[1] = (uint64_t)(ps_wall_now() * 1e9);
  }
  if (ps_map_init(&ps->nodes, (size_t)ps->max_entries, ps_node_key, key[0], key[1]) != 0 ||
      ps_map_init(&ps->bans, 64, ps_ban_key, key[0], key[1]) != 0) {
    ps_fail(err, errcap, path, "out of memory");
    goto fail;
  }
  int rc = sqlite3_open_v2(path, &ps->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc != SQLITE_OK) {
    ps_fail(err, errcap, path, "%s", ps->db ? sqlite3_errmsg(ps->db) : sqlite3_errstr(rc));
    goto fail;
  }
  sqlite3_busy_timeout(ps->db, PS_BUSY_MS);
  sqlite3_commit_hook(ps->db, ps_on_commit, ps);
  if (ps_check_or_create(ps, err, errcap) != 0 || ps_prepare(ps, err, errcap) != 0 ||
      ps_load(ps, err, errcap) != 0)
    goto fail;
  log_at(LV_DEBUG, "peerstore_opened", "path=%s nodes=%zu bans=%zu max=%d", path,
         ps->nodes.live, ps->bans.live, ps->max_entries);
  return ps;
fail:
  ps_free(ps);
  return NULL;
}

void peerstore_close(struct peerstore *ps) {
  if (!ps) return;
  if (peerstore_flush(ps) != 0)
    log_at(LV_ERROR, "peerstore_close_unflushed", "path=%s hint=%s", ps->path,
           "changes since the last successful flush are lost");
  ps_free(ps);
}
