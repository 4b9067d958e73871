/* envelope: the bt2c wire envelope and batches (docs/PROTOCOL.md).
 *
 * A WebSocket binary message is a batch of one or more envelopes back to
 * back. Each envelope: a 64-byte header (version, type, flags, hops, path
 * length, payload length, origin, message id), then the relay path, the
 * optional target, and the JSON payload. Decoding checks every length against
 * the bytes actually present before anything is used, and never allocates:
 * the decoded view points into the caller's buffer.
 *
 * Must not: parse the JSON payload, or know about peers and relay policy.
 */
#ifndef BT2C_ENVELOPE_H
#define BT2C_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#define ENV_VERSION 1
#define ENV_HEADER_LEN 64
#define ENV_NODE_ID_LEN 20
#define ENV_MSG_ID_LEN 32
#define ENV_MAX_PATH 32

enum msg_type {
  MSG_PEER_HANDSHAKE = 1,
  MSG_PEER_EXCHANGE,
  MSG_PEER_PING,
  MSG_BLOCK,
  MSG_TRANSACTION,
  MSG_BLOCK_REQUEST,
  MSG_TRANSACTION_REQUEST,
  MSG_CONSENSUS_VOTE,
  MSG_CONSENSUS_PROPOSAL,
  MSG_VALIDATOR_SET,
  MSG_NAT_TRAVERSAL,
  MSG_RELAY,
  MSG_NETWORK_STATUS,
  MSG_TYPE_COUNT /* one past the last */
};

enum env_flags {
  ENV_F_RELAY = 0x01,  /* gossip: receivers may forward it */
  ENV_F_DIRECT = 0x02, /* direct relay toward the target */
  ENV_F_TARGET = 0x04, /* a target node id follows the path */
  ENV_F_KNOWN = 0x07
};

struct envelope {
  uint8_t version, type, flags, hops, path_len;
  uint8_t origin[ENV_NODE_ID_LEN];
  uint8_t id[ENV_MSG_ID_LEN];
  const uint8_t *path;   /* path_len * ENV_NODE_ID_LEN bytes */
  const uint8_t *target; /* ENV_NODE_ID_LEN bytes, or NULL */
  const uint8_t *payload;
  uint32_t payload_len;
};

/* Decodes the envelope at buf; returns the bytes it occupies, or 0 with a
 * reason in *why ("truncated header", "unknown type 42", ...). */
size_t env_decode(const uint8_t *buf, size_t len, struct envelope *e, const char **why);

/* Bytes an envelope takes on the wire. */
size_t env_wire_len(unsigned path_len, int has_target, size_t payload_len);

/* Writes e (header, path, target, payload) to out, which must hold
 * env_wire_len() bytes; returns that length. */
size_t env_encode(uint8_t *out, const struct envelope *e);

/* The message id: SHA-256(type byte || payload). */
void env_message_id(uint8_t type, const void *payload, size_t len, uint8_t out[ENV_MSG_ID_LEN]);

/* "block", "peer_ping", ... (design contract names), or NULL. */
const char *env_type_name(int type);
/* The type for a name, or 0. */
int env_type_from_name(const char *name);

/* Walks a batch: calls fn for each envelope; stops at the first malformed
 * one. Returns the number of envelopes, or -1 with *why set (envelopes
 * before the bad one have been passed to fn). fn returns non-zero to stop. */
int env_batch_each(const uint8_t *buf, size_t len,
                   int (*fn)(const struct envelope *e, void *ud), void *ud, const char **why);

#endif
