/* nat_disc: NAT behaviour discovery (RFC 5780 §4.3 filtering, §4.4
 * mapping) against one STUN server that offers an OTHER-ADDRESS. Not for
 * use outside the nat family.
 *
 * Provides: the tests, one probe at a time, each a nat_client transaction,
 * and their verdict in nt->beh (logged once it is done). Filtering runs
 * first, since the mapping test opens the NAT's filter to the other address.
 *
 * Must not: send or receive anything itself, or decide when a round ends
 * (nat_client.c does, once nt->beh is no longer running).
 */
#ifndef BT2C_NAT_DISC_H
#define BT2C_NAT_DISC_H

#include "nat.h"
#include "nat_client.h"

/* Starts the discovery against servers[server], whose Binding answered. */
void natdisc_start(struct nat *nt, int server);
/* The outcome of a probe (p is not NAT_TX_BIND): the next test, or done. */
void natdisc_step(struct nat *nt, enum nat_purpose p, const struct nat_outcome *o);

#endif
