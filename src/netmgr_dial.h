/* netmgr_dial: how the node fills its outbound slots.
 *
 * In order: persistent peers (redialled forever, exponential backoff from 1 s
 * doubling to 60 s with +-20 % jitter, reset after a connection that lasted a
 * minute), anchors and the best nodes of the peer store (failed ones rest for
 * 2^failures seconds, at most 5 minutes), then bootstrap peers. At most a few
 * dials start per tick, and never beyond maxOutbound/maxPeers.
 *
 * Must not: accept connections or handle messages (netmgr.c, control.c).
 */
#ifndef BT2C_NETMGR_DIAL_H
#define BT2C_NETMGR_DIAL_H

#include <stdbool.h>

struct netmgr;
struct peer;

int dial_init(struct netmgr *nm);
void dial_free(struct netmgr *nm);
void dial_tick(struct netmgr *nm, double now);
void dial_on_established(struct netmgr *nm, struct peer *p);
void dial_on_failed(struct netmgr *nm, struct peer *p);
void dial_on_closed(struct netmgr *nm, struct peer *p, bool was_established);
/* Marks the current outbound peers as anchors in the peer store. */
void dial_save_anchors(struct netmgr *nm);

#endif
