/* sqlfile: small helpers shared by bt2c's sqlite stores (the peer store, the
 * chain store): one-value queries and telling an empty file, one of ours and a
 * stranger's apart. No schema, no policy: each store decides what to accept. */
#ifndef BT2C_SQLFILE_H
#define BT2C_SQLFILE_H

#include <sqlite3.h>

/* Runs sql and reads the first column of its first row into *out.
 * SQLITE_OK, or an sqlite error code (SQLITE_ERROR when there is no row). */
int sqlfile_query_int(sqlite3 *db, const char *sql, long long *out);

/* What a file holds before a store touches it: its application_id, its
 * user_version and how many schema objects it has. SQLITE_OK or the error. */
struct sqlfile_ident {
  long long appid, version, objects;
};
int sqlfile_identify(sqlite3 *db, struct sqlfile_ident *id);

#endif
