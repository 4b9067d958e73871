/* pull: lazy pull for SELECTIVE gossip (announce, then fetch on demand).
 *
 * When SELECTIVE relay sends a message to only `fanout` of its eligible
 * peers, the others get its id in a batched announcement, a `relay` message
 * {"have": [ids]}. A peer that lacks one of them asks the announcer with
 * {"want": [ids]} and receives the very envelope the announcer sent, from a
 * short-lived cache of recent messages. Payloads then travel about once per
 * node (few duplicates) and still reach every node, as in gossipsub's
 * IHAVE/IWANT.
 *
 * Must not: decide targets (relay.c) or deliver messages; pulled envelopes
 * enter the normal relay path like any other.
 */
#ifndef BT2C_PULL_H
#define BT2C_PULL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "envelope.h"

struct msgbuf;
struct netmgr;
struct peer;
struct seen;

#define PULL_BATCH 64 /* ids per announcement or request */

struct pull_entry {
  uint8_t id[ENV_MSG_ID_LEN];
  struct msgbuf *m;
  double at;
};

struct pull_want {
  uint8_t id[ENV_MSG_ID_LEN];
  double deadline;
};

struct pull {
  struct pull_entry *ring; /* recent envelopes, oldest first */
  uint32_t cap, head, count;
  size_t bytes, max_bytes;
  double window; /* seconds an envelope stays fetchable */
  struct pull_want *wanted; /* asked for, not arrived yet */
  uint32_t wanted_cap;
  uint64_t announced, wants_sent, wanted_ids, served, misses;
};

int pull_init(struct pull *pl, uint32_t cap, size_t max_bytes, double window);
void pull_free(struct pull *pl);

/* Keeps m (a reference) fetchable under id for the window. */
void pull_remember(struct pull *pl, const uint8_t id[ENV_MSG_ID_LEN], struct msgbuf *m, double now);
/* Notes that p should hear of id (sent at the next pull_flush, or now when
 * p's batch is full). */
void pull_announce(struct pull *pl, struct netmgr *nm, struct peer *p,
                   const uint8_t id[ENV_MSG_ID_LEN]);
/* Sends every peer's pending announcements; drops expired cache entries and
 * requests. Called on netmgr's tick. */
void pull_flush(struct pull *pl, struct netmgr *nm, double now);

/* A `relay` message without a target that is {"have": ...} or {"want": ...}.
 * Returns 1 if it was one (handled), 0 if not, -1 if malformed (caller
 * rejects the peer). */
int pull_on_message(struct pull *pl, struct netmgr *nm, const struct seen *seen, struct peer *p,
                    const struct envelope *e, double now);

#endif
