/* turn_alloc: a TURN allocation's life. Not for use outside the turn
 * family.
 *
 * Provides: the state machine begin -> (host name lookup, getaddrinfo_a
 * polled from the loop) -> (TCP connect) -> Allocate -> allocated, with one
 * timer for the next Refresh (a minute before the lifetime ends, or halfway
 * for short ones) or for the next try after a failure (5 s doubling up to 5
 * minutes; wrong credentials: 5 minutes); a stale allocation on our UDP
 * 5-tuple (437) deleted and allocated again; the relayed addresses handed
 * to nat.c as relay candidates; and the outcome of every transaction,
 * routed to its purpose.
 *
 * Must not: build or send a request itself (turn_txn.c does), or retry
 * wrong credentials sooner than 5 minutes.
 */
#ifndef BT2C_TURN_ALLOC_H
#define BT2C_TURN_ALLOC_H

#include "turn.h"
#include "turn_msg.h"

/* Starts (or restarts) the allocation from scratch, with a fresh challenge. */
void turnalloc_begin(struct turn_alloc *a);
/* Gives up on the allocation for now: logged, tried again after a backoff. */
void turnalloc_fail(struct turn_alloc *a, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The server refused the credentials (ans NULL: a plain 401). */
void turnalloc_auth_failed(struct turn_alloc *a, const struct turn_answer *ans);
/* The server forgot the allocation (437, expiry, a closed connection). */
void turnalloc_lost(struct turn_alloc *a, const char *why);
/* The final outcome of x (ans and m may be NULL: a timeout); x is freed here. */
void turnalloc_done(struct turn_txn *x, enum turn_verdict v, const struct turn_answer *ans,
                    const struct stun_msg *m);
/* Drops a pending host name lookup at stop. */
void turnalloc_resolve_abandon(struct turn_alloc *a);

#endif
