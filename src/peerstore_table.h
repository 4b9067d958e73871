/* peerstore_table: the peer store's in-memory hash table. Not for use
 * outside the peerstore family.
 *
 * Open addressing with linear probing and backward-shift deletion, so there
 * are no tombstones. Keys come from remote peers (node ids arrive by peer
 * exchange), so slots are chosen by SipHash-1-3 under a key the caller draws
 * at random: crafted keys cannot pile into one probe run. The load factor
 * stays at or under 1/2.
 *
 * An item is any heap block the caller allocated; the table finds it by the
 * string the map's key function returns for it, and frees it in pst_free().
 * The caller may walk slot[0..cap) directly (empty slots have item NULL).
 *
 * Must not: know what an item is beyond its key (states, records, the disk
 * and the bound are peerstore.c's), or allocate items.
 */
#ifndef BT2C_PEERSTORE_TABLE_H
#define BT2C_PEERSTORE_TABLE_H

#include <stddef.h>
#include <stdint.h>

#define PST_NONE SIZE_MAX /* "no such slot" from pst_find */

struct pst_slot {
  uint64_t hash;
  void *item; /* NULL: empty */
};

struct pst_map {
  struct pst_slot *slot;
  size_t cap;  /* a power of two */
  size_t used; /* occupied slots */
  uint64_t k0, k1;
  const char *(*key)(const void *item);
};

/* Sized so that `expect` items fit at load 1/2 (a huge expectation is capped
 * and the table grows on demand). Returns 0, or -1 out of memory. */
int pst_init(struct pst_map *m, size_t expect, const char *(*key)(const void *), uint64_t k0,
             uint64_t k1);
/* Frees every item, then the slots. Safe on a map whose init failed. */
void pst_free(struct pst_map *m);

uint64_t pst_hash(const struct pst_map *m, const char *key);
/* The slot holding key (h = pst_hash(m, key)), or PST_NONE. */
size_t pst_find(const struct pst_map *m, const char *key, uint64_t h);
/* Adds item under hash h; the caller has checked the key is absent. May grow
 * the table, moving every item. Returns 0, or -1 out of memory (unchanged). */
int pst_insert(struct pst_map *m, void *item, uint64_t h);
/* Empties slot i without freeing its item. A later item may move into slot i
 * or wrap to the end: a caller walking the slots must look at i again and
 * tolerate seeing an item twice. */
void pst_remove_at(struct pst_map *m, size_t i);

#endif
