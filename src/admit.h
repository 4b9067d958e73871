/* admit: the bt2c handshake of one connection and the decision to keep it
 * (docs/PROTOCOL.md section 4): HELLO and AUTH in both directions, the
 * checks in their documented order (ids, version, network, self, signature,
 * bans, the handshake policy, duplicates, free slots and inbound eviction),
 * then the peer is established and recorded.
 *
 * Must not: read application messages or dial; netmgr calls it for the
 * handshake envelopes of connections it owns.
 */
#ifndef BT2C_ADMIT_H
#define BT2C_ADMIT_H

#include "envelope.h"

struct netmgr;
struct peer;

/* Sends our HELLO and arms the handshake timeout. */
void admit_start(struct netmgr *nm, struct peer *p);
/* One peer_handshake envelope; returns -1 if p is being closed. */
int admit_on_handshake(struct netmgr *nm, struct peer *p, const struct envelope *e);
/* Refuses p: logged (event=handshake_refused), counted, closed with code. */
void admit_refuse(struct netmgr *nm, struct peer *p, int code, const char *why);

#endif
