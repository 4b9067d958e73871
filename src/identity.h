/* identity: this node's Ed25519 key and the node ids derived from keys.
 *
 * The key lives in <dataDir>/node.key (PEM, PKCS#8, mode 0600), created on
 * first start. A node id is the first 20 bytes of SHA-256(public key),
 * written as 40 lowercase hex characters.
 *
 * Must not: know about the handshake's transcript or any peer; it signs and
 * verifies bytes it is given.
 */
#ifndef BT2C_IDENTITY_H
#define BT2C_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#include "envelope.h"

#define ID_PUBKEY_LEN 32
#define ID_SIG_LEN 64

struct identity {
  void *pkey; /* EVP_PKEY */
  uint8_t pub[ID_PUBKEY_LEN];
  uint8_t id[ENV_NODE_ID_LEN];
  char id_hex[ENV_NODE_ID_LEN * 2 + 1];
};

/* Loads <dir>/node.key, or creates it if absent. Refuses a key file that
 * others can read. Returns 0, or -1 with a message in err. */
int identity_load_or_create(struct identity *me, const char *dir, char *err, size_t errcap);
/* A fresh key that is not stored (for tests and tools). */
int identity_generate(struct identity *me);
void identity_free(struct identity *me);

int identity_sign(const struct identity *me, const void *msg, size_t len, uint8_t sig[ID_SIG_LEN]);
/* 1 if sig is a valid signature of msg by pub, else 0. */
int identity_verify(const uint8_t pub[ID_PUBKEY_LEN], const void *msg, size_t len,
                    const uint8_t sig[ID_SIG_LEN]);

void identity_id_of(const uint8_t pub[ID_PUBKEY_LEN], uint8_t id[ENV_NODE_ID_LEN]);

/* Hex helpers (lowercase out; in accepts either case). */
void hex_encode(const uint8_t *in, size_t len, char *out); /* out: 2*len+1 */
/* Returns 0 if `hex` is exactly 2*len hex digits, else -1. */
int hex_decode(const char *hex, size_t hexlen, uint8_t *out, size_t len);

#endif
