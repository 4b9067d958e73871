/* turn_cand: the candidates peers are told and tell (docs/NAT.md).
 *
 * Provides: this node's candidates as the wire carries them (for HELLO and
 * nat_traversal), a nat_traversal message to the peers whenever they change,
 * the nat_traversal consumer, and filing what a node advertises in the peer
 * store in this node's dial order.
 *
 * Must not: dial, judge a candidate beyond its shape (candidates.c parses),
 * or keep a message larger than 16 KiB.
 */
#ifndef BT2C_TURN_CAND_H
#define BT2C_TURN_CAND_H

struct cand;
struct envelope;
struct nat;
struct netmgr;
struct peer;
struct turn;

/* This node's candidates as it advertises them (CAND_* of candidates.h):
 * host and srflx addresses with the TCP listen port, relayed addresses as
 * allocated. Returns how many (at most cap). */
int turncand_local(const struct nat *nt, int listen_port, struct cand *out, int cap);
/* Files what a node advertises: without candidates entry_url goes to the
 * peer store as before; with them, entry_url and the TCP candidates are
 * merged into its addresses in this node's dial order (cand_merge_urls: an
 * address that worked stays first). */
void turncand_learn(struct netmgr *nm, const char *node_id_hex, const char *entry_url,
                    const struct cand *c, int n, const char *source);

/* The nat_traversal consumer (netmgr hooks): the sender's new candidates. */
int turncand_on_nat_traversal(void *ud, struct peer *p, const struct envelope *e);

/* ---- for turn.c --------------------------------------------------------- */

/* The netmgr hook that puts the candidates in this node's HELLO (ud: the
 * struct turn). */
int turncand_hello(void *ud, struct cand *out, int cap);
/* From the tick: a nat_traversal to every peer when the candidates changed
 * since the last one, and the candidates peers sent to the peer store. */
void turncand_advertise(struct turn *t);
void turncand_learn_peers(struct turn *t);

#endif
