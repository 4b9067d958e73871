/* chain: blocks and transactions — their hashes and structural checks
 * (docs/PROTOCOL.md 7.2) and the genesis block. Their canonical form (RFC
 * 8785) is chain_jcs.h's; the built-in BlockchainStore that keeps them, a
 * sqlite file, is chain_store.h's.
 *
 * The checks are the network's: well-formed JSON of the documented shape,
 * hashes that match the content. They are not consensus rules (who may
 * make a block, timestamps, balances); linkage to the tip is the store's.
 *
 * Must not: touch the network, peers, Lua or the disk.
 */
#ifndef BT2C_CHAIN_H
#define BT2C_CHAIN_H

#include <stdbool.h>
#include <stddef.h>

#include "bt2c.h"
#include "buf.h"
#include "json.h"

#define CHAIN_MAX_TX_BYTES 65536  /* canonical JSON of one transaction */
#define CHAIN_MAX_TXS 10000       /* transactions in one block */
#define CHAIN_MAX_STRING 256      /* `from`, `to` */
#define CHAIN_MEMPOOL_MAX 20000   /* pending transactions kept */
#define CHAIN_MAX_INT 9007199254740992.0 /* 2^53: integers stay exact everywhere */

/* ---- hashes --------------------------------------------------------------- */

/* SHA-256 of data as 64 lowercase hex. */
void chain_sha256_hex(const void *data, size_t len, char out[BT2C_HASH_HEX + 1]);

/* A block's hash from its parts (7.2): data_hash is the hash of the
 * canonical JSON of its `data`, or NULL when it has none. */
void chain_block_hash(long long height, const char *previous_hash, long long timestamp,
                      const struct bt2c_transaction *txs, size_t n, const char *data_hash,
                      char out[BT2C_HASH_HEX + 1]);

/* The genesis block every node starts from (height 0). The caller frees. */
void chain_genesis(struct bt2c_block *out);

/* ---- checks ------------------------------------------------------------- */

/* Checks a transaction object: shape, sizes and its hash. Appends its
 * canonical JSON (hash included, lowercase) to canon and writes its hash.
 * Returns 0, or -1 with a reason. */
int chain_tx_check(const struct json_value *v, struct buf *canon, char hash[BT2C_HASH_HEX + 1],
                   char *err, size_t errcap);

/* Checks a block object (shape, every transaction, the block hash) and fills
 * out (free with chain_block_free). max_bytes bounds its canonical JSON.
 * Members other than the documented ones are ignored (not kept). Returns 0,
 * or -1 with a reason. */
int chain_block_check(const struct json_value *v, size_t max_bytes, struct bt2c_block *out,
                      char *err, size_t errcap);
/* Parses JSON text and checks it as a block. */
int chain_block_parse(const char *json, size_t len, size_t max_bytes, struct bt2c_block *out,
                      char *err, size_t errcap);
void chain_block_free(struct bt2c_block *b);

/* Builds the block on (height - 1, previous_hash) from canonical
 * transactions (each with its hash) and an optional canonical data value:
 * computes its hash and fills out. Returns 0, or -1 with a reason. */
int chain_block_make(long long height, const char *previous_hash, long long timestamp,
                     const struct bt2c_transaction *txs, size_t n, const char *data_canon,
                     size_t data_len, struct bt2c_block *out, char *err, size_t errcap);

#endif
