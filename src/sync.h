/* sync: catching up with the chain of the peers (docs/PROTOCOL.md 7.3).
 *
 * Knows each connected peer's height (its HELLO, then every block it hands
 * over), and while the tip is below the best of them asks several peers at
 * once for batches of SYNC_BATCH blocks with BLOCK_REQUEST, one hop.
 * Responses are checked block by block; blocks wait in a bounded window
 * until they extend the tip. A request that times out is retried with
 * another peer and the slow one scored down (TIMEOUT) and rested; a
 * response that is provably wrong (a hash that does not match, heights
 * other than asked, a batch that does not chain) scores its sender down
 * (BAD_BLOCK, an invalid block delivery) and the range goes to another peer.
 * It also serves BLOCK_REQUEST and TRANSACTION_REQUEST and fetches missing
 * or pending transactions.
 *
 * Must not: decide which blocks are valid beyond structure, hashes and
 * linkage, or store blocks itself (the integration's apply callback does).
 */
#ifndef BT2C_SYNC_H
#define BT2C_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bt2c.h"
#include "json.h"
#include "peer.h"

#define SYNC_BATCH 100        /* blocks per request */
#define SYNC_WINDOW 1024      /* blocks held ahead of the tip */
#define SYNC_MAX_INFLIGHT 8   /* requests in flight */
#define SYNC_PER_PEER 2       /* requests in flight per peer */
#define SYNC_MAX_PEERS 256    /* peers whose heights are tracked */
#define SYNC_MAX_TX 500       /* transactions per request or response */
#define SYNC_WINDOW_BYTES (64u << 20)
#define SYNC_AHEAD 32         /* announced blocks kept this far above the tip */
#define SYNC_GRACE 0.5        /* seconds a gap of at most SYNC_AHEAD may fill by gossip */

struct netmgr;

struct sync_peer {
  char id[BT2C_ID_HEX + 1];
  long long height; /* what it claims; lowered when it cannot serve */
  double avoid_until; /* monotonic: not asked before */
  double last_asked;
  int in_flight;
  uint64_t served, bad, timeouts;
  struct rate serve_rate; /* requests it may make of us */
  bool used;
};

struct sync_request {
  uint64_t id;
  char peer[BT2C_ID_HEX + 1];
  long long from, to; /* blocks; to < from for a transaction request */
  double deadline;
  bool tx;
  bool used;
};

struct sync_slot {
  struct bt2c_block b;
  char peer[BT2C_ID_HEX + 1];
  bool solicited; /* an answer to our request (else a relayed announcement) */
  bool used;
};

/* Stores b on the tip (checks linkage, validate hooks, events). Returns 0,
 * 1 when it does not extend the tip, or -1 when refused by the validators. */
typedef int (*sync_apply_fn)(void *ud, const struct bt2c_block *b, const char *from);
/* A transaction fetched from a peer (checked): into the mempool. */
typedef int (*sync_add_tx_fn)(void *ud, const struct bt2c_transaction *t, const char *from);
typedef void (*sync_event_fn)(void *ud, const char *name, const char *json);

struct sync {
  struct netmgr *nm;
  const struct bt2c_blockchain_store *store; /* the integration's current store */
  size_t max_block;                          /* bytes of one block's JSON */
  size_t max_payload;                        /* bytes of one response payload */
  double timeout;                            /* seconds per request */
  sync_apply_fn apply;
  sync_add_tx_fn add_tx;
  sync_event_fn event;
  void *ud;

  struct sync_peer peers[SYNC_MAX_PEERS];
  struct sync_request req[SYNC_MAX_INFLIGHT + 4]; /* + a few transaction requests */
  struct sync_slot *window; /* SYNC_WINDOW slots, by height % SYNC_WINDOW */
  size_t window_bytes;
  long long buffered;
  uint64_t next_id;
  long long target;
  double behind_since; /* monotonic: since when the target is above the tip; 0: it is not */
  bool syncing;
  bool corrupt; /* test-only fault injector: serve blocks that do not match their hashes */
  bool silent;  /* test-only fault injector: leave block requests unanswered */
  double started_at, completed_at; /* unix seconds */
  long long started_height;
  uint64_t blocks_received, blocks_applied, requests_sent, bad_responses, timeouts,
      empty_responses, served_requests, served_blocks, tx_requests_sent, tx_received;
};

int sync_init(struct sync *s, struct netmgr *nm, const struct bt2c_blockchain_store *store,
              size_t max_block, size_t max_payload);
void sync_free(struct sync *s);

/* A peer finished its handshake: its HELLO height is known. */
void sync_peer_ready(struct sync *s, struct peer *p);
/* The peer has shown it has a block at `height` (it handed one over). */
void sync_saw_height(struct sync *s, const char *peer_id, long long height);
/* A checked block above tip + 1 announced by a peer: kept if it is at most
 * SYNC_AHEAD above the tip (gossip out of order; takes b); the peer's
 * height is raised, which starts the sync. */
void sync_on_future_block(struct sync *s, struct bt2c_block *b, const char *peer_id);
/* Applies the blocks of the window that extend the tip. */
void sync_drain(struct sync *s);

/* BLOCK_REQUEST / TRANSACTION_REQUEST from p: answered one hop. Returns 0,
 * or -1 when malformed (the caller penalises). */
int sync_serve_blocks(struct sync *s, struct peer *p, const struct json_value *v);
int sync_serve_transactions(struct sync *s, struct peer *p, const struct json_value *v);
/* A `block` / `transaction` response ({"requestId", ...}) from p. Returns
 * 0, or -1 when it is provably wrong (already penalised and logged). */
int sync_on_blocks(struct sync *s, struct peer *p, const struct json_value *v);
int sync_on_transactions(struct sync *s, struct peer *p, const struct json_value *v);

/* Asks up to `fanout` peers for these transactions (64 hex each). Returns
 * the number of requests sent. */
int sync_request_transactions(struct sync *s, const char (*hashes)[BT2C_HASH_HEX + 1], int n,
                              int fanout);
/* Asks p for up to SYNC_MAX_TX of its pending transactions. */
void sync_request_mempool(struct sync *s, struct peer *p);

/* Every 100 ms: expiries, the window, new requests. */
void sync_tick(struct sync *s, double now);

void sync_get_status(const struct sync *s, struct bt2c_sync_status *out);

#endif
