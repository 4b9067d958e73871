/* chain: see chain.h. The canonical form and the hash rules are specified
 * in docs/PROTOCOL.md 7.2; the unit spec (spec/chain_spec.lua) holds the
 * worked examples of that section, so the two cannot drift apart. */
#include "chain.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "identity.h"
#include "log.h"

/* ---- canonical JSON (RFC 8785) ------------------------------------------ */

/* Walks a UTF-8 string as UTF-16 code units: JCS orders member names by
 * them, which differs from byte order only for characters above U+FFFF. */
struct u16it {
  const unsigned char *s;
  size_t len, i;
  unsigned pending;
};

static int u16_next(struct u16it *it) {
  if (it->pending) {
    unsigned u = it->pending;
    it->pending = 0;
    return (int)u;
  }
  if (it->i >= it->len) return -1;
  const unsigned char *s = it->s + it->i;
  size_t left = it->len - it->i;
  unsigned cp = s[0];
  size_t n = 1;
  if (cp >= 0xf0 && left >= 4) {
    cp = (cp & 0x07u) << 18 | (s[1] & 0x3fu) << 12 | (s[2] & 0x3fu) << 6 | (s[3] & 0x3fu);
    n = 4;
  } else if (cp >= 0xe0 && left >= 3) {
    cp = (cp & 0x0fu) << 12 | (s[1] & 0x3fu) << 6 | (s[2] & 0x3fu);
    n = 3;
  } else if (cp >= 0xc0 && left >= 2) {
    cp = (cp & 0x1fu) << 6 | (s[1] & 0x3fu);
    n = 2;
  }
  it->i += n;
  if (cp >= 0x10000) {
    cp -= 0x10000;
    it->pending = 0xdc00 + (cp & 0x3ff);
    return (int)(0xd800 + (cp >> 10));
  }
  return (int)cp;
}

static int key_cmp(const struct json_member *a, const struct json_member *b) {
  struct u16it x = {(const unsigned char *)a->key, a->key_len, 0, 0};
  struct u16it y = {(const unsigned char *)b->key, b->key_len, 0, 0};
  for (;;) {
    int u = u16_next(&x), v = u16_next(&y);
    if (u != v) return u < v ? -1 : 1;
    if (u < 0) return 0;
  }
}

static int member_cmp(const void *a, const void *b) { return key_cmp(a, b); }

static void canon_string(struct buf *b, const char *s, size_t len) {
  buf_append(b, "\"", 1);
  size_t run = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') {
      run++;
      continue;
    }
    buf_append(b, s + i - run, run);
    run = 0;
    switch (c) {
      case '"': buf_append(b, "\\\"", 2); break;
      case '\\': buf_append(b, "\\\\", 2); break;
      case '\b': buf_append(b, "\\b", 2); break;
      case '\f': buf_append(b, "\\f", 2); break;
      case '\n': buf_append(b, "\\n", 2); break;
      case '\r': buf_append(b, "\\r", 2); break;
      case '\t': buf_append(b, "\\t", 2); break;
      default: buf_appendf(b, "\\u%04x", c);
    }
  }
  buf_append(b, s + len - run, run);
  buf_append(b, "\"", 1);
}

/* The shortest decimal digits that read back as x (x > 0): writes them to
 * digits (no dot, no trailing zeros) and returns the decimal exponent n with
 * x = 0.d1d2...dk * 10^n, as ECMAScript's Number::toString defines them.
 * printf's correctly rounded %.*e finds the nearest decimal of each length;
 * next to a power of two the nearest may miss while a neighbour reads back,
 * so the neighbours are tried too. */
static int shortest_digits(double x, char digits[24]) {
  char tmp[48];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, x);
    if (strtod(tmp, NULL) == x) break;
    char *e = strchr(tmp, 'e');
    unsigned long long m = 0;
    for (char *p = tmp; p < e; p++)
      if (*p >= '0' && *p <= '9') m = m * 10 + (unsigned long long)(*p - '0');
    int scale = atoi(e + 1) - (prec - 1);
    for (int delta = -1; delta <= 1; delta += 2) {
      unsigned long long mm = m + (unsigned long long)(long long)delta;
      char cand[48];
      if (mm == 0) continue;
      snprintf(cand, sizeof cand, "%llue%d", mm, scale);
      if (strtod(cand, NULL) != x) continue;
      int k = snprintf(digits, 24, "%llu", mm);
      int n = scale + k;
      while (k > 1 && digits[k - 1] == '0') k--;
      digits[k] = '\0';
      return n;
    }
  }
  char *e = strchr(tmp, 'e');
  int exp10 = atoi(e + 1);
  int k = 0;
  for (char *p = tmp; p < e; p++)
    if (*p >= '0' && *p <= '9') digits[k++] = *p;
  while (k > 1 && digits[k - 1] == '0') k--;
  digits[k] = '\0';
  return exp10 + 1;
}

void chain_canonical_number(struct buf *b, double x) {
  if (x == 0 || !isfinite(x)) { /* -0 is 0; JSON has no NaN or infinity */
    buf_append(b, "0", 1);
    return;
  }
  if (x < 0) {
    buf_append(b, "-", 1);
    x = -x;
  }
  char d[24];
  int n = shortest_digits(x, d);
  int k = (int)strlen(d);
  if (k <= n && n <= 21) {
    buf_append(b, d, (size_t)k);
    for (int i = k; i < n; i++) buf_append(b, "0", 1);
  } else if (0 < n && n <= 21) {
    buf_append(b, d, (size_t)n);
    buf_append(b, ".", 1);
    buf_append(b, d + n, (size_t)(k - n));
  } else if (-6 < n && n <= 0) {
    buf_append(b, "0.", 2);
    for (int i = 0; i < -n; i++) buf_append(b, "0", 1);
    buf_append(b, d, (size_t)k);
  } else {
    buf_append(b, d, 1);
    if (k > 1) {
      buf_append(b, ".", 1);
      buf_append(b, d + 1, (size_t)(k - 1));
    }
    buf_appendf(b, "e%c%d", n - 1 >= 0 ? '+' : '-', abs(n - 1));
  }
}

static int canon_value(struct buf *b, const struct json_value *v, const char *skip,
                       const char *override_key, const char *override_json, char *err,
                       size_t errcap) {
  switch (v->type) {
    case JSON_NULL: buf_append(b, "null", 4); return 0;
    case JSON_BOOL: buf_append(b, v->b ? "true" : "false", v->b ? 4 : 5); return 0;
    case JSON_NUMBER: chain_canonical_number(b, v->num); return 0;
    case JSON_STRING: canon_string(b, v->str, v->len); return 0;
    case JSON_ARRAY:
      buf_append(b, "[", 1);
      for (size_t i = 0; i < v->len; i++) {
        if (i) buf_append(b, ",", 1);
        if (canon_value(b, v->items[i], NULL, NULL, NULL, err, errcap) != 0) return -1;
      }
      buf_append(b, "]", 1);
      return 0;
    case JSON_OBJECT: break;
  }
  struct json_member *m = NULL;
  if (v->len) {
    m = malloc(v->len * sizeof *m);
    if (m == NULL) abort();
    memcpy(m, v->members, v->len * sizeof *m);
    qsort(m, v->len, sizeof *m, member_cmp);
  }
  int rc = 0;
  bool first = true;
  buf_append(b, "{", 1);
  for (size_t i = 0; i < v->len && rc == 0; i++) {
    if (i && key_cmp(&m[i - 1], &m[i]) == 0) {
      snprintf(err, errcap, "duplicate member \"%.*s\"",
               (int)(m[i].key_len > 40 ? 40 : m[i].key_len), m[i].key);
      rc = -1;
      break;
    }
    bool named = false;
    if (skip && m[i].key_len == strlen(skip) && memcmp(m[i].key, skip, m[i].key_len) == 0) continue;
    if (override_key && m[i].key_len == strlen(override_key) &&
        memcmp(m[i].key, override_key, m[i].key_len) == 0)
      named = true;
    if (!first) buf_append(b, ",", 1);
    first = false;
    canon_string(b, m[i].key, m[i].key_len);
    buf_append(b, ":", 1);
    if (named) buf_append(b, override_json, strlen(override_json));
    else rc = canon_value(b, m[i].value, NULL, NULL, NULL, err, errcap);
  }
  buf_append(b, "}", 1);
  free(m);
  return rc;
}

int chain_canonical(struct buf *out, const struct json_value *v, const char *skip, char *err,
                    size_t errcap) {
  return canon_value(out, v, skip, NULL, NULL, err, errcap);
}

/* ---- hashes --------------------------------------------------------------- */

void chain_sha256_hex(const void *data, size_t len, char out[BT2C_HASH_HEX + 1]) {
  static EVP_MD *sha256; /* fetched once: a read-only cache */
  if (sha256 == NULL) sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
  uint8_t d[32];
  unsigned int n = 0;
  if (!EVP_Digest(data, len, d, &n, sha256, NULL)) memset(d, 0, sizeof d);
  hex_encode(d, sizeof d, out);
}

void chain_block_hash(long long height, const char *previous_hash, long long timestamp,
                      const struct bt2c_transaction *txs, size_t n, const char *data_hash,
                      char out[BT2C_HASH_HEX + 1]) {
  struct buf b = {0};
  buf_appendf(&b, "bt2c-block-v1\n%lld\n%s\n%lld\n%zu\n", height, previous_hash, timestamp, n);
  for (size_t i = 0; i < n; i++) {
    buf_append(&b, txs[i].hash, BT2C_HASH_HEX);
    buf_append(&b, "\n", 1);
  }
  buf_appendf(&b, "%s\n", data_hash ? data_hash : "-");
  chain_sha256_hex(b.data, b.len, out);
  buf_free(&b);
}

static const char zero_hash[BT2C_HASH_HEX + 1] =
    "0000000000000000000000000000000000000000000000000000000000000000";

/* The canonical JSON of a block from its parts. */
static void block_json(struct buf *b, const char *hash, long long height, const char *prev,
                       long long timestamp, const struct bt2c_transaction *txs, size_t n,
                       const char *data, size_t data_len, size_t *tx_off) {
  buf_append(b, "{", 1);
  if (data) {
    buf_append(b, "\"data\":", 7);
    buf_append(b, data, data_len);
    buf_append(b, ",", 1);
  }
  buf_appendf(b, "\"hash\":\"%s\",\"height\":%lld,\"previousHash\":\"%s\",\"timestamp\":%lld,"
                 "\"transactions\":[",
              hash, height, prev, timestamp);
  for (size_t i = 0; i < n; i++) {
    if (i) buf_append(b, ",", 1);
    if (tx_off) tx_off[i] = b->len;
    buf_append(b, txs[i].json, txs[i].json_len);
  }
  buf_append(b, "]}", 2);
}

void chain_block_free(struct bt2c_block *b) {
  free(b->transactions);
  free(b->json);
  memset(b, 0, sizeof *b);
}

/* Fills out from its parts; the transactions' json are copied into the
 * block's own text. */
static int block_fill(struct bt2c_block *out, const char *hash, long long height, const char *prev,
                      long long timestamp, const struct bt2c_transaction *txs, size_t n,
                      const char *data, size_t data_len, size_t max_bytes, char *err,
                      size_t errcap) {
  memset(out, 0, sizeof *out);
  size_t *off = malloc((n ? n : 1) * sizeof *off);
  out->transactions = malloc((n ? n : 1) * sizeof *out->transactions);
  if (off == NULL || out->transactions == NULL) abort();
  struct buf b = {0};
  block_json(&b, hash, height, prev, timestamp, txs, n, data, data_len, off);
  if (max_bytes && b.len > max_bytes) {
    snprintf(err, errcap, "block of %zu bytes exceeds %zu", b.len, max_bytes);
    free(off);
    buf_free(&b);
    chain_block_free(out);
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    memcpy(out->transactions[i].hash, txs[i].hash, sizeof out->transactions[i].hash);
    out->transactions[i].json = b.data + off[i];
    out->transactions[i].json_len = txs[i].json_len;
  }
  free(off);
  memcpy(out->hash, hash, BT2C_HASH_HEX + 1);
  memcpy(out->previous_hash, prev, BT2C_HASH_HEX + 1);
  out->height = height;
  out->timestamp = timestamp;
  out->n_transactions = n;
  out->json = b.data;
  out->json_len = b.len;
  return 0;
}

int chain_block_make(long long height, const char *previous_hash, long long timestamp,
                     const struct bt2c_transaction *txs, size_t n, const char *data_canon,
                     size_t data_len, struct bt2c_block *out, char *err, size_t errcap) {
  char data_hash[BT2C_HASH_HEX + 1], hash[BT2C_HASH_HEX + 1];
  if (data_canon) chain_sha256_hex(data_canon, data_len, data_hash);
  chain_block_hash(height, previous_hash, timestamp, txs, n, data_canon ? data_hash : NULL, hash);
  return block_fill(out, hash, height, previous_hash, timestamp, txs, n, data_canon, data_len, 0,
                    err, errcap);
}

void chain_genesis(struct bt2c_block *out) {
  char err[64];
  chain_block_make(0, zero_hash, 0, NULL, 0, NULL, 0, out, err, sizeof err);
}

/* ---- checks --------------------------------------------------------------- */

static int fail(char *err, size_t errcap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errcap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errcap, fmt, ap);
  va_end(ap);
  return -1;
}

/* A member that is a 64-hex hash; writes it in lowercase. */
static bool get_hash(const struct json_value *v, const char *key, char out[BT2C_HASH_HEX + 1]) {
  const struct json_value *s = json_get_string(v, key);
  uint8_t raw[32];
  if (s == NULL || hex_decode(s->str, s->len, raw, sizeof raw) != 0) return false;
  hex_encode(raw, sizeof raw, out);
  return true;
}

static bool get_uint(const struct json_value *v, const char *key, long long *out) {
  return json_get_int(v, key, 0, (long long)CHAIN_MAX_INT, out);
}

static bool nonneg_number(const struct json_value *v, const char *key, bool required) {
  const struct json_value *m = json_get(v, key);
  if (m == NULL) return !required;
  return m->type == JSON_NUMBER && m->num >= 0;
}

int chain_tx_check(const struct json_value *v, struct buf *canon, char hash[BT2C_HASH_HEX + 1],
                   char *err, size_t errcap) {
  if (v == NULL || v->type != JSON_OBJECT)
    return fail(err, errcap, "a transaction is a JSON object");
  char claimed[BT2C_HASH_HEX + 1];
  if (!get_hash(v, "hash", claimed))
    return fail(err, errcap, "transaction: hash must be 64 hex characters");
  static const char *const strs[] = {"from", "to"};
  for (int i = 0; i < 2; i++) {
    const struct json_value *s = json_get_string(v, strs[i]);
    if (s == NULL || s->len > CHAIN_MAX_STRING)
      return fail(err, errcap, "transaction: %s must be a string of at most %d bytes", strs[i],
                  CHAIN_MAX_STRING);
  }
  if (!nonneg_number(v, "amount", true))
    return fail(err, errcap, "transaction: amount must be a number >= 0");
  if (!nonneg_number(v, "fee", false))
    return fail(err, errcap, "transaction: fee must be a number >= 0");
  long long n;
  if (json_get(v, "nonce") && !get_uint(v, "nonce", &n))
    return fail(err, errcap, "transaction: nonce must be an integer in 0..2^53");
  if (!get_uint(v, "timestamp", &n))
    return fail(err, errcap, "transaction: timestamp must be an integer (ms) in 0..2^53");
  struct buf content = {0};
  char why[96];
  if (chain_canonical(&content, v, "hash", why, sizeof why) != 0) {
    buf_free(&content);
    return fail(err, errcap, "transaction: %s", why);
  }
  if (content.len > CHAIN_MAX_TX_BYTES) {
    buf_free(&content);
    return fail(err, errcap, "transaction: %zu bytes exceeds %d", content.len, CHAIN_MAX_TX_BYTES);
  }
  chain_sha256_hex(content.data, content.len, hash);
  buf_free(&content);
  if (strcmp(hash, claimed) != 0)
    return fail(err, errcap, "transaction: hash %s does not match its content (%s)", claimed, hash);
  char quoted[BT2C_HASH_HEX + 3];
  snprintf(quoted, sizeof quoted, "\"%s\"", hash);
  return canon_value(canon, v, NULL, "hash", quoted, err, errcap);
}

static int hash_cmp(const void *a, const void *b) {
  return strcmp(((const struct bt2c_transaction *)a)->hash,
                ((const struct bt2c_transaction *)b)->hash);
}

int chain_block_check(const struct json_value *v, size_t max_bytes, struct bt2c_block *out,
                      char *err, size_t errcap) {
  memset(out, 0, sizeof *out);
  if (v == NULL || v->type != JSON_OBJECT) return fail(err, errcap, "a block is a JSON object");
  char claimed[BT2C_HASH_HEX + 1], prev[BT2C_HASH_HEX + 1];
  long long height, ts;
  if (!get_hash(v, "hash", claimed))
    return fail(err, errcap, "block: hash must be 64 hex characters");
  if (!get_uint(v, "height", &height))
    return fail(err, errcap, "block: height must be an integer in 0..2^53");
  if (!get_hash(v, "previousHash", prev))
    return fail(err, errcap, "block: previousHash must be 64 hex characters");
  if (!get_uint(v, "timestamp", &ts))
    return fail(err, errcap, "block: timestamp must be an integer (ms) in 0..2^53");
  const struct json_value *txs = json_get(v, "transactions");
  if (txs == NULL || txs->type != JSON_ARRAY)
    return fail(err, errcap, "block: transactions must be an array");
  if (txs->len > CHAIN_MAX_TXS)
    return fail(err, errcap, "block: %zu transactions exceed %d", txs->len, CHAIN_MAX_TXS);

  size_t n = txs->len;
  struct bt2c_transaction *t = calloc(n ? n : 1, sizeof *t);
  struct buf *canon = calloc(n ? n : 1, sizeof *canon);
  if (t == NULL || canon == NULL) abort();
  int rc = 0;
  struct buf data = {0};
  for (size_t i = 0; i < n && rc == 0; i++) {
    char why[200];
    if (chain_tx_check(txs->items[i], &canon[i], t[i].hash, why, sizeof why) != 0)
      rc = fail(err, errcap, "block: transaction %zu: %s", i, why);
    t[i].json = canon[i].data;
    t[i].json_len = canon[i].len;
  }
  if (rc == 0 && n > 1) {
    struct bt2c_transaction *sorted = malloc(n * sizeof *sorted);
    if (sorted == NULL) abort();
    memcpy(sorted, t, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, hash_cmp);
    for (size_t i = 1; i < n && rc == 0; i++)
      if (strcmp(sorted[i - 1].hash, sorted[i].hash) == 0)
        rc = fail(err, errcap, "block: transaction %s appears twice", sorted[i].hash);
    free(sorted);
  }
  const struct json_value *d = json_get(v, "data");
  char data_hash[BT2C_HASH_HEX + 1], hash[BT2C_HASH_HEX + 1];
  if (rc == 0 && d) {
    char why[96];
    if (chain_canonical(&data, d, NULL, why, sizeof why) != 0)
      rc = fail(err, errcap, "block: data: %s", why);
    else chain_sha256_hex(data.data, data.len, data_hash);
  }
  if (rc == 0) {
    chain_block_hash(height, prev, ts, t, n, d ? data_hash : NULL, hash);
    if (strcmp(hash, claimed) != 0)
      rc = fail(err, errcap, "block %lld: hash %s does not match its content (%s)", height, claimed,
                hash);
  }
  if (rc == 0)
    rc = block_fill(out, hash, height, prev, ts, t, n, d ? data.data : NULL, data.len, max_bytes,
                    err, errcap);
  for (size_t i = 0; i < n; i++) buf_free(&canon[i]);
  free(canon);
  free(t);
  buf_free(&data);
  return rc;
}

int chain_block_parse(const char *json, size_t len, size_t max_bytes, struct bt2c_block *out,
                      char *err, size_t errcap) {
  struct json_doc doc;
  char why[96];
  memset(out, 0, sizeof *out);
  if (json_parse(json, len, &doc, why, sizeof why) != 0)
    return fail(err, errcap, "block: invalid JSON (%s)", why);
  int rc = chain_block_check(doc.root, max_bytes, out, err, errcap);
  json_free(&doc);
  return rc;
}

/* ---- the built-in store ----------------------------------------------------- */

#define CHAIN_APPLICATION_ID 0x62743243 /* "bt2C" */
#define CHAIN_VERSION 1
#define CHAIN_BUSY_MS 1000

static const char chain_schema[] =
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

static int chain_on_commit(void *ud) {
  ((struct chain *)ud)->stats.commits++;
  return 0;
}

static int step_done(sqlite3_stmt *st) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return rc == SQLITE_DONE ? 0 : -1;
}

static int query_int(sqlite3 *db, const char *sql, long long *out) {
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

static int chain_create(struct chain *ch, char *err, size_t errcap) {
  struct bt2c_block g;
  chain_genesis(&g);
  int rc = sqlite3_exec(ch->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  long long appid = 0;
  if (rc == SQLITE_OK) rc = query_int(ch->db, "PRAGMA application_id", &appid);
  if (rc == SQLITE_OK && appid == 0) { /* nobody created it meanwhile */
    char mark[96];
    snprintf(mark, sizeof mark, "PRAGMA application_id = %d; PRAGMA user_version = %d;",
             CHAIN_APPLICATION_ID, CHAIN_VERSION);
    rc = sqlite3_exec(ch->db, chain_schema, NULL, NULL, NULL);
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

static int chain_check_file(struct chain *ch, char *err, size_t errcap) {
  long long appid = 0, version = 0, objects = 0;
  int rc = query_int(ch->db, "PRAGMA application_id", &appid);
  if (rc == SQLITE_OK) rc = query_int(ch->db, "PRAGMA user_version", &version);
  if (rc == SQLITE_OK) rc = query_int(ch->db, "SELECT count(*) FROM sqlite_master", &objects);
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
  return appid == 0 ? chain_create(ch, err, errcap) : 0;
}

static int chain_prepare(struct chain *ch, char *err, size_t errcap) {
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

static int chain_load_tip(struct chain *ch, char *err, size_t errcap) {
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
  if (rc == SQLITE_OK) rc = query_int(ch->db, sql, &same);
  chain_block_free(&g);
  if (rc == SQLITE_OK && same != 1) {
    snprintf(err, errcap, "%s: this chain does not start from the bt2c genesis block; move it away",
             ch->path);
    return -1;
  }
  if (rc == SQLITE_OK)
    rc = query_int(ch->db, "SELECT count(*) FROM transactions WHERE block_height IS NULL",
                   &ch->mempool);
  if (rc != SQLITE_OK) {
    snprintf(err, errcap, "%s: cannot read the chain: %s", ch->path, sqlite3_errmsg(ch->db));
    return -1;
  }
  return 0;
}

void chain_close(struct chain *ch) {
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

struct chain *chain_open(const char *path, char *err, size_t errcap) {
  struct chain *ch = calloc(1, sizeof *ch);
  if (ch == NULL || (ch->path = strdup(path)) == NULL) {
    free(ch);
    snprintf(err, errcap, "%s: out of memory", path);
    return NULL;
  }
  int rc = sqlite3_open_v2(path, &ch->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  if (rc != SQLITE_OK) {
    snprintf(err, errcap, "%s: %s", path, ch->db ? sqlite3_errmsg(ch->db) : sqlite3_errstr(rc));
    chain_close(ch);
    return NULL;
  }
  sqlite3_busy_timeout(ch->db, CHAIN_BUSY_MS);
  sqlite3_commit_hook(ch->db, chain_on_commit, ch);
  if (chain_check_file(ch, err, errcap) != 0 || chain_prepare(ch, err, errcap) != 0 ||
      chain_load_tip(ch, err, errcap) != 0) {
    chain_close(ch);
    return NULL;
  }
  return ch;
}

long long chain_height(const struct chain *ch) { return ch->height; }
const char *chain_tip_hash(const struct chain *ch) { return ch->tip; }

void chain_get_stats(const struct chain *ch, struct chain_stats *out) { *out = ch->stats; }

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

void chain_store_iface(struct chain *ch, struct bt2c_blockchain_store *out) {
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

int chain_get_validator_set(struct chain *ch, long long *epoch, struct buf *out) {
  int rc = sqlite3_step(ch->vs_get);
  if (rc == SQLITE_ROW) {
    *epoch = sqlite3_column_int64(ch->vs_get, 0);
    const void *t = sqlite3_column_text(ch->vs_get, 1);
    buf_append(out, t, (size_t)sqlite3_column_bytes(ch->vs_get, 1));
  }
  sqlite3_reset(ch->vs_get);
  return rc == SQLITE_ROW ? 0 : -1;
}

int chain_put_validator_set(struct chain *ch, long long epoch, const char *json, size_t len) {
  sqlite3_bind_int64(ch->vs_put, 1, epoch);
  sqlite3_bind_text(ch->vs_put, 2, json, (int)len, SQLITE_STATIC);
  return step_done(ch->vs_put);
}
