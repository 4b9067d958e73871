/* turn_perm: who may reach the relays. Not for use outside the turn
 * family.
 *
 * Provides: the IPs that get permissions (the nodes connected now, their
 * address and the host and srflx candidates they advertised, then those of
 * the most recently seen nodes of the peer store); per allocation, the
 * permissions (CreatePermission, at most 8 a tick, re-issued
 * before they lapse after 300 s, forgotten once nobody wants them) and the
 * channels (ChannelBind, refreshed before they lapse after 600 s); and the
 * outcomes of those requests.
 *
 * Must not: keep more than TURN_MAX_PERMS permissions or TURN_MAX_CHANNELS
 * channels per allocation, or ask again within 300 s for a permission the
 * server refused (403, 443).
 */
#ifndef BT2C_TURN_PERM_H
#define BT2C_TURN_PERM_H

#include <stdint.h>

#include "turn.h"
#include "turn_msg.h"

struct turn_perm *turnperm_find(struct turn_alloc *a, const struct stun_addr *ip);
/* A new entry for ip (port ignored), reusing one nobody wants any more;
 * NULL when all are in use. */
struct turn_perm *turnperm_add(struct turn_alloc *a, const struct stun_addr *ip, double now);
struct turn_chan *turnperm_chan_find(struct turn_alloc *a, const struct stun_addr *peer);

/* The IPs that should have permissions, at most cap. */
int turnperm_collect_ips(struct turn *t, struct stun_addr *ips, int cap);
/* Wants the ips (of the relay's family) now, and issues what is due. */
void turnperm_sync(struct turn_alloc *a, double now, const struct stun_addr *ips, int n);
void turnperm_channels_refresh(struct turn_alloc *a, double now);

void turnperm_on_permission(struct turn_alloc *a, enum turn_verdict v,
                            const struct turn_answer *ans, const struct stun_addr *peer);
void turnperm_on_channel(struct turn_alloc *a, enum turn_verdict v, const struct turn_answer *ans,
                         const struct stun_addr *peer, uint16_t number);

#endif
