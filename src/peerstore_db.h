/* peerstore_db: the peer store's sqlite file. Not for use outside the
 * peerstore family.
 *
 * Provides: opening a file, refusing anything that is not ours before
 * touching it, creating an empty one, upgrading an older schema in place;
 * reading every row back; writing changes in one transaction. Node rows cross
 * this boundary as struct psdb_row, one field per column, exactly as stored.
 *
 * Must not: judge or repair a row (whether it makes a valid record is
 * peerstore.c's call), hold records, decide what to keep or when to write,
 * or know the hash table.
 */
#ifndef BT2C_PEERSTORE_DB_H
#define BT2C_PEERSTORE_DB_H

#include <stdbool.h>
#include <stddef.h>

struct psdb;

/* One row of the nodes table. Text is NUL-terminated; a NULL pointer is SQL
 * NULL. Rows handed out by psdb_load are valid only during the callback. */
struct psdb_row {
  const char *node_id;
  size_t node_id_len; /* bytes in the column, embedded NULs included */
  bool has_pubkey; /* false: the column is NULL */
  const void *pubkey;
  size_t pubkey_len;
  const char *addrs; /* space-separated */
  double first_seen, last_seen, last_connected;
  long long failures;
  const char *source;
  bool is_validator;
  double score, ban_until;
  bool anchor;
  const char *score_state;
  size_t score_state_len; /* as node_id_len */
};

/* Opens (creating, or upgrading to the current schema) the file at path.
 * Every commit on the connection, its own included, is counted in *commits.
 * Returns NULL with "<path>: <what>" in err. */
struct psdb *psdb_open(const char *path, unsigned long *commits, char *err, size_t errcap);
void psdb_close(struct psdb *d);

/* Calls on_node for every node row, then on_ban for every address ban. A
 * callback returns 0 to go on or -1 (out of memory) to stop. Returns 0, or -1
 * with "<path>: <what>" in err. */
int psdb_load(struct psdb *d, int (*on_node)(void *ud, const struct psdb_row *row),
              int (*on_ban)(void *ud, const char *addr, double until), void *ud, char *err,
              size_t errcap);

/* A write: psdb_begin, any number of puts and deletes, psdb_commit. Each
 * returns 0, or -1 after which the caller calls psdb_abort. */
int psdb_begin(struct psdb *d);
int psdb_put_node(struct psdb *d, const struct psdb_row *row);
int psdb_del_node(struct psdb *d, const char *node_id);
int psdb_put_ban(struct psdb *d, const char *addr, double until);
int psdb_del_ban(struct psdb *d, const char *addr);
int psdb_commit(struct psdb *d);
/* Copies the reason of the failure into msg, then rolls back whatever of the
 * transaction is still open. */
void psdb_abort(struct psdb *d, char *msg, size_t cap);

#endif
