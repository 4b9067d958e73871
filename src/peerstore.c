/* peerstore: see peerstore.h. This file holds the records in memory and
 * decides what is kept; peerstore_table.c is the hash table, peerstore_db.c
 * the sqlite file.
 *
 * Memory. Two tables, one of node records keyed by node id and one of
 * address bans keyed by address. Each item is CLEAN (as on disk), DIRTY (to
 * be written) or GONE (to be deleted; invisible to every reader). An item
 * that never reached the disk is freed at once instead of going GONE.
 *
 * Records. A node's addresses are one text column, space-separated:
 * addresses with whitespace or control characters are rejected on the way
 * in, so the list is unambiguous. score_state belongs to the scoring module:
 * the store bounds it and never looks inside. Rows read back are held to the
 * same rules as puts: a row without a valid node id is skipped, an invalid
 * field is reset and the row rewritten at the next flush.
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
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "peerstore_db.h"
#include "peerstore_table.h"

#define PS_DEFAULT_MAX 10000
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

struct ps_set {
  struct pst_map map;
  size_t live; /* items that are not GONE */
};

struct peerstore {
  struct psdb *db;
  char *path;
  int max_entries;
  bool dirty;          /* something changed since the last successful flush */
  size_t nodes_guard;  /* prune in memory above this many live nodes... */
  size_t bans_guard;   /* ...or bans (see ps_guard) */
  struct ps_set nodes, bans;
  struct peerstore_stats stats;
  struct log_limit full_log;
};

static const char *ps_node_key(const void *item) {
  return ((const struct ps_node *)item)->rec.node_id;
}
static const char *ps_ban_key(const void *item) { return ((const struct ps_ban *)item)->addr; }

static size_t ps_find(const struct ps_set *s, const char *key) {
  return pst_find(&s->map, key, pst_hash(&s->map, key));
}

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

/* Compact JSON never needs a raw control character (JSON escapes them), so
 * one is a caller's bug; keeping them out also keeps the text safe to print.
 * Spaces and bytes from 0x7f up are the scoring module's business. */
static bool ps_valid_state(const char *s) {
  size_t n = strnlen(s, PEERSTORE_STATE_LEN);
  if (n == PEERSTORE_STATE_LEN) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20) return false;
  return true;
}

/* Checks rec and writes a canonical copy (zero padding, duplicate addresses
 * dropped) to out. */
static int ps_normalise(const struct peer_record *rec, struct peer_record *out) {
  if (!ps_valid_id(rec->node_id) || !ps_valid_source(rec->source) ||
      !ps_valid_state(rec->score_state))
    return -1;
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
  strcpy(out->score_state, rec->score_state);
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

static unsigned char ps_state(const struct ps_set *s, size_t i) {
  return ((const struct ps_item *)s->map.slot[i].item)->state;
}

/* Drops the item in slot i: GONE if the disk has it, freed otherwise.
 * Returns true if it was freed (slot i may then hold another item). */
static bool ps_drop(struct peerstore *ps, struct ps_set *s, size_t i) {
  struct ps_item *it = s->map.slot[i].item;
  s->live--;
  if (it->on_disk) {
    it->state = PS_GONE;
    ps->dirty = true;
    return false;
  }
  pst_remove_at(&s->map, i);
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
  for (size_t i = 0; i < ps->nodes.map.cap; i++) {
    const struct ps_node *node = ps->nodes.map.slot[i].item;
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
      size_t i = ps_find(&ps->nodes, ids[k]);
      if (i != PST_NONE) ps_drop(ps, &ps->nodes, i);
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
  for (size_t i = 0; i < ps->bans.map.cap;) {
    const struct ps_ban *b = ps->bans.map.slot[i].item;
    if (b && b->it.state != PS_GONE && b->until <= now && ps_drop(ps, &ps->bans, i)) continue;
    i++;
  }
  if (ps->bans.live <= bound) return;
  struct ps_ban **v = malloc(ps->bans.live * sizeof *v);
  if (!v) return;
  size_t n = 0;
  for (size_t i = 0; i < ps->bans.map.cap; i++) {
    struct ps_ban *b = ps->bans.map.slot[i].item;
    if (b && b->it.state != PS_GONE) v[n++] = b;
  }
  qsort(v, n, sizeof *v, ps_ban_until_cmp);
  char(*addrs)[PEERSTORE_ADDR_LEN] = malloc((n - bound) * sizeof *addrs);
  if (addrs) {
    for (size_t k = 0; k < n - bound; k++) memcpy(addrs[k], v[k]->addr, sizeof *addrs);
    for (size_t k = 0; k < n - bound; k++) {
      size_t i = ps_find(&ps->bans, addrs[k]);
      if (i != PST_NONE) ps_drop(ps, &ps->bans, i);
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
  size_t i = ps_find(&ps->nodes, id);
  if (i == PST_NONE) return NULL;
  struct ps_node *n = ps->nodes.map.slot[i].item;
  return n->it.state == PS_GONE ? NULL : n;
}

/* Stores a normalised record as DIRTY. */
static int ps_node_store(struct peerstore *ps, const struct peer_record *rec) {
  uint64_t h = pst_hash(&ps->nodes.map, rec->node_id);
  size_t i = pst_find(&ps->nodes.map, rec->node_id, h);
  ps->dirty = true;
  if (i != PST_NONE) {
    struct ps_node *n = ps->nodes.map.slot[i].item;
    if (n->it.state == PS_GONE) ps->nodes.live++;
    n->rec = *rec;
    n->it.state = PS_DIRTY;
    return 0;
  }
  struct ps_node *n = calloc(1, sizeof *n);
  if (!n) return -1;
  n->rec = *rec;
  n->it.state = PS_DIRTY;
  if (pst_insert(&ps->nodes.map, n, h) != 0) {
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
  size_t i = ps_find(&ps->nodes, node_id);
  if (i == PST_NONE || ps_state(&ps->nodes, i) == PS_GONE) return -1;
  ps_drop(ps, &ps->nodes, i);
  return 0;
}

int peerstore_count(const struct peerstore *ps) { return ps ? (int)ps->nodes.live : 0; }

int peerstore_set_anchors(struct peerstore *ps, const char *const *node_ids, int n) {
  if (!ps || n < 0 || (n > 0 && !node_ids)) return -1;
  for (int k = 0; k < n; k++)
    if (!node_ids[k] || !ps_valid_id(node_ids[k])) return -1;
  for (size_t i = 0; i < ps->nodes.map.cap; i++) {
    struct ps_node *node = ps->nodes.map.slot[i].item;
    if (node) node->mark = false;
  }
  for (int k = 0; k < n; k++) {
    struct ps_node *node = ps_node_live(ps, node_ids[k]);
    if (node) node->mark = true;
  }
  for (size_t i = 0; i < ps->nodes.map.cap; i++) {
    struct ps_node *node = ps->nodes.map.slot[i].item;
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
  for (size_t i = 0; i < ps->nodes.map.cap; i++) {
    const struct ps_node *node = ps->nodes.map.slot[i].item;
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
  for (size_t i = 0; i < ps->nodes.map.cap; i++) {
    const struct ps_node *node = ps->nodes.map.slot[i].item;
    if (node && node->it.state != PS_GONE && fn(&node->rec, ud) != 0) return;
  }
}

int peerstore_ban_address(struct peerstore *ps, const char *addr, double until) {
  if (!ps || !addr || !ps_valid_addr(addr) || !ps_valid_time(until) || until == 0) return -1;
  uint64_t h = pst_hash(&ps->bans.map, addr);
  size_t i = pst_find(&ps->bans.map, addr, h);
  ps->dirty = true;
  if (i != PST_NONE) {
    struct ps_ban *b = ps->bans.map.slot[i].item;
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
  if (pst_insert(&ps->bans.map, b, h) != 0) {
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
  size_t i = ps_find(&ps->bans, addr);
  if (i == PST_NONE || ps_state(&ps->bans, i) == PS_GONE) return -1;
  ps_drop(ps, &ps->bans, i);
  return 0;
}

double peerstore_address_banned(const struct peerstore *ps, const char *addr, double now) {
  if (!ps || !addr || !ps_valid_addr(addr)) return 0;
  size_t i = ps_find(&ps->bans, addr);
  if (i == PST_NONE) return 0;
  const struct ps_ban *b = ps->bans.map.slot[i].item;
  return b->it.state != PS_GONE && b->until > now ? b->until : 0;
}

void peerstore_get_stats(const struct peerstore *ps, struct peerstore_stats *out) {
  if (!out) return;
  if (ps) *out = ps->stats;
  else memset(out, 0, sizeof *out);
}

/* ---- records and rows --------------------------------------------------- */

/* Turns a stored row into a record; returns -1 if it cannot be one, 1 if it
 * had to be repaired (so it gets rewritten), 0 if it was fine. */
static int ps_row_to_record(const struct psdb_row *row, struct peer_record *r) {
  memset(r, 0, sizeof *r);
  const char *id = row->node_id;
  if (!id || row->node_id_len != PEERSTORE_ID_LEN || !ps_valid_id(id)) return -1;
  memcpy(r->node_id, id, PEERSTORE_ID_LEN);
  int repaired = 0;
  if (row->has_pubkey) {
    if (row->pubkey_len == sizeof r->pubkey) {
      memcpy(r->pubkey, row->pubkey, sizeof r->pubkey);
      r->has_pubkey = true;
    } else {
      repaired = 1;
    }
  }
  const char *list = row->addrs;
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
  const double stored[] = {row->first_seen, row->last_seen, row->last_connected, row->ban_until};
  for (int i = 0; i < 4; i++) {
    *times[i] = stored[i];
    if (!ps_valid_time(*times[i])) *times[i] = 0, repaired = 1;
  }
  r->failures = row->failures < 0 ? 0 : row->failures > INT_MAX ? INT_MAX : (int)row->failures;
  if (r->failures != row->failures) repaired = 1;
  const char *src = row->source;
  if (src && strlen(src) < sizeof r->source) strcpy(r->source, src);
  if (!ps_valid_source(r->source)) memset(r->source, 0, sizeof r->source), repaired = 1;
  r->is_validator = row->is_validator;
  r->score = row->score;
  if (!isfinite(r->score)) r->score = 0, repaired = 1;
  r->anchor = row->anchor;
  /* a state that does not fit, or holds a NUL, cannot come back as it was */
  const char *state = row->score_state ? row->score_state : "";
  if (row->score_state_len < sizeof r->score_state && strlen(state) == row->score_state_len)
    strcpy(r->score_state, state);
  else
    repaired = 1;
  if (!ps_valid_state(r->score_state))
    memset(r->score_state, 0, sizeof r->score_state), repaired = 1;
  return repaired;
}

static int ps_write_node(struct peerstore *ps, const struct peer_record *r) {
  char addrs[PEERSTORE_MAX_ADDRS * PEERSTORE_ADDR_LEN];
  size_t len = 0;
  addrs[0] = '\0';
  for (int i = 0; i < r->n_addrs; i++)
    len += (size_t)snprintf(addrs + len, sizeof addrs - len, "%s%s", i ? " " : "", r->addrs[i]);
  const struct psdb_row row = {
      .node_id = r->node_id,
      .node_id_len = PEERSTORE_ID_LEN,
      .has_pubkey = r->has_pubkey,
      .pubkey = r->pubkey,
      .pubkey_len = sizeof r->pubkey,
      .addrs = addrs,
      .first_seen = r->first_seen,
      .last_seen = r->last_seen,
      .last_connected = r->last_connected,
      .failures = r->failures,
      .source = r->source,
      .is_validator = r->is_validator,
      .score = r->score,
      .ban_until = r->ban_until,
      .anchor = r->anchor,
      .score_state = r->score_state,
      .score_state_len = strlen(r->score_state),
  };
  return psdb_put_node(ps->db, &row);
}

/* ---- flush -------------------------------------------------------------- */

static int ps_write_all(struct peerstore *ps, unsigned long *written, unsigned long *deleted) {
  int rc = 0;
  for (size_t i = 0; i < ps->nodes.map.cap && rc == 0; i++) {
    const struct ps_node *n = ps->nodes.map.slot[i].item;
    if (!n || n->it.state == PS_CLEAN) continue;
    if (n->it.state == PS_DIRTY) {
      rc = ps_write_node(ps, &n->rec);
      ++*written;
    } else {
      rc = psdb_del_node(ps->db, n->rec.node_id);
      ++*deleted;
    }
  }
  for (size_t i = 0; i < ps->bans.map.cap && rc == 0; i++) {
    const struct ps_ban *b = ps->bans.map.slot[i].item;
    if (!b || b->it.state == PS_CLEAN) continue;
    if (b->it.state == PS_DIRTY) {
      rc = psdb_put_ban(ps->db, b->addr, b->until);
      ++*written;
    } else {
      rc = psdb_del_ban(ps->db, b->addr);
      ++*deleted;
    }
  }
  return rc;
}

static size_t ps_pending(const struct ps_set *s) {
  size_t n = 0;
  for (size_t i = 0; i < s->map.cap; i++)
    if (s->map.slot[i].item && ps_state(s, i) != PS_CLEAN) n++;
  return n;
}

/* After a commit: DIRTY becomes CLEAN, GONE is freed. remove_at may pull a
 * later item into slot i (or wrap one to the end), so slot i is looked at
 * again; marking CLEAN twice is harmless. */
static void ps_settle(struct ps_set *s) {
  for (size_t i = 0; i < s->map.cap;) {
    struct ps_item *it = s->map.slot[i].item;
    if (it && it->state == PS_GONE) {
      pst_remove_at(&s->map, i);
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
  int rc = psdb_begin(ps->db);
  if (rc == 0) rc = ps_write_all(ps, &written, &deleted);
  if (rc == 0) rc = psdb_commit(ps->db);
  if (rc != 0) {
    char msg[256];
    psdb_abort(ps->db, msg, sizeof msg);
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

struct ps_loading {
  struct peerstore *ps;
  size_t skipped; /* rows that cannot be records */
};

static int ps_load_node(void *ud, const struct psdb_row *row) {
  struct ps_loading *l = ud;
  struct peerstore *ps = l->ps;
  struct peer_record r;
  int how = ps_row_to_record(row, &r);
  if (how < 0) {
    l->skipped++;
    return 0;
  }
  struct ps_node *n = calloc(1, sizeof *n);
  if (!n) return -1;
  n->rec = r;
  n->it.on_disk = true;
  n->it.state = how ? PS_DIRTY : PS_CLEAN;
  ps->dirty |= how != 0;
  if (pst_insert(&ps->nodes.map, n, pst_hash(&ps->nodes.map, r.node_id)) != 0) {
    free(n);
    return -1;
  }
  ps->nodes.live++;
  return 0;
}

static int ps_load_ban(void *ud, const char *addr, double until) {
  struct ps_loading *l = ud;
  struct peerstore *ps = l->ps;
  if (!addr || !ps_valid_addr(addr) || !ps_valid_time(until)) {
    l->skipped++;
    return 0;
  }
  struct ps_ban *b = calloc(1, sizeof *b);
  if (!b) return -1;
  strcpy(b->addr, addr);
  b->until = until;
  b->it.on_disk = true;
  if (pst_insert(&ps->bans.map, b, pst_hash(&ps->bans.map, addr)) != 0) {
    free(b);
    return -1;
  }
  ps->bans.live++;
  return 0;
}

static void ps_free(struct peerstore *ps) {
  psdb_close(ps->db);
  pst_free(&ps->nodes.map);
  pst_free(&ps->bans.map);
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
    if (err && errcap)
      snprintf(err, errcap, "%s: max_entries must be >= 0 (0 means %d), not %d", path,
               PS_DEFAULT_MAX, max_entries);
    return NULL;
  }
  struct peerstore *ps = calloc(1, sizeof *ps);
  if (!ps || !(ps->path = strdup(path))) {
    free(ps);
    if (err && errcap) snprintf(err, errcap, "%s: out of memory", path);
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
  struct ps_loading loading = {ps, 0};
  if (pst_init(&ps->nodes.map, (size_t)ps->max_entries, ps_node_key, key[0], key[1]) != 0 ||
      pst_init(&ps->bans.map, 64, ps_ban_key, key[0], key[1]) != 0) {
    if (err && errcap) snprintf(err, errcap, "%s: out of memory", path);
    goto fail;
  }
  if (!(ps->db = psdb_open(path, &ps->stats.commits, err, errcap)) ||
      psdb_load(ps->db, ps_load_node, ps_load_ban, &loading, err, errcap) != 0)
    goto fail;
  if (loading.skipped)
    log_at(LV_WARN, "peerstore_bad_rows", "path=%s skipped=%zu hint=%s", path, loading.skipped,
           "rows with an invalid node id or address were ignored");
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
