/* peerstore_db: see peerstore_db.h.
 *
 * Ours. application_id "bt2c" and a user_version in 1..PSDB_VERSION mark the
 * file as ours; anything else is refused untouched (not even switched to
 * WAL). A file newer than PSDB_VERSION is refused too: a flush writes whole
 * rows (INSERT OR REPLACE), so an older bt2cd would reset every column it
 * does not know.
 *
 * Versions. psdb_schema creates an empty file at PSDB_VERSION directly.
 * psdb_upgrades[v - 1] takes a file from version v to v + 1; opening an older
 * file runs every step from its version on, then sets user_version, all in
 * one IMMEDIATE transaction: a crash or an error leaves the file exactly as
 * it was, and of two processes opening the same old file only one upgrades
 * it (the other reads the version again under the lock and finds it done).
 * Rows are never rewritten by an upgrade; a new column has a default that
 * the rows already there take. A schema change bumps PSDB_VERSION, edits
 * psdb_schema and appends a step; the spec checks that an upgraded file has
 * the same columns as a new one.
 */
#include "peerstore_db.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "log.h"
#include "sqlfile.h"

#define PSDB_APPLICATION_ID 0x62743263 /* "bt2c" */
#define PSDB_VERSION 2
/* The event loop waits on a busy database; a busy flush just retries later. */
#define PSDB_BUSY_MS 1000

static const char psdb_schema[] =
    "CREATE TABLE nodes (\n"
    "  node_id TEXT PRIMARY KEY NOT NULL,\n"
    "  pubkey BLOB,\n"
    "  addrs TEXT NOT NULL DEFAULT '',\n"
    "  first_seen REAL NOT NULL DEFAULT 0,\n"
    "  last_seen REAL NOT NULL DEFAULT 0,\n"
    "  last_connected REAL NOT NULL DEFAULT 0,\n"
    "  failures INTEGER NOT NULL DEFAULT 0,\n"
    "  source TEXT NOT NULL DEFAULT '',\n"
    "  is_validator INTEGER NOT NULL DEFAULT 0,\n"
    "  score REAL NOT NULL DEFAULT 0,\n"
    "  ban_until REAL NOT NULL DEFAULT 0,\n"
    "  anchor INTEGER NOT NULL DEFAULT 0,\n"
    "  score_state TEXT NOT NULL DEFAULT ''\n"
    ") WITHOUT ROWID;\n"
    "CREATE TABLE address_bans (\n"
    "  addr TEXT PRIMARY KEY NOT NULL,\n"
    "  until REAL NOT NULL\n"
    ") WITHOUT ROWID;\n";

static const char *const psdb_upgrades[] = {
    /* 1 -> 2: the scoring module's state; older rows start without one */
    "ALTER TABLE nodes ADD COLUMN score_state TEXT NOT NULL DEFAULT ''",
};
_Static_assert(sizeof psdb_upgrades / sizeof psdb_upgrades[0] == PSDB_VERSION - 1,
               "every schema version above 1 needs its upgrade step");

/* Column order is the order of struct psdb_row and of the bind indexes. */
#define PSDB_NODE_COLUMNS                                                                 \
  "node_id, pubkey, addrs, first_seen, last_seen, last_connected, failures, source, " \
  "is_validator, score, ban_until, anchor, score_state"

struct psdb {
  sqlite3 *db;
  char *path;
  unsigned long *commits;
  sqlite3_stmt *put_node, *del_node, *put_ban, *del_ban;
};

static int psdb_on_commit(void *ud) {
  ++*((struct psdb *)ud)->commits;
  return 0; /* let it commit */
}

/* Fills err with "<path>: <what>" and returns -1. */
static int psdb_fail(char *err, size_t errcap, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int psdb_fail(char *err, size_t errcap, const char *path, const char *fmt, ...) {
  if (!err || errcap == 0) return -1;
  int n = snprintf(err, errcap, "%s: ", path);
  if (n >= 0 && (size_t)n < errcap) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errcap - (size_t)n, fmt, ap);
    va_end(ap);
  }
  return -1;
}

/* Refuses a version of ours that this code cannot read. */
static int psdb_check_version(const struct psdb *d, long long version, char *err,
                              size_t errcap) {
  if (version > PSDB_VERSION)
    return psdb_fail(err, errcap, d->path,
                     "peer store schema version %lld is newer than this bt2cd reads (%d); "
                     "upgrade bt2cd or move the file away",
                     version, PSDB_VERSION);
  if (version < 1)
    return psdb_fail(err, errcap, d->path, "not a bt2c peer store (schema version %lld)",
                     version);
  return 0;
}

/* Brings a file of ours, seen at version `from`, up to PSDB_VERSION (see the
 * top of the file). */
static int psdb_upgrade(struct psdb *d, long long from, char *err, size_t errcap) {
  int rc = sqlite3_exec(d->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (rc == SQLITE_OK) rc = sqlfile_query_int(d->db, "PRAGMA user_version", &from);
  if (rc == SQLITE_OK && psdb_check_version(d, from, err, errcap) != 0) {
    sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
  }
  for (long long v = from; rc == SQLITE_OK && v < PSDB_VERSION; v++)
    rc = sqlite3_exec(d->db, psdb_upgrades[v - 1], NULL, NULL, NULL);
  if (rc == SQLITE_OK && from < PSDB_VERSION) {
    char mark[48];
    snprintf(mark, sizeof mark, "PRAGMA user_version = %d", PSDB_VERSION);
    rc = sqlite3_exec(d->db, mark, NULL, NULL, NULL);
  }
  if (rc == SQLITE_OK) rc = sqlite3_exec(d->db, "COMMIT", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    psdb_fail(err, errcap, d->path,
              "cannot upgrade the peer store from schema version %lld to %d, "
              "file left as it was: %s",
              from, PSDB_VERSION, sqlite3_errmsg(d->db));
    if (!sqlite3_get_autocommit(d->db)) sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
  }
  if (from < PSDB_VERSION)
    log_at(LV_INFO, "peerstore_upgraded", "path=%s from=%lld to=%d", d->path, from,
           PSDB_VERSION);
  return 0;
}

/* Refuses anything but an empty database or one of ours, before touching it;
 * then creates or upgrades. */
static int psdb_check_or_create(struct psdb *d, char *err, size_t errcap) {
  sqlite3 *db = d->db;
  const char *path = d->path;
  struct sqlfile_ident id;
  int rc = sqlfile_identify(db, &id);
  long long appid = id.appid, version = id.version, objects = id.objects;
  if ((rc & 0xff) == SQLITE_NOTADB || (rc & 0xff) == SQLITE_CORRUPT)
    return psdb_fail(err, errcap, path, "not a bt2c peer store (%s)", sqlite3_errmsg(db));
  if (rc != SQLITE_OK) return psdb_fail(err, errcap, path, "%s", sqlite3_errmsg(db));

  if (appid == 0 && objects > 0)
    return psdb_fail(err, errcap, path,
                     "not a bt2c peer store (a sqlite database with %lld other objects)",
                     objects);
  if (appid != 0 && appid != PSDB_APPLICATION_ID)
    return psdb_fail(err, errcap, path, "not a bt2c peer store (application_id 0x%08llx)",
                     (unsigned long long)appid & 0xffffffffULL);
  if (appid == PSDB_APPLICATION_ID && psdb_check_version(d, version, err, errcap) != 0)
    return -1;

  /* journal_mode answers with the mode it ended up in (":memory:" stays "memory") */
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW) {
      const char *mode = (const char *)sqlite3_column_text(st, 0);
      if (!mode || strcmp(mode, "wal") != 0)
        log_at(LV_WARN, "peerstore_no_wal", "path=%s journal_mode=%s", path, mode ? mode : "?");
    }
    sqlite3_finalize(st);
  }
  if (sqlite3_exec(db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK)
    return psdb_fail(err, errcap, path, "%s", sqlite3_errmsg(db));
  if (appid == PSDB_APPLICATION_ID)
    return version < PSDB_VERSION ? psdb_upgrade(d, version, err, errcap) : 0;

  /* Empty: create, unless another process did so while we looked. */
  bool created = false;
  rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (rc == SQLITE_OK) rc = sqlfile_query_int(db, "PRAGMA application_id", &appid);
  if (rc == SQLITE_OK && appid != 0) rc = sqlfile_query_int(db, "PRAGMA user_version", &version);
  if (rc == SQLITE_OK && appid == 0) {
    char mark[96];
    snprintf(mark, sizeof mark, "PRAGMA application_id = %d; PRAGMA user_version = %d;",
             PSDB_APPLICATION_ID, PSDB_VERSION);
    rc = sqlite3_exec(db, psdb_schema, NULL, NULL, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, mark, NULL, NULL, NULL);
    created = true;
  }
  if (rc == SQLITE_OK) rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    psdb_fail(err, errcap, path, "cannot create the peer store: %s", sqlite3_errmsg(db));
    if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
  }
  if (appid != 0 && appid != PSDB_APPLICATION_ID)
    return psdb_fail(err, errcap, path, "not a bt2c peer store (application_id 0x%08llx)",
                     (unsigned long long)appid & 0xffffffffULL);
  if (created) return 0;
  /* the other process may have been an older or a newer bt2cd */
  if (psdb_check_version(d, version, err, errcap) != 0) return -1;
  return version < PSDB_VERSION ? psdb_upgrade(d, version, err, errcap) : 0;
}

static int psdb_prepare(struct psdb *d, char *err, size_t errcap) {
  static const struct {
    size_t off;
    const char *sql;
  } stmts[] = {
      {offsetof(struct psdb, put_node), "INSERT OR REPLACE INTO nodes (" PSDB_NODE_COLUMNS
                                        ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"},
      {offsetof(struct psdb, del_node), "DELETE FROM nodes WHERE node_id = ?"},
      {offsetof(struct psdb, put_ban),
       "INSERT OR REPLACE INTO address_bans (addr, until) VALUES (?, ?)"},
      {offsetof(struct psdb, del_ban), "DELETE FROM address_bans WHERE addr = ?"},
  };
  for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) {
    sqlite3_stmt **st = (sqlite3_stmt **)((char *)d + stmts[i].off);
    if (sqlite3_prepare_v3(d->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) !=
        SQLITE_OK)
      return psdb_fail(err, errcap, d->path, "not a bt2c peer store (%s)",
                       sqlite3_errmsg(d->db));
  }
  return 0;
}

void psdb_close(struct psdb *d) {
  if (!d) return;
  sqlite3_finalize(d->put_node);
  sqlite3_finalize(d->del_node);
  sqlite3_finalize(d->put_ban);
  sqlite3_finalize(d->del_ban);
  if (d->db) sqlite3_close(d->db);
  free(d->path);
  free(d);
}

struct psdb *psdb_open(const char *path, unsigned long *commits, char *err, size_t errcap) {
  struct psdb *d = calloc(1, sizeof *d);
  if (!d || !(d->path = strdup(path))) {
    free(d);
    psdb_fail(err, errcap, path, "out of memory");
    return NULL;
  }
  d->commits = commits;
  int rc = sqlite3_open_v2(path, &d->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc != SQLITE_OK) {
    psdb_fail(err, errcap, path, "%s", d->db ? sqlite3_errmsg(d->db) : sqlite3_errstr(rc));
    goto fail;
  }
  sqlite3_busy_timeout(d->db, PSDB_BUSY_MS);
  sqlite3_commit_hook(d->db, psdb_on_commit, d);
  if (psdb_check_or_create(d, err, errcap) != 0 || psdb_prepare(d, err, errcap) != 0) goto fail;
  return d;
fail:
  psdb_close(d);
  return NULL;
}

/* ---- reading ------------------------------------------------------------ */

static void psdb_read_row(sqlite3_stmt *st, struct psdb_row *r) {
  memset(r, 0, sizeof *r);
  /* the text first, then its length (sqlite's rule: bytes after conversion) */
  r->node_id = (const char *)sqlite3_column_text(st, 0);
  r->node_id_len = (size_t)sqlite3_column_bytes(st, 0);
  r->has_pubkey = sqlite3_column_type(st, 1) != SQLITE_NULL;
  if (r->has_pubkey) {
    r->pubkey = sqlite3_column_blob(st, 1);
    r->pubkey_len = (size_t)sqlite3_column_bytes(st, 1);
  }
  r->addrs = (const char *)sqlite3_column_text(st, 2);
  r->first_seen = sqlite3_column_double(st, 3);
  r->last_seen = sqlite3_column_double(st, 4);
  r->last_connected = sqlite3_column_double(st, 5);
  r->failures = sqlite3_column_int64(st, 6);
  r->source = (const char *)sqlite3_column_text(st, 7);
  r->is_validator = sqlite3_column_int(st, 8) != 0;
  r->score = sqlite3_column_double(st, 9);
  r->ban_until = sqlite3_column_double(st, 10);
  r->anchor = sqlite3_column_int(st, 11) != 0;
  r->score_state = (const char *)sqlite3_column_text(st, 12);
  r->score_state_len = (size_t)sqlite3_column_bytes(st, 12);
}

int psdb_load(struct psdb *d, int (*on_node)(void *ud, const struct psdb_row *row),
              int (*on_ban)(void *ud, const char *addr, double until), void *ud, char *err,
              size_t errcap) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(d->db, "SELECT " PSDB_NODE_COLUMNS " FROM nodes", -1, &st, NULL);
  while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    struct psdb_row row;
    psdb_read_row(st, &row);
    rc = on_node(ud, &row) == 0 ? SQLITE_OK : SQLITE_NOMEM;
  }
  sqlite3_finalize(st);
  st = NULL;
  if (rc == SQLITE_DONE)
    rc = sqlite3_prepare_v2(d->db, "SELECT addr, until FROM address_bans", -1, &st, NULL);
  while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    const char *addr = (const char *)sqlite3_column_text(st, 0);
    rc = on_ban(ud, addr, sqlite3_column_double(st, 1)) == 0 ? SQLITE_OK : SQLITE_NOMEM;
  }
  sqlite3_finalize(st);
  if (rc == SQLITE_DONE) return 0;
  if (rc == SQLITE_NOMEM) return psdb_fail(err, errcap, d->path, "out of memory loading");
  return psdb_fail(err, errcap, d->path, "%s", sqlite3_errmsg(d->db));
}

/* ---- writing ------------------------------------------------------------ */

/* Runs a bound statement and readies it for the next use. */
static int psdb_step(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

int psdb_begin(struct psdb *d) {
  return sqlite3_exec(d->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

int psdb_commit(struct psdb *d) {
  return sqlite3_exec(d->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

void psdb_abort(struct psdb *d, char *msg, size_t cap) {
  snprintf(msg, cap, "%s", sqlite3_errmsg(d->db)); /* before ROLLBACK replaces it */
  if (!sqlite3_get_autocommit(d->db)) sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
}

int psdb_put_node(struct psdb *d, const struct psdb_row *r) {
  sqlite3_stmt *st = d->put_node;
  sqlite3_bind_text(st, 1, r->node_id, (int)r->node_id_len, SQLITE_STATIC);
  if (r->has_pubkey) sqlite3_bind_blob(st, 2, r->pubkey, (int)r->pubkey_len, SQLITE_STATIC);
  else sqlite3_bind_null(st, 2);
  sqlite3_bind_text(st, 3, r->addrs, -1, SQLITE_STATIC);
  sqlite3_bind_double(st, 4, r->first_seen);
  sqlite3_bind_double(st, 5, r->last_seen);
  sqlite3_bind_double(st, 6, r->last_connected);
  sqlite3_bind_int64(st, 7, r->failures);
  sqlite3_bind_text(st, 8, r->source, -1, SQLITE_STATIC);
  sqlite3_bind_int(st, 9, r->is_validator);
  sqlite3_bind_double(st, 10, r->score);
  sqlite3_bind_double(st, 11, r->ban_until);
  sqlite3_bind_int(st, 12, r->anchor);
  sqlite3_bind_text(st, 13, r->score_state, (int)r->score_state_len, SQLITE_STATIC);
  return psdb_step(st);
}

int psdb_del_node(struct psdb *d, const char *node_id) {
  sqlite3_bind_text(d->del_node, 1, node_id, -1, SQLITE_STATIC);
  return psdb_step(d->del_node);
}

int psdb_put_ban(struct psdb *d, const char *addr, double until) {
  sqlite3_bind_text(d->put_ban, 1, addr, -1, SQLITE_STATIC);
  sqlite3_bind_double(d->put_ban, 2, until);
  return psdb_step(d->put_ban);
}

int psdb_del_ban(struct psdb *d, const char *addr) {
  sqlite3_bind_text(d->del_ban, 1, addr, -1, SQLITE_STATIC);
  return psdb_step(d->del_ban);
}
