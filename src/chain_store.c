/* chain_store: see chain_store.h. */
#include "chain_store.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "chain.h"
#include "sqlfile.h"

#define CHAIN_APPLICATION_ID 0x62743243 /* "bt2C" */
#define CHAIN_VERSION 1
#define CHAIN_BUSY_MS 1000

static const char chainstore_schema[] =
    "CREATE TABLE blocks (\n"
    "  height INTEGER PRIMARY KEY,\n"
    "  hash TEXT NOT NULL UNIQUE,\n"
    "  previous_hash TEXT NOT NULL,\n"
    "  timestamp INTEGER NOT NULL,\n"
    "  n_tx INTEGER NOT NULL,\n"
    "  body TEXT NOT NULL\n"
    ");\n"
    /* block_height NULL: pending (the mempool) */
    "CREATE TABLE transactions (\n"
    "  hash TEXT PRIMARY KEY NOT NULL,\n"
    "  block_height INTEGER,\n"
    "  added REAL NOT NULL,\n"
    "  body TEXT NOT NULL\n"
    ") WITHOUT ROWID;\n"
    "CREATE INDEX transactions_pending ON transactions (added) WHERE block_height IS NULL;\n"
    "CREATE TABLE validator_set (\n"
    "  id INTEGER PRIMARY KEY CHECK (id = 1),\n"
    "  epoch INTEGER NOT NULL,\n"
    "  body TEXT NOT NULL\n"
    ");\n";

struct chain {
  sqlite3 *db;
  char *path;
  long long height;
  char tip[BT2C_HASH_HEX + 1];
  long long mempool;
  int batch; /* begin/commit depth */
  struct chain_stats stats;
  sqlite3_stmt *ins_block, *get_by_height, *get_by_hash, *has_block, *tx_confirm, *tx_insert,
      *tx_get, *tx_has, *tx_pending, *tx_pending_count, *vs_get, *vs_put;
};

static int fail(char *err, size_t errcap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errcap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errcap, fmt, ap);
  va_end(ap);
  return -1;
}

static int chainstore_on_commit(void *ud) {
  ((struct chain *)ud)->stats.commits++;
  return 0;
}

static int step_done(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

static int chainstore_create(struct chain *ch, char *err, size_t errcap) {
  struct bt2c_block g;
  chain_genesis(&g);
  int rc = sqlite3_exec(ch->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  long long appid = 0;
  if (rc == SQLITE_OK) rc = sqlfile_query_int(ch->db, "PRAGMA application_id", &appid);
  if (rc == SQLITE_OK && appid == 0) { /* nobody created it meanwhile */
    char mark[96];
    snprintf(mark, sizeof mark, "PRAGMA application_id = %d; PRAGMA user_version = %d;",
             CHAIN_APPLICATION_ID, CHAIN_VERSION);
    rc = sqlite3_exec(ch->db, chainstore_schema, NULL, NULL, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_exec(ch->db, mark, NULL, NULL, NULL);
    sqlite3_stmt *st = NULL;
    if (rc == SQLITE_OK)
      rc = sqlite3_prepare_v2(ch->db,
                              "INSERT INTO blocks (height, hash, previous_hash, timestamp, n_tx, "
                              "body) VALUES (0, ?, ?, 0, 0, ?)",
                              -1, &st, NULL);
    if (rc == SQLITE_OK) {
      sqlite3_bind_text(st, 1, g.hash, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 2, g.previous_hash, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 3, g.json, (int)g.json_len, SQLITE_STATIC);
      rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    }
    sqlite3_finalize(st);
  }
  if (rc == SQLITE_OK) rc = sqlite3_exec(ch->db, "COMMIT", NULL, NULL, NULL);
  chain_block_free(&g);
  if (rc != SQLITE_OK) {
    snprintf(err, errcap, "%s: cannot create the chain store: %s", ch->path,
             sqlite3_errmsg(ch->db));
    if (!sqlite3_get_autocommit(ch->db)) sqlite3_exec(ch->db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
  }
  return 0;
}

static int chainstore_check_file(struct chain *ch, char *err, size_t errcap) {
  struct sqlfile_ident id;
  int rc = sqlfile_identify(ch->db, &id);
  long long appid = id.appid, version = id.version, objects = id.objects;
  if (rc != SQLITE_OK) {
    snprintf(err, errcap, "%s: not a bt2c chain store (%s)", ch->path, sqlite3_errmsg(ch->db));
    return -1;
  }
  if ((appid == 0 && objects > 0) || (appid != 0 && appid != CHAIN_APPLICATION_ID)) {
    snprintf(err, errcap, "%s: not a bt2c chain store (application_id 0x%08llx); move it away",
             ch->path, (unsigned long long)appid & 0xffffffffULL);
    return -1;
  }
  if (appid != 0 && version != CHAIN_VERSION) {
    snprintf(err, errcap, "%s: chain store schema version %lld, this bt2cd reads %d", ch->path,
             version, CHAIN_VERSION);
    return -1;
  }
  sqlite3_exec(ch->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
  sqlite3_exec(ch->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
  return appid == 0 ? chainstore_create(ch, err, errcap) : 0;
}

static int chainstore_prepare(struct chain *ch, char *err, size_t errcap) {
  static const struct {
    size_t off;
    const char *sql;
  } stmts[] = {
      {offsetof(struct chain, ins_block),
       "INSERT INTO blocks (height, hash, previous_hash, timestamp, n_tx, body) "
       "VALUES (?,?,?,?,?,?)"},
      {offsetof(struct chain, get_by_height), "SELECT body FROM blocks WHERE height = ?"},
      {offsetof(struct chain, get_by_hash), "SELECT body FROM blocks WHERE hash = ?"},
      {offsetof(struct chain, has_block), "SELECT 1 FROM blocks WHERE hash = ?"},
      {offsetof(struct chain, tx_confirm),
       "UPDATE transactions SET block_height = ? WHERE hash = ? AND block_height IS NULL"},
      {offsetof(struct chain, tx_insert),
       "INSERT OR IGNORE INTO transactions (hash, block_height, added, body) VALUES (?,?,?,?)"},
      {offsetof(struct chain, tx_get), "SELECT body FROM transactions WHERE hash = ?"},
      {offsetof(struct chain, tx_has), "SELECT 1 FROM transactions WHERE hash = ?"},
      {offsetof(struct chain, tx_pending),
       "SELECT hash, body FROM transactions WHERE block_height IS NULL ORDER BY added, hash "
       "LIMIT ?"},
      {offsetof(struct chain, tx_pending_count),
       "SELECT count(*) FROM transactions WHERE block_height IS NULL"},
      {offsetof(struct chain, vs_get), "SELECT epoch, body FROM validator_set WHERE id = 1"},
      {offsetof(struct chain, vs_put),
       "INSERT OR REPLACE INTO validator_set (id, epoch, body) VALUES (1, ?, ?)"},
  };
  for (size_t i = 0; i < sizeof stmts / sizeof stmts[0]; i++) {
    sqlite3_stmt **st = (sqlite3_stmt **)((char *)ch + stmts[i].off);
    if (sqlite3_prepare_v3(ch->db, stmts[i].sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) !=
        SQLITE_OK) {
      snprintf(err, errcap, "%s: not a bt2c chain store (%s)", ch->path, sqlite3_errmsg(ch->db));
      return -1;
    }
  }
  return 0;
}

static int chainstore_load_tip(struct chain *ch, char *err, size_t errcap) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(
      ch->db, "SELECT height, hash FROM blocks ORDER BY height DESC LIMIT 1", -1, &st, NULL);
  if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
    ch->height = sqlite3_column_int64(st, 0);
    snprintf(ch->tip, sizeof ch->tip, "%s", (const char *)sqlite3_column_text(st, 1));
  } else {
    rc = SQLITE_ERROR;
  }
  sqlite3_finalize(st);
  struct bt2c_block g;
  chain_genesis(&g);
  long long same = 0;
  char sql[160];
  snprintf(sql, sizeof sql, "SELECT count(*) FROM blocks WHERE height = 0 AND hash = '%s'", g.hash);
  if (rc == SQLITE_OK) rc = sqlfile_query_int(ch->db, sql, &same);
  chain_block_free(&g);
  if (rc == SQLITE_OK && same != 1) {
    snprintf(err, errcap, "%s: this chain does not start from the bt2c genesis block; move it away",
             ch->path);
    return -1;
  }
  if (rc == SQLITE_OK)
    rc = sqlfile_query_int(ch->db, "SELECT count(*) FROM transactions WHERE block_height IS NULL",
                           &ch->mempool);
  if (rc != SQLITE_OK) {
    snprintf(err, errcap, "%s: cannot read the chain: %s", ch->path, sqlite3_errmsg(ch->db));
    return -1;
  }
  return 0;
}

void chainstore_close(struct chain *ch) {
  if (ch == NULL) return;
  sqlite3_stmt *all[] = {ch->ins_block, ch->get_by_height, ch->get_by_hash, ch->has_block,
                         ch->tx_confirm, ch->tx_insert, ch->tx_get, ch->tx_has, ch->tx_pending,
                         ch->tx_pending_count, ch->vs_get, ch->vs_put};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) sqlite3_finalize(all[i]);
  if (ch->db) {
    if (!sqlite3_get_autocommit(ch->db)) sqlite3_exec(ch->db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(ch->db);
  }
  free(ch->path);
  free(ch);
}

struct chain *chainstore_open(const char *path, char *err, size_t errcap) {
  struct chain *ch = calloc(1, sizeof *ch);
  if (ch == NULL || (ch->path = strdup(path)) == NULL) {
    free(ch);
    snprintf(err, errcap, "%s: out of memory", path);
    return NULL;
  }
  int rc = sqlite3_open_v2(path, &ch->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc != SQLITE_OK) {
    snprintf(err, errcap, "%s: %s", path, ch->db ? sqlite3_errmsg(ch->db) : sqlite3_errstr(rc));
    chainstore_close(ch);
    return NULL;
  }
  sqlite3_busy_timeout(ch->db, CHAIN_BUSY_MS);
  sqlite3_commit_hook(ch->db, chainstore_on_commit, ch);
  if (chainstore_check_file(ch, err, errcap) != 0 || chainstore_prepare(ch, err, errcap) != 0 ||
      chainstore_load_tip(ch, err, errcap) != 0) {
    chainstore_close(ch);
    return NULL;
  }
  return ch;
}

long long chainstore_height(const struct chain *ch) { return ch->height; }
const char *chainstore_tip_hash(const struct chain *ch) { return ch->tip; }

void chainstore_get_stats(const struct chain *ch, struct chain_stats *out) { *out = ch->stats; }

static double unix_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Runs a query that returns one text column into out; 0, or -1 if no row. */
static int get_text(sqlite3_stmt *st, struct buf *out) {
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) {
    const void *t = sqlite3_column_text(st, 0);
    buf_append(out, t, (size_t)sqlite3_column_bytes(st, 0));
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_ROW ? 0 : -1;
}

static bool exists(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_ROW;
}

static long long st_height(void *ctx) { return ((struct chain *)ctx)->height; }

static void st_tip(void *ctx, char hash[BT2C_HASH_HEX + 1]) {
  memcpy(hash, ((struct chain *)ctx)->tip, BT2C_HASH_HEX + 1);
}

static bool st_has_block(void *ctx, const char *hash) {
  struct chain *ch = ctx;
  sqlite3_bind_text(ch->has_block, 1, hash, -1, SQLITE_STATIC);
  return exists(ch->has_block);
}

static int st_get_block(void *ctx, long long height, const char *hash, struct buf *out) {
  struct chain *ch = ctx;
  if (hash) {
    sqlite3_bind_text(ch->get_by_hash, 1, hash, -1, SQLITE_STATIC);
    return get_text(ch->get_by_hash, out);
  }
  if (height < 0 || height > ch->height) return -1;
  sqlite3_bind_int64(ch->get_by_height, 1, height);
  return get_text(ch->get_by_height, out);
}

static void st_begin(void *ctx) {
  struct chain *ch = ctx;
  if (ch->batch++ == 0) sqlite3_exec(ch->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
}

static void st_commit(void *ctx) {
  struct chain *ch = ctx;
  if (ch->batch > 0 && --ch->batch == 0 && !sqlite3_get_autocommit(ch->db))
    sqlite3_exec(ch->db, "COMMIT", NULL, NULL, NULL);
}

static int st_put_block(void *ctx, const struct bt2c_block *b, char *err, size_t errcap) {
  struct chain *ch = ctx;
  if (b->height != ch->height + 1 || strcmp(b->previous_hash, ch->tip) != 0)
    return fail(err, errcap, "block %lld does not extend the tip %lld", b->height, ch->height);
  /* a savepoint per block: inside a batch, a failed block leaves no trace */
  if (sqlite3_exec(ch->db, "SAVEPOINT put_block", NULL, NULL, NULL) != SQLITE_OK)
    return fail(err, errcap, "chain store: %s", sqlite3_errmsg(ch->db));
  sqlite3_stmt *st = ch->ins_block;
  sqlite3_bind_int64(st, 1, b->height);
  sqlite3_bind_text(st, 2, b->hash, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 3, b->previous_hash, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 4, b->timestamp);
  sqlite3_bind_int64(st, 5, (sqlite3_int64)b->n_transactions);
  sqlite3_bind_text(st, 6, b->json, (int)b->json_len, SQLITE_STATIC);
  int rc = step_done(st);
  long long confirmed = 0;
  double now = unix_now();
  for (size_t i = 0; i < b->n_transactions && rc == 0; i++) {
    const struct bt2c_transaction *t = &b->transactions[i];
    sqlite3_bind_int64(ch->tx_confirm, 1, b->height);
    sqlite3_bind_text(ch->tx_confirm, 2, t->hash, -1, SQLITE_STATIC);
    rc = step_done(ch->tx_confirm);
    if (rc == 0 && sqlite3_changes(ch->db) == 1) {
      confirmed++;
      continue;
    }
    sqlite3_bind_text(ch->tx_insert, 1, t->hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(ch->tx_insert, 2, b->height);
    sqlite3_bind_double(ch->tx_insert, 3, now);
    sqlite3_bind_text(ch->tx_insert, 4, t->json, (int)t->json_len, SQLITE_STATIC);
    if (rc == 0) rc = step_done(ch->tx_insert);
  }
  if (rc != 0) {
    fail(err, errcap, "chain store: %s", sqlite3_errmsg(ch->db));
    sqlite3_exec(ch->db, "ROLLBACK TO put_block; RELEASE put_block", NULL, NULL, NULL);
    return -1;
  }
  if (sqlite3_exec(ch->db, "RELEASE put_block", NULL, NULL, NULL) != SQLITE_OK) {
    fail(err, errcap, "chain store: %s", sqlite3_errmsg(ch->db));
    sqlite3_exec(ch->db, "ROLLBACK TO put_block; RELEASE put_block", NULL, NULL, NULL);
    return -1;
  }
  ch->height = b->height;
  memcpy(ch->tip, b->hash, sizeof ch->tip);
  ch->mempool -= confirmed;
  ch->stats.blocks_written++;
  return 0;
}

static bool st_has_tx(void *ctx, const char *hash) {
  struct chain *ch = ctx;
  sqlite3_bind_text(ch->tx_has, 1, hash, -1, SQLITE_STATIC);
  return exists(ch->tx_has);
}

static int st_get_tx(void *ctx, const char *hash, struct buf *out) {
  struct chain *ch = ctx;
  sqlite3_bind_text(ch->tx_get, 1, hash, -1, SQLITE_STATIC);
  return get_text(ch->tx_get, out);
}

static int st_put_tx(void *ctx, const struct bt2c_transaction *t, char *err, size_t errcap) {
  struct chain *ch = ctx;
  if (st_has_tx(ch, t->hash)) return 1;
  if (ch->mempool >= CHAIN_MEMPOOL_MAX)
    return fail(err, errcap, "the mempool is full (%d transactions)", CHAIN_MEMPOOL_MAX);
  sqlite3_bind_text(ch->tx_insert, 1, t->hash, -1, SQLITE_STATIC);
  sqlite3_bind_null(ch->tx_insert, 2);
  sqlite3_bind_double(ch->tx_insert, 3, unix_now());
  sqlite3_bind_text(ch->tx_insert, 4, t->json, (int)t->json_len, SQLITE_STATIC);
  if (step_done(ch->tx_insert) != 0)
    return fail(err, errcap, "chain store: %s", sqlite3_errmsg(ch->db));
  if (sqlite3_changes(ch->db) == 0) return 1;
  ch->mempool++;
  ch->stats.tx_written++;
  return 0;
}

static int st_pending(void *ctx, int max, int (*fn)(void *ud, const struct bt2c_transaction *t),
                      void *ud) {
  struct chain *ch = ctx;
  sqlite3_stmt *st = ch->tx_pending;
  sqlite3_bind_int(st, 1, max);
  int n = 0;
  while (sqlite3_step(st) == SQLITE_ROW) {
    struct bt2c_transaction t;
    snprintf(t.hash, sizeof t.hash, "%s", (const char *)sqlite3_column_text(st, 0));
    t.json = (const char *)sqlite3_column_text(st, 1);
    t.json_len = (size_t)sqlite3_column_bytes(st, 1);
    n++;
    if (fn(ud, &t)) break;
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return n;
}

static long long st_pending_count(void *ctx) { return ((struct chain *)ctx)->mempool; }

void chainstore_iface(struct chain *ch, struct bt2c_blockchain_store *out) {
  memset(out, 0, sizeof *out);
  out->ctx = ch;
  out->height = st_height;
  out->tip = st_tip;
  out->has_block = st_has_block;
  out->get_block = st_get_block;
  out->put_block = st_put_block;
  out->has_transaction = st_has_tx;
  out->get_transaction = st_get_tx;
  out->put_transaction = st_put_tx;
  out->pending = st_pending;
  out->pending_count = st_pending_count;
  out->begin = st_begin;
  out->commit = st_commit;
}

int chainstore_get_validator_set(struct chain *ch, long long *epoch, struct buf *out) {
  int rc = sqlite3_step(ch->vs_get);
  if (rc == SQLITE_ROW) {
    *epoch = sqlite3_column_int64(ch->vs_get, 0);
    const void *t = sqlite3_column_text(ch->vs_get, 1);
    buf_append(out, t, (size_t)sqlite3_column_bytes(ch->vs_get, 1));
  }
  sqlite3_reset(ch->vs_get);
  return rc == SQLITE_ROW ? 0 : -1;
}

int chainstore_put_validator_set(struct chain *ch, long long epoch, const char *json, size_t len) {
  sqlite3_bind_int64(ch->vs_put, 1, epoch);
  sqlite3_bind_text(ch->vs_put, 2, json, (int)len, SQLITE_STATIC);
  return step_done(ch->vs_put);
}
