/* seen: see seen.h. */
#include "seen.h"

#include <stdlib.h>
#include <string.h>

#define SEEN_NONE UINT32_MAX

int seen_init(struct seen *s, uint32_t capacity, double ttl) {
  memset(s, 0, sizeof *s);
  if (capacity < 16) capacity = 16;
  uint32_t nb = 16;
  while (nb < capacity && nb < (1u << 31)) nb <<= 1; /* load factor <= 1 */
  s->ring = malloc((size_t)capacity * sizeof *s->ring);
  s->buckets = malloc((size_t)nb * sizeof *s->buckets);
  if (s->ring == NULL || s->buckets == NULL) {
    seen_free(s);
    return -1;
  }
  memset(s->buckets, 0xff, (size_t)nb * sizeof *s->buckets);
  s->cap = capacity;
  s->mask = nb - 1;
  s->ttl = ttl;
  return 0;
}

void seen_free(struct seen *s) {
  free(s->ring);
  free(s->buckets);
  memset(s, 0, sizeof *s);
}

/* Ids are SHA-256 outputs: any 4 bytes are a good hash. */
static uint32_t bucket_of(const struct seen *s, const uint8_t *id) {
  uint32_t h;
  memcpy(&h, id, sizeof h);
  return h & s->mask;
}

static uint32_t find(const struct seen *s, const uint8_t *id) {
  for (uint32_t i = s->buckets[bucket_of(s, id)]; i != SEEN_NONE; i = s->ring[i].next)
    if (memcmp(s->ring[i].id, id, SEEN_ID_LEN) == 0) return i;
  return SEEN_NONE;
}

/* Removes the oldest entry (the ring's head) from its bucket chain. */
static void drop_oldest(struct seen *s) {
  uint32_t victim = s->head;
  uint32_t *link = &s->buckets[bucket_of(s, s->ring[victim].id)];
  while (*link != SEEN_NONE && *link != victim) link = &s->ring[*link].next;
  if (*link == victim) *link = s->ring[victim].next;
  s->head = (s->head + 1) % s->cap;
  s->count--;
}

/* Remembers id, which find() gave as `stale` (an expired entry) or SEEN_NONE. */
static struct seen_entry *add(struct seen *s, const uint8_t id[SEEN_ID_LEN], double now,
                              uint32_t from, uint32_t stale) {
  uint32_t i = stale;
  if (i != SEEN_NONE) {
    /* Expired but not swept: forget it now, oldest-first order permitting
     * (everything before it is older, hence expired too). */
    while (s->count) {
      uint32_t h = s->head;
      drop_oldest(s);
      if (h == i) break;
    }
  }
  if (s->count == s->cap) {
    drop_oldest(s);
    s->evicted_early++;
  }
  uint32_t slot = (s->head + s->count) % s->cap;
  struct seen_entry *e = &s->ring[slot];
  memcpy(e->id, id, SEEN_ID_LEN);
  e->at = now;
  e->from = from;
  e->hops = 0;
  e->stopped = false;
  uint32_t b = bucket_of(s, id);
  e->next = s->buckets[b];
  s->buckets[b] = slot;
  s->count++;
  return e;
}

void seen_prefetch(const struct seen *s, const uint8_t id[SEEN_ID_LEN], int stage) {
  const uint32_t *b = &s->buckets[bucket_of(s, id)];
  if (stage == 0) {
    __builtin_prefetch(b);
    return;
  }
  if (*b != SEEN_NONE) __builtin_prefetch(&s->ring[*b]);
}

bool seen_contains(const struct seen *s, const uint8_t id[SEEN_ID_LEN], double now) {
  uint32_t i = find(s, id);
  return i != SEEN_NONE && now < s->ring[i].at + s->ttl;
}

struct seen_entry *seen_lookup(struct seen *s, const uint8_t id[SEEN_ID_LEN], double now) {
  uint32_t i = find(s, id);
  return (i != SEEN_NONE && now < s->ring[i].at + s->ttl) ? &s->ring[i] : NULL;
}

bool seen_check_insert(struct seen *s, const uint8_t id[SEEN_ID_LEN], double now, uint32_t from,
                       uint32_t *first_from) {
  uint32_t i = find(s, id);
  if (i != SEEN_NONE && now < s->ring[i].at + s->ttl) {
    if (first_from) *first_from = s->ring[i].from;
    return true;
  }
  add(s, id, now, from, i);
  return false;
}

struct seen_entry *seen_insert(struct seen *s, const uint8_t id[SEEN_ID_LEN], double now,
                               uint32_t from) {
  uint32_t i = find(s, id);
  if (i != SEEN_NONE && now < s->ring[i].at + s->ttl) return NULL;
  return add(s, id, now, from, i);
}

uint32_t seen_sweep(struct seen *s, double now) {
  uint32_t n = 0;
  while (s->count && now >= s->ring[s->head].at + s->ttl) {
    drop_oldest(s);
    n++;
  }
  return n;
}
