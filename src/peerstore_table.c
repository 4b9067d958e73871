/* peerstore_table: see peerstore_table.h. */
#include "peerstore_table.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Presizing stops here: a bound of millions grows on demand instead of
 * claiming its slots up front. */
#define PST_PRESIZE_MAX ((size_t)1 << 17)

/* ---- hashing ------------------------------------------------------------ */

static uint64_t pst_rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

#define PST_SIPROUND                                                            \
  do {                                                                          \
    v0 += v1, v1 = pst_rotl(v1, 13), v1 ^= v0, v0 = pst_rotl(v0, 32);           \
    v2 += v3, v3 = pst_rotl(v3, 16), v3 ^= v2;                                  \
    v0 += v3, v3 = pst_rotl(v3, 21), v3 ^= v0;                                  \
    v2 += v1, v1 = pst_rotl(v1, 17), v1 ^= v2, v2 = pst_rotl(v2, 32);           \
  } while (0)

/* SipHash-1-3: keyed, so the probe sequence of an id is not predictable. */
static uint64_t pst_siphash(uint64_t k0, uint64_t k1, const char *s, size_t len) {
  uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
  uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
  const unsigned char *p = (const unsigned char *)s;
  size_t full = len & ~(size_t)7;
  for (size_t i = 0; i < full; i += 8) {
    uint64_t m = 0;
    for (int j = 7; j >= 0; j--) m = (m << 8) | p[i + (size_t)j];
    v3 ^= m;
    PST_SIPROUND;
    v0 ^= m;
  }
  uint64_t b = (uint64_t)len << 56;
  for (size_t j = 0; j < (len & 7); j++) b |= (uint64_t)p[full + j] << (8 * j);
  v3 ^= b;
  PST_SIPROUND;
  v0 ^= b;
  v2 ^= 0xff;
  PST_SIPROUND;
  PST_SIPROUND;
  PST_SIPROUND;
  return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t pst_hash(const struct pst_map *m, const char *key) {
  return pst_siphash(m->k0, m->k1, key, strlen(key));
}

/* ---- the table ---------------------------------------------------------- */

int pst_init(struct pst_map *m, size_t expect, const char *(*key)(const void *), uint64_t k0,
             uint64_t k1) {
  size_t cap = 16;
  if (expect > PST_PRESIZE_MAX) expect = PST_PRESIZE_MAX;
  while (cap < expect * 2) cap <<= 1; /* load factor stays under 1/2 at the bound */
  m->slot = calloc(cap, sizeof *m->slot);
  m->cap = cap;
  m->used = 0;
  m->k0 = k0;
  m->k1 = k1;
  m->key = key;
  return m->slot ? 0 : -1;
}

size_t pst_find(const struct pst_map *m, const char *key, uint64_t h) {
  size_t mask = m->cap - 1;
  for (size_t i = h & mask; m->slot[i].item; i = (i + 1) & mask)
    if (m->slot[i].hash == h && strcmp(m->key(m->slot[i].item), key) == 0) return i;
  return PST_NONE;
}

static void pst_place(struct pst_slot *slot, size_t cap, uint64_t h, void *item) {
  size_t i = h & (cap - 1);
  while (slot[i].item) i = (i + 1) & (cap - 1);
  slot[i].hash = h;
  slot[i].item = item;
}

int pst_insert(struct pst_map *m, void *item, uint64_t h) {
  if ((m->used + 1) * 2 > m->cap) {
    size_t cap = m->cap * 2;
    struct pst_slot *slot = calloc(cap, sizeof *slot);
    if (!slot) return -1;
    for (size_t i = 0; i < m->cap; i++)
      if (m->slot[i].item) pst_place(slot, cap, m->slot[i].hash, m->slot[i].item);
    free(m->slot);
    m->slot = slot;
    m->cap = cap;
  }
  pst_place(m->slot, m->cap, h, item);
  m->used++;
  return 0;
}

/* Pulls later members of the probe run back into the hole, so that lookups
 * never need tombstones: an item may move if its home slot is not in the
 * (cyclic) range between the hole and where it sits now. */
void pst_remove_at(struct pst_map *m, size_t i) {
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

void pst_free(struct pst_map *m) {
  if (!m->slot) return;
  for (size_t i = 0; i < m->cap; i++) free(m->slot[i].item);
  free(m->slot);
  m->slot = NULL;
}
