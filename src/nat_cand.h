/* nat_cand: the node's candidates (RFC 8445): host addresses, server
 * reflexive ones from STUN and relayed ones from the TURN client, each with
 * a priority unique within its type (local preference 65535, 65534, ... by
 * rank).
 *
 * Provides: to everyone, the address peers should use and the candidates in
 * candidatePreference order, and the TURN client's way to replace the relay
 * candidates; to the nat family, gathering host candidates and filing srflx
 * ones.
 *
 * Must not: send or receive anything, or keep more than NAT_MAX_CANDIDATES.
 */
#ifndef BT2C_NAT_CAND_H
#define BT2C_NAT_CAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nat.h"

/* The address peers should use, by preferredMethod: "stun" the srflx from
 * STUN (method "stun"), else a relay (method "turn"), else the first host
 * candidate (method "host"); "turn" a relay first, then srflx, then host;
 * "host" always the host one. A TCP relay is preferred to a UDP one.
 * Returns 0, or -1 when there is none. server: the index of the STUN server
 * (method "stun") or of the TURN allocation (method "turn"), or -1. */
int natcand_external(const struct nat *nt, struct stun_addr *out, const char **method,
                     int *server);

/* The candidates ordered by candidatePreference (its type first, then by
 * priority; "priority": by priority only). Returns how many were written. */
size_t natcand_list(const struct nat *nt, struct nat_candidate *out, size_t cap);

/* The TURN client's relayed addresses replace the relay candidates (type
 * NAT_CAND_RELAY; server = the allocation's index, transport its). */
void natcand_set_relays(struct nat *nt, const struct nat_candidate *relays, int n);

/* RFC 8445 priority for component 1. */
uint32_t natcand_priority(enum nat_cand_type t, uint16_t local_pref);

/* ---- for the nat family -------------------------------------------------- */

/* Files a candidate, or marks a known one as confirmed by this round. */
void natcand_add(struct nat *nt, enum nat_cand_type t, const struct stun_addr *a, int server,
                 uint8_t transport);
/* Host candidates: the bound address, or every usable interface address
 * when bound to the wildcard. Loopback counts only when bound to it. */
void natcand_gather_host(struct nat *nt);
/* Forgets the srflx candidates this round did not confirm. */
void natcand_drop_stale_srflx(struct nat *nt);
bool natcand_is_host_addr(const struct nat *nt, const struct stun_addr *a);

#endif
