/* bt2c: the integration API — how the other BT2C components meet the network.
 *
 * Four interfaces, each a structure of callbacks with a context pointer, that
 * a component written in C implements and hands to the integration object
 * (struct bt2c, one per node, owned by node.c):
 *
 *   BlockchainStore   where blocks, transactions and the mempool live;
 *   ConsensusEngine   what to do with authenticated proposals and votes;
 *   ValidatorManager  who the validators are;
 *   MonitoringService where metrics and notable events go.
 *
 * The node starts with built-in reference components (a sqlite chain store in
 * dataDir, a validator set from the configuration kept up to date by signed
 * VALIDATOR_SET messages, no consensus engine, no monitoring sink); a setter
 * with NULL puts the built-in one back. The integration layer itself checks
 * what belongs to the network: block and transaction structure and hashes,
 * chain linkage, signatures of consensus messages against the current
 * validator set, sync with peers. Consensus rules (fork choice, finality,
 * timestamps, balances) belong to the engine and the store's validate hooks.
 *
 * Everything runs on the node's one thread: callbacks are called from the
 * event loop (or from a console command) and must not block. Pointers passed
 * to a callback are valid for the duration of the call only. The full
 * contract, with the Lua side, is docs/INTEGRATION.md; the wire rules are
 * docs/PROTOCOL.md section 7.
 */
#ifndef BT2C_BT2C_H
#define BT2C_BT2C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define BT2C_HASH_HEX 64 /* a block or transaction hash: 64 lowercase hex */
#define BT2C_ID_HEX 40   /* a node id */
#define BT2C_VOTE_MAX 32 /* length of a vote kind ("prevote", "precommit", ...) */

struct bt2c;
struct netmgr;
struct conf;
struct loop;

/* A transaction whose structure and hash have been checked; `json` is its
 * canonical JSON (docs/PROTOCOL.md 7.2), `hash` member included. */
struct bt2c_transaction {
  char hash[BT2C_HASH_HEX + 1];
  const char *json;
  size_t json_len;
};

/* A block whose structure and hashes have been checked. `json` is its
 * canonical JSON, exactly what is stored and sent; the transactions' json
 * point into it. */
struct bt2c_block {
  char hash[BT2C_HASH_HEX + 1];
  long long height;
  char previous_hash[BT2C_HASH_HEX + 1];
  long long timestamp; /* ms since the Unix epoch */
  size_t n_transactions;
  struct bt2c_transaction *transactions; /* in block order */
  char *json;
  size_t json_len;
};

/* ---- BlockchainStore ------------------------------------------------------ */

struct bt2c_blockchain_store {
  void *ctx;
  /* The height of the tip (0: only the genesis block) and its hash. */
  long long (*height)(void *ctx);
  void (*tip)(void *ctx, char hash[BT2C_HASH_HEX + 1]);
  bool (*has_block)(void *ctx, const char *hash);
  /* Appends the canonical JSON of the block at `height` (hash NULL) or with
   * `hash` to out. Returns 0, or -1 when there is no such block. */
  int (*get_block)(void *ctx, long long height, const char *hash, struct buf *out);
  /* Stores b as the new tip. The layer has checked its structure, hashes and
   * linkage (height = tip + 1, previousHash = tip hash) and called
   * validate_block. Transactions of b leave the mempool. Returns 0, or -1
   * with a reason in err. */
  int (*put_block)(void *ctx, const struct bt2c_block *b, char *err, size_t errcap);
  bool (*has_transaction)(void *ctx, const char *hash);
  /* Appends the canonical JSON of a pending or confirmed transaction. */
  int (*get_transaction)(void *ctx, const char *hash, struct buf *out);
  /* Adds a checked transaction to the mempool. Returns 0 (added), 1 (known
   * already, pending or confirmed), or -1 with a reason (mempool full...). */
  int (*put_transaction)(void *ctx, const struct bt2c_transaction *t, char *err, size_t errcap);
  /* Calls fn with up to max pending transactions, oldest first, until fn
   * returns non-zero. Returns how many it passed. */
  int (*pending)(void *ctx, int max, int (*fn)(void *ud, const struct bt2c_transaction *t),
                 void *ud);
  long long (*pending_count)(void *ctx);
  /* Extra rules (NULL: none). Return 0, or -1 with a reason: the block or
   * transaction is refused and its sender penalised. */
  int (*validate_block)(void *ctx, const struct bt2c_block *b, char *err, size_t errcap);
  int (*validate_transaction)(void *ctx, const struct bt2c_transaction *t, char *err,
                              size_t errcap);
  /* Optional (NULL: none): brackets around a run of put_block calls during
   * sync, so a store can write them in one transaction. */
  void (*begin)(void *ctx);
  void (*commit)(void *ctx);
};

/* ---- ConsensusEngine ------------------------------------------------------ */

/* A vote whose signature was verified against the current validator set. */
struct bt2c_vote {
  long long height;
  long long round;
  char block_hash[BT2C_HASH_HEX + 1]; /* "" for a nil vote */
  char vote[BT2C_VOTE_MAX + 1];       /* "prevote", "precommit", ... */
  char validator[BT2C_ID_HEX + 1];    /* the signer's node id */
  const char *json;                   /* the payload as received */
  size_t json_len;
};

/* A proposal signed by a validator of the current set; its block's
 * structure and hashes are checked (not its linkage: that is the engine's). */
struct bt2c_proposal {
  long long height;
  long long round;
  const struct bt2c_block *block;
  char proposer[BT2C_ID_HEX + 1];
  const char *json;
  size_t json_len;
};

struct bt2c_consensus_engine {
  void *ctx;
  /* A block became the new tip (from a peer, the sync, or this node). */
  void (*on_block)(void *ctx, const struct bt2c_block *b, const char *from);
  /* `from` is the node id of the peer that handed it over (not necessarily
   * its author: consensus messages are relayed). Either may be NULL. */
  void (*on_proposal)(void *ctx, const struct bt2c_proposal *p, const char *from);
  void (*on_vote)(void *ctx, const struct bt2c_vote *v, const char *from);
};

/* Signs a vote with this node's key and gossips it (CONSENSUS_VOTE, relayed
 * by the relay policy: VALIDATOR_ONLY while validators are connected).
 * block_hash may be "" (nil vote). Returns the number of peers it left on,
 * or -1 with a reason (not a validator, bad argument). The payload sent is
 * appended to out when out is not NULL. */
int bt2c_send_vote(struct bt2c *x, long long height, long long round, const char *block_hash,
                   const char *vote, struct buf *out, char *err, size_t errcap);
/* The same for a proposal of a block (its canonical JSON, checked first). */
int bt2c_send_proposal(struct bt2c *x, long long height, long long round, const char *block_json,
                       size_t block_len, struct buf *out, char *err, size_t errcap);

/* ---- ValidatorManager ----------------------------------------------------- */

struct bt2c_validator {
  char node_id[BT2C_ID_HEX + 1];
  uint8_t public_key[32];
  bool has_key; /* false for ids from the configuration */
  long long power;
};

struct bt2c_validator_manager {
  void *ctx;
  bool (*is_validator)(void *ctx, const char *node_id);
  /* Writes up to cap members of the current set to out (cap 0: just count);
   * returns the size of the set, and its epoch in *epoch. */
  int (*current)(void *ctx, struct bt2c_validator *out, int cap, long long *epoch);
  /* A VALIDATOR_SET that passed the layer's checks (epoch above the current
   * one, signed by more than 2/3 of the current set). Returns 0 when
   * adopted, -1 to refuse it. NULL: sets from the network are refused. */
  int (*adopt)(void *ctx, long long epoch, const struct bt2c_validator *v, int n);
};

/* Signs the set part ({"epoch", "validators"}) of a proposed VALIDATOR_SET
 * with this node's key: appends {"publicKey", "signature"} to out. */
int bt2c_sign_validator_set(struct bt2c *x, const char *json, size_t len, struct buf *out,
                            char *err, size_t errcap);
/* Checks a whole VALIDATOR_SET (7.4: epoch above the current one, signed by
 * more than 2/3 of the current set), adopts it and gossips it. Returns 0 or
 * -1 with a reason. */
int bt2c_submit_validator_set(struct bt2c *x, const char *json, size_t len, char *err,
                              size_t errcap);
/* Replaces the built-in manager's set locally (the operator's console; not
 * gossiped, not kept across restarts). -1 when another manager is in use. */
int bt2c_replace_validators(struct bt2c *x, const struct bt2c_validator *v, int n, long long epoch);

/* ---- MonitoringService ---------------------------------------------------- */

struct bt2c_metric {
  const char *name; /* "chain.height", "sync.requests_in_flight", ... */
  double value;
};

struct bt2c_monitoring_service {
  void *ctx;
  /* Once a second: a snapshot of every metric (docs/INTEGRATION.md). */
  void (*metrics)(void *ctx, const struct bt2c_metric *m, int n);
  /* A notable event ("block_added", "sync_started", "sync_completed",
   * "sync_bad_response", "consensus_rejected", "validator_set_adopted",
   * ...) with its details as a compact JSON object. NULL: none. */
  void (*event)(void *ctx, const char *name, const char *json);
};

/* ---- the integration object ----------------------------------------------- */

/* Opens the built-in chain store (<dataDir>/chain.db) and validator set and
 * installs the netmgr hooks (call after netmgr_start). Returns NULL after
 * logging why. */
struct bt2c *bt2c_start(struct netmgr *nm, const struct conf *c, struct loop *l);
/* Removes the hooks and closes the store (call before netmgr_stop). */
void bt2c_stop(struct bt2c *x);

/* Replace a component (NULL: the built-in one). The structure is copied. */
void bt2c_set_blockchain_store(struct bt2c *x, const struct bt2c_blockchain_store *s);
void bt2c_set_consensus_engine(struct bt2c *x, const struct bt2c_consensus_engine *e);
void bt2c_set_validator_manager(struct bt2c *x, const struct bt2c_validator_manager *v);
void bt2c_set_monitoring_service(struct bt2c *x, const struct bt2c_monitoring_service *m);

/* The components in use. */
const struct bt2c_blockchain_store *bt2c_store(const struct bt2c *x);
const struct bt2c_validator_manager *bt2c_validators(const struct bt2c *x);

/* Makes the next block on the tip from up to max_tx pending transactions and
 * `data_json` (a JSON value, or NULL for none), stores it and announces it.
 * Appends the block's JSON to out. Returns 0, or -1 with a reason. */
int bt2c_append_block(struct bt2c *x, const char *data_json, size_t data_len, int max_tx,
                      struct buf *out, char *err, size_t errcap);
/* Checks a transaction (JSON object; `hash` and `timestamp` are filled in
 * when absent), adds it to the mempool and gossips it. Writes its hash.
 * Returns 0 (new), 1 (known already) or -1 with a reason. */
int bt2c_add_transaction(struct bt2c *x, const char *json, size_t len,
                         char hash[BT2C_HASH_HEX + 1], char *err, size_t errcap);

/* Sync progress (console blockchain.sync_status()). */
struct bt2c_sync_status {
  long long height, target;
  bool syncing;
  int peers;             /* connected peers the sync may ask */
  int requests_in_flight;
  long long buffered;    /* blocks received ahead of the tip */
  uint64_t blocks_received, blocks_applied, requests_sent, bad_responses, timeouts,
      empty_responses, served_requests, served_blocks;
  double started_at, completed_at; /* unix seconds; 0: never */
};
void bt2c_sync_status(const struct bt2c *x, struct bt2c_sync_status *out);

/* Fills m (cap entries) with the current metrics; returns how many. */
int bt2c_metrics(const struct bt2c *x, struct bt2c_metric *m, int cap);

/* Asks connected peers (TRANSACTION_REQUEST) for transactions this node
 * lacks; they arrive in the mempool. Returns the number of peers asked. */
int bt2c_request_transactions(struct bt2c *x, const char (*hashes)[BT2C_HASH_HEX + 1], int n);

/* TEST ONLY, a fault injector: while on, this node answers BLOCK_REQUEST
 * with blocks whose content no longer matches their hash. */
void bt2c_test_corrupt_responses(struct bt2c *x, bool on);
/* TEST ONLY: while on, this node leaves BLOCK_REQUEST unanswered. */
void bt2c_test_silent_responses(struct bt2c *x, bool on);

#endif
