/* chain: see chain.h. The canonical form and the hash rules are specified
 * in docs/PROTOCOL.md 7.2; the unit spec (spec/chain_spec.lua) holds the
 * worked examples of that section, so the two cannot drift apart. */
#include "chain.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "chain_jcs.h"
#include "identity.h"

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
  if (jcs_canonical(&content, v, "hash", why, sizeof why) != 0) {
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
  return jcs_value(canon, v, NULL, "hash", quoted, err, errcap);
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
    if (jcs_canonical(&data, d, NULL, why, sizeof why) != 0)
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
