/* relay: MessageRelay — the gossip fast path and direct relay.
 *
 * Every application message (types 4..13) passes through here once per
 * envelope: duplicate filter (seen.c), message-id check for new ids, delivery
 * to the application exactly once per id, scoring of block/transaction
 * deliveries, and forwarding. Forwarding re-encodes the envelope once (hops
 * + 1, this node appended to the path) and queues the same bytes for every
 * target; targets are chosen by the relay mode of the message type, which
 * relay.lua decides on events and C caches: Lua never runs per message.
 *
 * Modes: FLOOD, every eligible peer; SELECTIVE, eligible peers scoring at
 * least relayThreshold (trusted ones first), or — when none qualifies, as in
 * a young network — the best eligible peers not below neutral;
 * VALIDATOR_ONLY, eligible authenticated validators. Eligible: established,
 * not the peer it came from, not its origin, not on its path.
 *
 * Must not: parse JSON beyond the validity check, or allocate per target.
 */
#ifndef BT2C_RELAY_H
#define BT2C_RELAY_H

#include <stdbool.h>
#include <stdint.h>

#include "conf.h"
#include "envelope.h"
#include "pull.h"
#include "seen.h"

struct netmgr;
struct peer;

enum relay_drop {
  DROP_HOPS,       /* reached maxRelayHops: delivered, not forwarded */
  DROP_BAD_ID,     /* message id does not match the payload */
  DROP_BAD_JSON,   /* payload is not a JSON object */
  DROP_NO_TARGET,  /* nobody to forward to (mode, path) */
  DROP_NOT_RELAYABLE, /* RELAY flag on a type that is never relayed */
  DROP_QUEUE,      /* a target's send queue shed it */
  DROP_REFUSED,    /* a consumer (chain, consensus) found it bad: not forwarded */
  DROP_COUNT
};

struct relay_type_stats {
  uint64_t received, delivered, relayed, duplicates;
};

#define RELAY_MAX_DIRECT 1024

/* A direct message this node originated and is waiting to hear about. */
struct relay_direct {
  uint8_t id[ENV_MSG_ID_LEN];
  uint8_t target[ENV_NODE_ID_LEN];
  double deadline; /* monotonic */
  bool used;
};

struct relay {
  struct netmgr *nm;
  const struct conf *conf;
  struct seen seen;
  struct pull pull; /* SELECTIVE: announce to the peers left out, serve their requests */
  double next_sweep;
  enum relay_mode modes[MSG_TYPE_COUNT];
  bool modes_valid;
  double modes_at;
  struct relay_type_stats by_type[MSG_TYPE_COUNT];
  uint64_t received, delivered, relayed, duplicates, dropped[DROP_COUNT];
  uint64_t rescued; /* later copies forwarded because the first stopped at the hop limit */
  uint64_t rng;     /* for SELECTIVE's random choice of targets */
  uint64_t direct_sent, direct_delivered, direct_failed;
  struct relay_direct direct[RELAY_MAX_DIRECT];
  /* Called when a direct message this node sent is delivered or fails. */
  void (*direct_result)(void *ud, const uint8_t id[ENV_MSG_ID_LEN],
                        const uint8_t target[ENV_NODE_ID_LEN], const char *status);
  void *ud;
};

int relay_init(struct relay *r, struct netmgr *nm, const struct conf *c);
void relay_free(struct relay *r);

/* An application envelope from p. Returns -1 if p is being closed. */
int relay_on_message(struct relay *r, struct peer *p, const struct envelope *e);
/* Before a batch (one WebSocket message) is handled envelope by envelope:
 * starts loading the duplicate filter's memory for all of its ids at once. */
void relay_prefetch(const struct relay *r, const uint8_t *batch, size_t len);

/* Originates a gossip message (RELAY flag) to the peers the mode of `type`
 * selects. Returns the number of peers it was queued for, or -1 for a bad
 * payload; *id gets its message id. */
int relay_broadcast(struct relay *r, int type, const char *payload, size_t len,
                    uint8_t id[ENV_MSG_ID_LEN]);

/* Originates a direct message to a node that may not be connected: it goes
 * to the target if connected, else to every eligible peer, each forwarding
 * it the same way within maxRelayHops. The target answers with a `relay`
 * receipt; without one within the timeout the result is "timeout". Returns
 * the number of peers it left on, 0 when there is no route, -1 for a bad
 * payload or a full table of pending messages. */
int relay_send_direct(struct relay *r, const uint8_t target[ENV_NODE_ID_LEN], int type,
                      const char *payload, size_t len, uint8_t id[ENV_MSG_ID_LEN]);

/* Sweeps the duplicate filter every cleanupInterval, expires direct
 * messages, refreshes cached modes. */
void relay_tick(struct relay *r, double now);

/* The peer set or scores changed, or policies were reloaded: ask relay.lua
 * for the modes again (at the next message). */
void relay_invalidate_modes(struct relay *r);
enum relay_mode relay_mode_of(struct relay *r, int type);

const char *relay_drop_name(enum relay_drop d);

/* The target choice itself, free of peers and sockets (so it can be tested
 * alone): candidates are the established peers; `from` marks the one the
 * message came from. Writes the indices of the chosen ones to out and
 * returns how many. */
struct relay_candidate {
  const uint8_t *id; /* ENV_NODE_ID_LEN bytes */
  double score;
  bool validator;
  bool from;
};
struct relay_choice {
  enum relay_mode mode;
  double threshold; /* SELECTIVE */
  int fanout;       /* SELECTIVE: at most this many targets */
  double trusted, neutral;
  uint64_t *rng;    /* SELECTIVE picks at random: xorshift state, never 0 */
};
int relay_select(const struct relay_candidate *c, int n, const struct envelope *e,
                 const struct relay_choice *how, int *out, int cap);

#endif
