/* consensus: who the validators are and proof that a consensus message
 * comes from one (docs/PROTOCOL.md 7.4).
 *
 * A relayed message's envelope origin is authenticated for one hop only, so
 * CONSENSUS_VOTE, CONSENSUS_PROPOSAL and VALIDATOR_SET carry their signers'
 * public keys and Ed25519 signatures over domain-separated signing bytes;
 * this unit builds those bytes, signs with the node key, and checks
 * received messages against a ValidatorManager. It also is the built-in
 * ValidatorManager: the configuration's `validators` (epoch 0), replaced by
 * VALIDATOR_SET messages signed by more than 2/3 of the current set (and
 * kept in the chain store), or by the operator from the console.
 *
 * Must not: send anything or touch peers; the integration layer does.
 */
#ifndef BT2C_CONSENSUS_H
#define BT2C_CONSENSUS_H

#include <stdbool.h>
#include <stddef.h>

#include "bt2c.h"
#include "buf.h"
#include "identity.h"
#include "json.h"

#define CONSENSUS_MAX_VALIDATORS 1000

struct chain;
struct conf;

/* What a check found. Only CV_OK messages reach the engine. */
enum consensus_verdict {
  CV_OK,
  CV_UNSIGNED,      /* no validator/publicKey/signature at all: not a bt2c consensus message */
  CV_MALFORMED,     /* fields missing or of the wrong type */
  CV_BAD_KEY,       /* the claimed node id is not derived from the public key */
  CV_BAD_SIGNATURE, /* the signature does not verify */
  CV_NOT_VALIDATOR, /* a valid signature by a node outside the current set */
  CV_NO_QUORUM,     /* validator_set: not signed by more than 2/3 of the current set */
  CV_STALE          /* validator_set: epoch not above the current one */
};
const char *consensus_verdict_name(enum consensus_verdict v);

/* ---- signing bytes (7.4) ---------------------------------------------------- */

void consensus_vote_bytes(struct buf *out, const char *network_id, long long height,
                          long long round, const char *block_hash, const char *vote);
void consensus_proposal_bytes(struct buf *out, const char *network_id, long long height,
                              long long round, const char *block_hash);
void consensus_set_bytes(struct buf *out, const char *network_id, long long epoch,
                         const struct bt2c_validator *v, int n);

/* ---- signing by this node: each appends a whole payload ----------------------- */

int consensus_sign_vote(struct buf *out, const struct identity *me, const char *network_id,
                        long long height, long long round, const char *block_hash,
                        const char *vote, char *err, size_t errcap);
int consensus_sign_proposal(struct buf *out, const struct identity *me, const char *network_id,
                            long long height, long long round, const struct bt2c_block *b);
/* Appends {"publicKey":..,"signature":..} for a proposed set. */
int consensus_sign_set(struct buf *out, const struct identity *me, const char *network_id,
                       long long epoch, const struct bt2c_validator *v, int n);

/* ---- checks ------------------------------------------------------------------ */

enum consensus_verdict consensus_check_vote(const struct json_value *v, const char *network_id,
                                            const struct bt2c_validator_manager *vm,
                                            struct bt2c_vote *out, char *err, size_t errcap);
/* blk receives the checked block (free with chain_block_free when CV_OK). */
enum consensus_verdict consensus_check_proposal(const struct json_value *v, const char *network_id,
                                                const struct bt2c_validator_manager *vm,
                                                size_t max_block, struct bt2c_proposal *out,
                                                struct bt2c_block *blk, char *err, size_t errcap);
/* Parses the set part ({epoch, validators}) of a VALIDATOR_SET or console
 * table: ids derived from keys, ascending ids, powers. *out is malloc'd. */
int consensus_parse_set(const struct json_value *v, long long *epoch, struct bt2c_validator **out,
                        int *n, char *err, size_t errcap);
/* The whole rule: parse, epoch above the current, quorum of the current set.
 * On CV_OK *out holds the new set (malloc'd) and *signers the quorum count. */
enum consensus_verdict consensus_check_set(const struct json_value *v, const char *network_id,
                                           const struct bt2c_validator_manager *vm,
                                           long long *epoch, struct bt2c_validator **out, int *n,
                                           int *signers, char *err, size_t errcap);
/* Appends {"epoch":..,"validators":[...]} (canonical). */
void consensus_write_set(struct buf *out, long long epoch, const struct bt2c_validator *v, int n);

/* ---- the built-in ValidatorManager ------------------------------------------ */

struct consensus_vset {
  struct bt2c_validator *v;
  int n;
  long long epoch;
  char source[16]; /* "config", "network", "console" */
  struct chain *store; /* sets adopted from the network are kept here */
};

/* The stored set if the chain store has one, else the configuration's. */
int consensus_vset_init(struct consensus_vset *s, const struct conf *c, struct chain *store);
void consensus_vset_free(struct consensus_vset *s);
void consensus_vset_iface(struct consensus_vset *s, struct bt2c_validator_manager *out);
/* Replaces the set (copied). Sets from the network are persisted. */
int consensus_vset_replace(struct consensus_vset *s, long long epoch,
                           const struct bt2c_validator *v, int n, const char *source);

#endif
