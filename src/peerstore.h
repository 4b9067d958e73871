/* peerstore: what the node remembers about other nodes, in sqlite (WAL).
 *
 * Every known node: id, public key, addresses, when it was first/last seen
 * and last connected, consecutive dial failures, where we heard of it,
 * validator flag, score, ban expiry, whether it was one of our outbound
 * peers at the last flush (an anchor, redialled first after a restart), and
 * the scoring module's own state for it (opaque text, kept as given).
 * Address bans are kept separately, so a banned node cannot come back under
 * a new key from the same address.
 *
 * The whole table is held in memory: reads never touch the disk, writes mark
 * records dirty, and peerstore_flush() writes all dirty records in one
 * transaction (the node calls it on a timer and at shutdown). The table is
 * bounded: beyond max_entries the least useful records are dropped (never
 * anchors, never records with an active ban). A committed flush survives
 * kill -9.
 *
 * Must not: open sockets or know about connections; it only stores.
 */
#ifndef BT2C_PEERSTORE_H
#define BT2C_PEERSTORE_H

#include <stdbool.h>
#include <stddef.h>

#define PEERSTORE_ID_LEN 40    /* hex node id */
#define PEERSTORE_MAX_ADDRS 4  /* addresses kept per node */
#define PEERSTORE_ADDR_LEN 128 /* "ws://[v6]:port" and the like, NUL included */
#define PEERSTORE_STATE_LEN 512 /* score_state, NUL included */

struct peer_record {
  char node_id[PEERSTORE_ID_LEN + 1];
  unsigned char pubkey[32];
  bool has_pubkey;
  char addrs[PEERSTORE_MAX_ADDRS][PEERSTORE_ADDR_LEN]; /* most recently useful first */
  int n_addrs;
  double first_seen, last_seen, last_connected; /* unix seconds; 0 = never */
  int failures;                                 /* consecutive failed dials */
  char source[16]; /* "bootstrap", "persistent", "exchange", "inbound", "console" */
  bool is_validator;
  double score;
  double ban_until; /* unix seconds; 0 = not banned */
  bool anchor;
  /* The scoring module's (compact JSON): the store only requires a NUL
   * within PEERSTORE_STATE_LEN and no byte below 0x20; "" = none. */
  char score_state[PEERSTORE_STATE_LEN];
};

struct peerstore;

/* Opens (creating if needed) the database at path; a file from an older
 * bt2cd is upgraded in place first, in one transaction, keeping every row
 * (a newer one is refused). max_entries bounds the node table (0: default
 * 10000). Returns NULL with a message in err. */
struct peerstore *peerstore_open(const char *path, int max_entries, char *err, size_t errcap);
/* Flushes, then closes. */
void peerstore_close(struct peerstore *ps);

/* Copies the record for node_id into out; returns 0, or -1 if unknown. */
int peerstore_get(const struct peerstore *ps, const char *node_id, struct peer_record *out);
/* Inserts or replaces a record (in memory; durable after the next flush). */
int peerstore_put(struct peerstore *ps, const struct peer_record *rec);
/* Adds addr to the node's addresses (moving it to the front), creating the
 * record if needed. */
int peerstore_add_address(struct peerstore *ps, const char *node_id, const char *addr,
                          const char *source, double now);
int peerstore_forget(struct peerstore *ps, const char *node_id);
int peerstore_count(const struct peerstore *ps);

/* Writes every dirty record and ban in one transaction and prunes the table
 * to its bound. Returns 0, or -1 (logged; the records stay dirty). */
int peerstore_flush(struct peerstore *ps);

/* Marks exactly these nodes as anchors (and clears the mark on the others). */
int peerstore_set_anchors(struct peerstore *ps, const char *const *node_ids, int n);

/* Up to max records worth dialling, best first: anchors, then higher score,
 * fewer failures, more recently seen. Skips banned nodes and nodes without
 * an address. Returns how many were written to out. */
int peerstore_best(const struct peerstore *ps, struct peer_record *out, int max, double now);

/* Calls fn for every record (in no particular order); stops if fn returns
 * non-zero. */
void peerstore_each(const struct peerstore *ps, int (*fn)(const struct peer_record *, void *),
                    void *ud);

/* Counters since open, for metrics and specs. `commits` counts sqlite
 * commits on this store's connection (schema creation included), so a
 * batched flush shows up as exactly one. */
struct peerstore_stats {
  unsigned long commits, flushes, flush_failures;
  unsigned long rows_written, rows_deleted; /* nodes and bans */
  unsigned long pruned;                     /* records dropped by the bound */
};
void peerstore_get_stats(const struct peerstore *ps, struct peerstore_stats *out);

/* Address bans ("ip" or "ip:port" strings, as the caller normalises them). */
int peerstore_ban_address(struct peerstore *ps, const char *addr, double until);
int peerstore_unban_address(struct peerstore *ps, const char *addr);
/* The ban expiry for addr if it is banned at `now`, else 0. */
double peerstore_address_banned(const struct peerstore *ps, const char *addr, double now);

#endif
