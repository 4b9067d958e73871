/* turn_tcp: TCP allocations (RFC 6062). Not for use outside the turn
 * family.
 *
 * Provides: the control connection (connect with a timeout, a bounded send
 * buffer, the stream cut into STUN frames and handed to the transactions);
 * CONNECTION-ATTEMPT answered by a data connection and ConnectionBind, after
 * a Refresh has renewed the nonce; a bound data connection handed to the
 * WebSocket listener as an inbound peer whose address is the peer's
 * (XOR-PEER-ADDRESS), with the bytes already read after the response.
 *
 * Must not: keep a frame it cannot parse (the control connection is closed
 * instead), grow a buffer or a queue without bound, or set up more than
 * TURN_MAX_DATACONN data connections at once.
 */
#ifndef BT2C_TURN_TCP_H
#define BT2C_TURN_TCP_H

#include <stddef.h>
#include <stdint.h>

#include "turn.h"

/* Connects a's control connection; Allocate follows once it is up. */
void turntcp_open(struct turn_alloc *a);
/* Queues a request on the control connection. 0, or -1 when there is none
 * or its buffer is full (the request then times out). */
int turntcp_queue(struct turn_alloc *a, const uint8_t *msg, size_t len);
/* Leaves the control connection to the loop, which closes it and frees it
 * later. */
void turntcp_detach(struct turn_alloc *a);
/* Opens the data connections of the queued attempts (the nonce is fresh). */
void turntcp_attempts_open(struct turn_alloc *a);
/* At stop: detaches the control connection and drops the data connections. */
void turntcp_stop(struct turn_alloc *a);

#endif
