/* sqlfile: see sqlfile.h. */
#include "sqlfile.h"

#include <stddef.h>

int sqlfile_query_int(sqlite3 *db, const char *sql, long long *out) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK) return rc;
  rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    *out = sqlite3_column_int64(st, 0);
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    rc = SQLITE_ERROR;
  }
  sqlite3_finalize(st);
  return rc;
}

int sqlfile_identify(sqlite3 *db, struct sqlfile_ident *id) {
  *id = (struct sqlfile_ident){0, 0, 0};
  int rc = sqlfile_query_int(db, "PRAGMA application_id", &id->appid);
  if (rc == SQLITE_OK) rc = sqlfile_query_int(db, "PRAGMA user_version", &id->version);
  if (rc == SQLITE_OK)
    rc = sqlfile_query_int(db, "SELECT count(*) FROM sqlite_master", &id->objects);
  return rc;
}
