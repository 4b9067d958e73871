/* seen: the set of message ids a node has already handled, with time expiry
 * and a hard memory bound (MessageRelay's duplicate filter).
 *
 * An id is remembered for `ttl` seconds (messageExpiration) exactly: a
 * lookup after that treats it as unknown, whether or not the sweep
 * (cleanupInterval) has removed it yet. Entries live in a FIFO ring in
 * arrival order, so expiry and the capacity bound always drop the oldest
 * first, one at a time — never a wholesale clear that would let every
 * recent message be replayed. A lookup is one hash probe chain; nothing is
 * allocated after init.
 *
 * Must not: know about peers or relay modes.
 */
#ifndef BT2C_SEEN_H
#define BT2C_SEEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEEN_ID_LEN 32

struct seen_entry {
  uint8_t id[SEEN_ID_LEN];
  double at;     /* when first seen (monotonic seconds) */
  uint32_t next; /* bucket chain, SEEN_NONE at the end */
  uint32_t from; /* caller's tag, e.g. which peer delivered it first */
  uint8_t hops;  /* caller's note: the fewest hops it arrived with */
  bool stopped;  /* caller's note: that copy could not travel further */
};

struct seen {
  struct seen_entry *ring;
  uint32_t *buckets;
  uint32_t cap, mask, head, count;
  double ttl;
  uint64_t evicted_early; /* dropped by the capacity bound before expiring */
};

/* capacity entries (at least 16), remembered ttl seconds. Returns 0 or -1. */
int seen_init(struct seen *s, uint32_t capacity, double ttl);
void seen_free(struct seen *s);

/* If id is known and unexpired at `now`, returns true (and *from its tag).
 * Otherwise remembers it with tag `from` and returns false. */
bool seen_check_insert(struct seen *s, const uint8_t id[SEEN_ID_LEN], double now, uint32_t from,
                       uint32_t *first_from);
/* The same, for a caller that wants the entry: the new entry, or NULL when
 * id was already known (one probe where check_insert + lookup take two). */
struct seen_entry *seen_insert(struct seen *s, const uint8_t id[SEEN_ID_LEN], double now,
                               uint32_t from);
/* Starts loading what a lookup of id will touch, so that lookups of a batch
 * overlap their cache misses: stage 0 the bucket, stage 1 (after stage 0 for
 * the whole batch) the first entry of its chain. No effect on the contents. */
void seen_prefetch(const struct seen *s, const uint8_t id[SEEN_ID_LEN], int stage);
bool seen_contains(const struct seen *s, const uint8_t id[SEEN_ID_LEN], double now);
/* The live entry for id, or NULL (the caller may update hops/stopped). */
struct seen_entry *seen_lookup(struct seen *s, const uint8_t id[SEEN_ID_LEN], double now);
/* Drops every expired entry (oldest first). Returns how many. */
uint32_t seen_sweep(struct seen *s, double now);

#endif
