/* pull: see pull.h. */
#include "pull.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "identity.h"
#include "json.h"
#include "log.h"
#include "netmgr.h"
#include "peer.h"
#include "seen.h"

#define WANT_TIMEOUT 0.5 /* ask the next announcer after this */
#define PULL_MAX_PAYLOAD 8192

int pull_init(struct pull *pl, uint32_t cap, size_t max_bytes, double window) {
  memset(pl, 0, sizeof *pl);
  pl->ring = calloc(cap, sizeof *pl->ring);
  pl->wanted_cap = 1024;
  pl->wanted = calloc(pl->wanted_cap, sizeof *pl->wanted);
  if (pl->ring == NULL || pl->wanted == NULL) {
    pull_free(pl);
    return -1;
  }
  pl->cap = cap;
  pl->max_bytes = max_bytes;
  pl->window = window;
  return 0;
}

void pull_free(struct pull *pl) {
  for (uint32_t i = 0; i < pl->count; i++) msgbuf_unref(pl->ring[(pl->head + i) % pl->cap].m);
  free(pl->ring);
  free(pl->wanted);
  memset(pl, 0, sizeof *pl);
}

static void drop_oldest(struct pull *pl) {
  struct pull_entry *e = &pl->ring[pl->head];
  pl->bytes -= e->m->len;
  msgbuf_unref(e->m);
  e->m = NULL;
  pl->head = (pl->head + 1) % pl->cap;
  pl->count--;
}

void pull_remember(struct pull *pl, const uint8_t id[ENV_MSG_ID_LEN], struct msgbuf *m, double now) {
  if (pl->cap == 0) return;
  while (pl->count && (pl->count == pl->cap || pl->bytes + m->len > pl->max_bytes)) drop_oldest(pl);
  struct pull_entry *e = &pl->ring[(pl->head + pl->count) % pl->cap];
  memcpy(e->id, id, ENV_MSG_ID_LEN);
  msgbuf_ref(m);
  e->m = m;
  e->at = now;
  pl->bytes += m->len;
  pl->count++;
}

/* Newest first: a want is almost always for something just announced. */
static struct msgbuf *cached(const struct pull *pl, const uint8_t id[ENV_MSG_ID_LEN]) {
  for (uint32_t k = pl->count; k > 0; k--) {
    const struct pull_entry *e = &pl->ring[(pl->head + k - 1) % pl->cap];
    if (memcmp(e->id, id, ENV_MSG_ID_LEN) == 0) return e->m;
  }
  return NULL;
}

static void send_ids(struct netmgr *nm, struct peer *p, const char *key,
                     const uint8_t (*ids)[ENV_MSG_ID_LEN], int n) {
  struct buf b = {0};
  buf_appendf(&b, "{\"%s\":[", key);
  for (int i = 0; i < n; i++) {
    char hex[ENV_MSG_ID_LEN * 2 + 1];
    hex_encode(ids[i], ENV_MSG_ID_LEN, hex);
    buf_appendf(&b, "%s\"%s\"", i ? "," : "", hex);
  }
  buf_appendf(&b, "]}");
  netmgr_send_json(nm, p, MSG_RELAY, &b);
  buf_free(&b);
}

static void flush_peer(struct pull *pl, struct netmgr *nm, struct peer *p) {
  if (p->n_have == 0) return;
  send_ids(nm, p, "have", (const uint8_t(*)[ENV_MSG_ID_LEN])p->have, p->n_have);
  pl->announced += p->n_have;
  p->n_have = 0;
}

void pull_announce(struct pull *pl, struct netmgr *nm, struct peer *p,
                   const uint8_t id[ENV_MSG_ID_LEN]) {
  if (p->have == NULL) {
    p->have = malloc(PULL_BATCH * ENV_MSG_ID_LEN);
    if (p->have == NULL) return;
  }
  memcpy(p->have[p->n_have++], id, ENV_MSG_ID_LEN);
  if (p->n_have == PULL_BATCH) flush_peer(pl, nm, p);
}

void pull_flush(struct pull *pl, struct netmgr *nm, double now) {
  for (struct peer *p = nm->peers; p; p = p->next)
    if (p->counted) flush_peer(pl, nm, p);
  while (pl->count && pl->ring[pl->head].at + pl->window < now) drop_oldest(pl);
}

static struct pull_want *want_find(struct pull *pl, const uint8_t id[ENV_MSG_ID_LEN], double now) {
  for (uint32_t i = 0; i < pl->wanted_cap; i++)
    if (pl->wanted[i].deadline > now && memcmp(pl->wanted[i].id, id, ENV_MSG_ID_LEN) == 0)
      return &pl->wanted[i];
  return NULL;
}

static void want_add(struct pull *pl, const uint8_t id[ENV_MSG_ID_LEN], double now) {
  struct pull_want *slot = NULL;
  for (uint32_t i = 0; i < pl->wanted_cap && slot == NULL; i++)
    if (pl->wanted[i].deadline <= now) slot = &pl->wanted[i];
  if (slot == NULL) return; /* full: the next announcer will be asked later */
  memcpy(slot->id, id, ENV_MSG_ID_LEN);
  slot->deadline = now + WANT_TIMEOUT;
}

/* Reads the id list under `key` into ids; returns how many, or -1. */
static int read_ids(const struct json_value *list, uint8_t (*ids)[ENV_MSG_ID_LEN]) {
  if (list == NULL || list->type != JSON_ARRAY || list->len > PULL_BATCH) return -1;
  for (size_t i = 0; i < list->len; i++) {
    const struct json_value *v = list->items[i];
    if (v->type != JSON_STRING || hex_decode(v->str, v->len, ids[i], ENV_MSG_ID_LEN) != 0)
      return -1;
  }
  return (int)list->len;
}

int pull_on_message(struct pull *pl, struct netmgr *nm, const struct seen *seen, struct peer *p,
                    const struct envelope *e, double now) {
  if (e->target || e->flags || e->payload_len > PULL_MAX_PAYLOAD) return 0;
  struct json_doc doc;
  char err[64];
  if (json_parse((const char *)e->payload, e->payload_len, &doc, err, sizeof err) != 0) return 0;
  const struct json_value *have = json_get(doc.root, "have");
  const struct json_value *want = json_get(doc.root, "want");
  int rc = 0;
  uint8_t ids[PULL_BATCH][ENV_MSG_ID_LEN];
  if (have) {
    int n = read_ids(have, ids);
    rc = n < 0 ? -1 : 1;
    uint8_t missing[PULL_BATCH][ENV_MSG_ID_LEN];
    int m = 0;
    for (int i = 0; i < n; i++) {
      if (seen_contains(seen, ids[i], now) || want_find(pl, ids[i], now)) continue;
      want_add(pl, ids[i], now);
      memcpy(missing[m++], ids[i], ENV_MSG_ID_LEN);
    }
    if (m) {
      send_ids(nm, p, "want", (const uint8_t(*)[ENV_MSG_ID_LEN])missing, m);
      pl->wants_sent++;
      pl->wanted_ids += (uint64_t)m;
    }
  } else if (want) {
    int n = read_ids(want, ids);
    rc = n < 0 ? -1 : 1;
    for (int i = 0; i < n; i++) {
      struct msgbuf *m = cached(pl, ids[i]);
      if (m == NULL) {
        pl->misses++;
        continue;
      }
      netmgr_queue(nm, p, m);
      pl->served++;
    }
  }
  json_free(&doc);
  return rc;
}
