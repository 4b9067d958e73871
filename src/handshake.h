/* handshake: the bt2c handshake messages (docs/PROTOCOL.md section 4).
 *
 * Builds and checks HELLO and AUTH payloads and the signed transcript. The
 * per-connection state machine that uses them is in peer.c.
 *
 * Must not: touch sockets or decide policy; it only says whether the bytes
 * are well-formed and the cryptography holds, with the close code to use.
 */
#ifndef BT2C_HANDSHAKE_H
#define BT2C_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "candidates.h"
#include "identity.h"

#define HS_PROTOCOL_VERSION 1
#define HS_NONCE_LEN 32
#define HS_MAX_PAYLOAD 16384
#define HS_MAX_METADATA 4096
#define HS_MAX_NETWORK_ID 64
#define HS_TRANSCRIPT_MAX (17 + 1 + 1 + 1 + HS_MAX_NETWORK_ID + 2 * 20 + 2 * HS_NONCE_LEN)

struct hs_hello {
  int version;
  char network_id[HS_MAX_NETWORK_ID + 1];
  uint8_t node_id[ENV_NODE_ID_LEN];
  uint8_t pub[ID_PUBKEY_LEN];
  uint8_t nonce[HS_NONCE_LEN];
  double time_ms;
  int listen_port;
  bool listen_tls; /* the listen port speaks wss:// */
  long long height;
  char *metadata_json; /* compact JSON object, malloc'd; never NULL after a parse */
  bool claims_validator;
  /* "candidates": where the sender can be reached (malloc'd, NULL when it
   * sent none); nat_traversal messages replace them later. */
  struct cand *cands;
  int n_cands;
  bool cands_learned; /* already handed to the peer store */
};

enum hs_step { HS_STEP_HELLO = 1, HS_STEP_AUTH = 2 };

/* Writes our HELLO payload. metadata_json is a JSON object or NULL ("{}"). */
void hs_hello_write(struct buf *b, const struct identity *me, const char *network_id,
                    const uint8_t nonce[HS_NONCE_LEN], double time_ms, int listen_port,
                    bool listen_tls, const char *metadata_json, long long height,
                    const struct cand *cands, int n_cands);

void hs_auth_write(struct buf *b, const uint8_t sig[ID_SIG_LEN]);

/* Replaces the candidates of h with a copy of c[0..n) (n 0: none). */
void hs_hello_set_candidates(struct hs_hello *h, const struct cand *c, int n);

/* Parses a peer_handshake payload sent by `origin`. Returns HS_STEP_HELLO
 * (h filled; free with hs_hello_free) or HS_STEP_AUTH (sig filled), or -1
 * with the close code (4000/4001) and a reason. Does not check the network
 * id (the caller owns that decision). */
int hs_parse(const uint8_t *payload, size_t len, const uint8_t origin[ENV_NODE_ID_LEN],
             struct hs_hello *h, uint8_t sig[ID_SIG_LEN], int *close_code, char *why,
             size_t whycap);
void hs_hello_free(struct hs_hello *h);

/* The transcript to sign or verify; returns its length. */
size_t hs_transcript(uint8_t out[HS_TRANSCRIPT_MAX], bool signer_is_dialer,
                     const char *network_id, const uint8_t dialer_id[ENV_NODE_ID_LEN],
                     const uint8_t listener_id[ENV_NODE_ID_LEN],
                     const uint8_t dialer_nonce[HS_NONCE_LEN],
                     const uint8_t listener_nonce[HS_NONCE_LEN]);

#endif
