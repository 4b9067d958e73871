/* turn_txn: the TURN client's requests. Not for use outside the turn
 * family.
 *
 * Provides: a transaction per request (at most TURN_MAX_TXN per
 * allocation), sent over the node's UDP socket with RFC 8489 §6.2.1
 * retransmissions, or once over the TCP control connection with the same
 * total wait; the long-term credentials, taken from a 401 or 438 and put on
 * every later request; the 401 challenge and 438 Stale Nonce answered here,
 * at most 3 times per request, with a new transaction id. turn_alloc.c
 * hears only the final outcome (turnalloc_done).
 *
 * Must not: decide what an outcome means for the allocation, or retry a
 * request whose credentials were refused.
 */
#ifndef BT2C_TURN_TXN_H
#define BT2C_TURN_TXN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "turn.h"
#include "turn_msg.h"

/* Counts and logs (rate-limited) a message from server that was dropped. */
void turntxn_dropped(struct turn *t, const char *server, const char *why);

/* Takes realm and nonce from a 401 or 438; the key follows the realm. */
void turntxn_set_credentials(struct turn_alloc *a, const struct turn_answer *ans);
/* a's credentials in out, or NULL while there are none. */
const struct turn_auth *turntxn_auth(const struct turn_alloc *a, struct turn_auth *out);

/* A datagram to a's server over the node's UDP socket. 0, or -1. */
int turntxn_udp_send(struct turn_alloc *a, const void *msg, size_t len);

/* Starts a request (peer: CreatePermission and ChannelBind; channel:
 * ChannelBind; lifetime: Refresh). 0, or -1 when every transaction is busy
 * or the request does not fit. */
int turntxn_start(struct turn_alloc *a, enum turn_purpose p, const struct stun_addr *peer,
                  uint16_t channel, uint32_t lifetime);
struct turn_txn *turntxn_find(struct turn_alloc *a, const uint8_t *txid);
bool turntxn_has(const struct turn_alloc *a, enum turn_purpose p);
/* A response to x from the server. */
void turntxn_answer(struct turn_txn *x, const struct stun_msg *m);
void turntxn_free(struct turn_txn *x);

#endif
