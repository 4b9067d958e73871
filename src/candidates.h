/* candidates: the addresses a node can be reached at, as nodes tell each
 * other (the "candidates" of HELLO, peer_exchange entries and nat_traversal,
 * docs/PROTOCOL.md sections 4, 5 and 7), and the order a dialer tries them.
 *
 * Provides the wire form (reading with every entry checked, writing), the
 * dial order from preferredMethod and candidatePreference, the URLs a
 * dialer uses, and the merge of learned URLs into a peer store record (a
 * URL that worked stays first). turn.c builds this node's own list and
 * files what peers advertise with these.
 *
 * Must not: know about the node (sockets, peers, struct nat): every function
 * touches nothing but its arguments, so the handshake parser and the fuzz
 * targets link it alone, and the unit specs drive it through the test module.
 */
#ifndef BT2C_CANDIDATES_H
#define BT2C_CANDIDATES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAND_MAX 8       /* candidates per node on the wire */
#define CAND_IP_LEN 46   /* INET6_ADDRSTRLEN */
#define CAND_URL_LEN 128 /* PEERSTORE_ADDR_LEN */
#define CAND_MAX_URLS 4  /* PEERSTORE_MAX_ADDRS */

/* The values match enum nat_cand_type. */
enum cand_type { CAND_HOST = 0, CAND_SRFLX = 1, CAND_RELAY = 2 };
enum cand_transport { CAND_TCP = 6, CAND_UDP = 17 }; /* IP protocol numbers */

struct cand {
  uint8_t type;      /* enum cand_type */
  uint8_t transport; /* enum cand_transport */
  uint16_t port;
  uint32_t priority; /* RFC 8445 §5.1.2.1 */
  char ip[CAND_IP_LEN]; /* numeric, IPv6 without brackets */
};

struct buf;
struct json_value;
struct peer_record;

const char *cand_type_name(int type);            /* "host", "srflx", "relay" */
int cand_type_parse(const char *s);               /* -1 when unknown */
const char *cand_transport_name(int transport);  /* "tcp", "udp" */

/* Reads a "candidates" array: at most `cap` well-formed entries are kept,
 * in order; malformed entries (unknown type or transport, an address that
 * is not a numeric unicast IP, a port outside 1..65535, a priority outside
 * 0..2^32-1) are skipped and counted in *bad. Returns the number kept, or
 * -1 when v is not an array or has more than 4 * CAND_MAX entries. */
int cand_parse_json(const struct json_value *v, struct cand *out, int cap, int *bad);
/* Appends the array [{"type", "address", "port", "priority", "transport"}]. */
void cand_write_json(struct buf *b, const struct cand *c, int n);

/* The dial order. first: the candidatePreference type (-1 for "priority");
 * method: the type preferredMethod names (host, srflx for "stun", relay for
 * "turn"). Candidates of `first` come first; then, when method is relay (the
 * one type that priority ranks last), the relays; then the rest. Within each
 * group, higher priority first: host, srflx, relay by RFC 8445. */
struct cand_pref {
  int first;
  int method;
};
void cand_pref_set(struct cand_pref *p, const char *preferred_method,
                   const char *candidate_preference);
/* Stable sort of c[0..n) into the dial order. */
void cand_sort(struct cand *c, int n, const struct cand_pref *p);

/* "ws://ip:port" ("wss://" with tls, IPv6 in brackets). -1 for UDP
 * candidates, which a WebSocket dialer cannot use. */
int cand_url(const struct cand *c, bool tls, char *out, size_t cap);

/* The URLs to try for a node, in dial order: its TCP candidates, and the
 * address it was known by (entry_url, may be NULL or ""), which counts as the
 * last srflx candidate (local preference 0) unless a candidate has the same
 * URL. At most cap URLs; returns how many. */
int cand_dial_urls(const struct cand *c, int n, const char *entry_url, bool tls,
                   const struct cand_pref *p, char urls[][CAND_URL_LEN], int cap);

/* Puts learned URLs (dial order) into a peer store record's addresses: an
 * address that worked (the record was connected and has not failed since)
 * stays first, then the learned ones, then what else the record had, at
 * most CAND_MAX_URLS, no duplicates. Returns whether anything changed. */
bool cand_merge_urls(struct peer_record *r, char urls[][CAND_URL_LEN], int n);

#endif
