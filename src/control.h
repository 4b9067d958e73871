/* control: the control messages between established peers — PEER_PING
 * (round-trip time, dead peers, ping floods) and PEER_EXCHANGE (bounded,
 * validated, rate-limited lists of known nodes), docs/PROTOCOL.md section 5.
 *
 * Must not: dial (it only records addresses in the peer store) or touch
 * application messages.
 */
#ifndef BT2C_CONTROL_H
#define BT2C_CONTROL_H

#include "envelope.h"

struct netmgr;
struct peer;

void control_on_established(struct netmgr *nm, struct peer *p);
/* Pings due, dead peers, discovery rounds. */
void control_tick(struct netmgr *nm, double now);
/* A peer_ping or peer_exchange envelope; returns -1 if p is being closed. */
int control_on_message(struct netmgr *nm, struct peer *p, const struct envelope *e);
/* The consumer of NETWORK_STATUS messages (netmgr registers it). */
int control_on_status(void *ud, struct peer *p, const struct envelope *e);
/* Asks p for the nodes it knows. */
void control_request_peers(struct netmgr *nm, struct peer *p);

#endif
