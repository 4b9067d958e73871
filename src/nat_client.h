/* nat_client: the node's STUN client. Not for use outside the nat family.
 *
 * Provides: the natTraversal.stunServers entries as nat_server records;
 * Binding transactions with RFC 8489 §6.2.1 retransmissions (the node's
 * timing, or the shorter probe timing for RFC 5780 probes); rounds, one
 * Binding per server at start, every refresh interval and on
 * nat_discover(), whose first answer gives the external address and whose
 * srflx candidates replace the last round's; host name lookups with
 * getaddrinfo_a, polled from the loop. The answer to a round's Binding
 * starts the behaviour discovery (nat_disc.c) when the server offers an
 * OTHER-ADDRESS; every other answer is handed to it.
 *
 * Must not: block the loop, read from the socket (nat.c hands it the
 * responses), answer requests, or judge the NAT (nat_disc.c does).
 */
#ifndef BT2C_NAT_CLIENT_H
#define BT2C_NAT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nat.h"

/* How a transaction ended, for the round or the discovery step it serves. */
struct nat_outcome {
  enum { NAT_OUT_OK, NAT_OUT_TIMEOUT, NAT_OUT_ERROR } kind;
  struct stun_addr mapped, other;
  bool have_other;
  int code;
  char reason[96];
};

/* "stun:host[:port]" (IPv6 in brackets) into s. Returns 0, or -1 with why. */
int natclient_parse_url(const char *url, struct nat_server *s, char *why, size_t cap);

/* Sends a Binding request (with CHANGE-REQUEST flags when change != 0).
 * Returns 0, or -1 when no slot is free or the CSPRNG failed. */
int natclient_txn_start(struct nat *nt, enum nat_purpose p, int server, const struct stun_addr *to,
                        uint32_t change);
/* A response from the socket: to the transaction it answers, or counted as
 * stray. */
void natclient_on_response(struct nat *nt, const struct stun_msg *m, const struct stun_addr *from);

void natclient_round_start(struct nat *nt);
/* The refresh timer's callback (its user is nt): a new round, then again
 * after refresh_ms. */
void natclient_refresh_fired(struct loop_timer *t);
/* Cancels s's lookup at stop (s->res is not NULL). */
void natclient_resolve_abandon(struct nat_server *s);

#endif
