/* turn_msg: the pure part of the TURN client (RFC 8656, RFC 6062):
 * writing its requests and indications, judging the answers, and reading a
 * turnServers URL.
 *
 * Provides: turnmsg_encode (the attributes, then the long-term credentials
 * and MESSAGE-INTEGRITY, then FINGERPRINT), turnmsg_classify (success,
 * challenge, stale nonce, wrong credentials, failed integrity...) and
 * turnmsg_parse_url.
 *
 * Must not: keep state, send or receive, or decide what to do about an
 * answer (turn_txn.c does).
 */
#ifndef BT2C_TURN_MSG_H
#define BT2C_TURN_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stun.h"

/* What a request or indication carries besides the credentials. */
struct turn_req {
  uint16_t method;
  enum stun_class cls;       /* STUN_REQUEST or STUN_INDICATION */
  uint8_t transport;         /* Allocate: REQUESTED-TRANSPORT (0: none) */
  bool has_lifetime;
  uint32_t lifetime;
  const struct stun_addr *peer; /* XOR-PEER-ADDRESS, or NULL */
  uint16_t channel;             /* ChannelBind: CHANNEL-NUMBER (0: none) */
  bool has_conn_id;             /* ConnectionBind: CONNECTION-ID */
  uint32_t conn_id;
  const void *data; /* Send indication: DATA */
  size_t data_len;
};

/* Long-term credentials; a request without them passes NULL. */
struct turn_auth {
  const char *username;
  const char *realm;
  const uint8_t *nonce;
  size_t nonce_len;
  const uint8_t *key; /* STUN_LONGTERM_KEY_LEN bytes */
};

/* Writes the message: the attributes of r, then USERNAME, REALM, NONCE and
 * MESSAGE-INTEGRITY when auth is given, then FINGERPRINT. txid NULL: fresh
 * random. Returns the length, or 0 when it does not fit. */
size_t turnmsg_encode(uint8_t *buf, size_t cap, const uint8_t *txid, const struct turn_req *r,
                      const struct turn_auth *auth);

enum turn_verdict {
  TV_SUCCESS,
  TV_ERROR,             /* an error response other than the ones below */
  TV_CHALLENGE,         /* 401 to a request without credentials: realm and nonce given */
  TV_STALE_NONCE,       /* 438 with a new nonce */
  TV_WRONG_CREDENTIALS, /* 401 to a request that carried credentials */
  TV_INTEGRITY,         /* MESSAGE-INTEGRITY missing (on a success) or wrong */
  TV_MALFORMED,         /* an error without ERROR-CODE, a 401/438 without nonce... */
  TV_TIMEOUT,           /* no answer at all (not from turnmsg_classify) */
};

struct turn_answer {
  int code;
  char reason[96];      /* printable, trailing NULs stripped */
  char realm[128];
  uint8_t nonce[128];
  size_t nonce_len;
};

/* Judges a response to a request sent with (key != NULL) or without
 * credentials. */
enum turn_verdict turnmsg_classify(const struct stun_msg *m, const uint8_t *key,
                                   struct turn_answer *out);
const char *turnmsg_verdict_name(enum turn_verdict v);

/* "turn:host[:port][?transport=udp|tcp]": host (no brackets), port (3478),
 * transports (bit 0 UDP, bit 1 TCP: both without "?transport"). 0, or -1
 * with why ("turns:" is refused: TLS to the server is not supported). */
int turnmsg_parse_url(const char *url, char *host, size_t hostcap, uint16_t *port,
                      unsigned *transports, char *why, size_t whycap);

#endif
