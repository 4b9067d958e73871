/* chain_store: the built-in BlockchainStore, a sqlite file in dataDir (WAL,
 * prepared statements, batched commits) holding the chain, the mempool and
 * the adopted validator set. A new file starts with the genesis block; a
 * file that is not ours, of another schema version or from another genesis
 * is refused.
 *
 * Must not: judge a block's content (chain.c's checks do; put_block only
 * insists that a block extends the tip), touch the network, peers or Lua,
 * or hold more than CHAIN_MEMPOOL_MAX pending transactions.
 */
#ifndef BT2C_CHAIN_STORE_H
#define BT2C_CHAIN_STORE_H

#include <stddef.h>

#include "bt2c.h"
#include "buf.h"

struct chain;

/* Opens (creating if needed, with the genesis block) <path>. Returns NULL
 * with a message in err. */
struct chain *chainstore_open(const char *path, char *err, size_t errcap);
void chainstore_close(struct chain *ch);

/* The BlockchainStore interface over ch. */
void chainstore_iface(struct chain *ch, struct bt2c_blockchain_store *out);

long long chainstore_height(const struct chain *ch);
const char *chainstore_tip_hash(const struct chain *ch);

/* Validator set persistence for the built-in ValidatorManager: the last
 * adopted set as compact JSON with its epoch. get returns 0 and appends the
 * text, or -1 when none was stored. */
int chainstore_get_validator_set(struct chain *ch, long long *epoch, struct buf *out);
int chainstore_put_validator_set(struct chain *ch, long long epoch, const char *json, size_t len);

struct chain_stats {
  unsigned long commits, blocks_written, tx_written;
};
void chainstore_get_stats(const struct chain *ch, struct chain_stats *out);

#endif
