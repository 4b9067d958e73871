/* consensus: see consensus.h. Signing bytes are text lines (7.4) so that
 * any language reproduces them with string formatting alone. */
#include "consensus.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "chain_store.h"
#include "conf.h"
#include "log.h"

static const char *const verdict_names[] = {"ok",          "unsigned",      "malformed",
                                            "bad_key",     "bad_signature", "not_validator",
                                            "no_quorum",   "stale"};

const char *consensus_verdict_name(enum consensus_verdict v) {
  return (unsigned)v < sizeof verdict_names / sizeof verdict_names[0] ? verdict_names[v] : "?";
}

static enum consensus_verdict bad(enum consensus_verdict v, char *err, size_t errcap,
                                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static enum consensus_verdict bad(enum consensus_verdict v, char *err, size_t errcap,
                                  const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errcap, fmt, ap);
  va_end(ap);
  return v;
}

/* ---- signing bytes ------------------------------------------------------------ */

void consensus_vote_bytes(struct buf *out, const char *network_id, long long height,
                          long long round, const char *block_hash, const char *vote) {
  buf_appendf(out, "bt2c/consensus_vote/v1\n%s\n%lld\n%lld\n%s\n%s\n", network_id, height, round,
              block_hash, vote);
}

void consensus_proposal_bytes(struct buf *out, const char *network_id, long long height,
                              long long round, const char *block_hash) {
  buf_appendf(out, "bt2c/consensus_proposal/v1\n%s\n%lld\n%lld\n%s\n", network_id, height, round,
              block_hash);
}

void consensus_set_bytes(struct buf *out, const char *network_id, long long epoch,
                         const struct bt2c_validator *v, int n) {
  buf_appendf(out, "bt2c/validator_set/v1\n%s\n%lld\n", network_id, epoch);
  for (int i = 0; i < n; i++) {
    char pub[65];
    hex_encode(v[i].public_key, 32, pub);
    buf_appendf(out, "%s %s %lld\n", v[i].node_id, pub, v[i].power);
  }
}

/* ---- field helpers -------------------------------------------------------------- */

static bool get_hex(const struct json_value *v, const char *key, uint8_t *out, size_t len) {
  const struct json_value *s = json_get_string(v, key);
  return s && hex_decode(s->str, s->len, out, len) == 0;
}

static bool get_id(const struct json_value *v, const char *key, char out[BT2C_ID_HEX + 1]) {
  uint8_t raw[ENV_NODE_ID_LEN];
  if (!get_hex(v, key, raw, sizeof raw)) return false;
  hex_encode(raw, sizeof raw, out);
  return true;
}

/* A vote kind: 1..32 of [a-z0-9_], so it cannot break a line of the
 * signing bytes. */
static bool vote_kind(const struct json_value *s) {
  if (s == NULL || s->len == 0 || s->len > BT2C_VOTE_MAX) return false;
  for (size_t i = 0; i < s->len; i++) {
    char c = s->str[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

/* The signer part shared by votes and proposals: `idkey` names the id. */
static enum consensus_verdict check_signer(const struct json_value *v, const char *idkey,
                                           const struct buf *bytes,
                                           const struct bt2c_validator_manager *vm,
                                           char id[BT2C_ID_HEX + 1], char *err, size_t errcap) {
  uint8_t pub[ID_PUBKEY_LEN], sig[ID_SIG_LEN], derived[ENV_NODE_ID_LEN];
  if (!get_id(v, idkey, id))
    return bad(CV_MALFORMED, err, errcap, "%s must be 40 hex characters", idkey);
  if (!get_hex(v, "publicKey", pub, sizeof pub))
    return bad(CV_MALFORMED, err, errcap, "publicKey must be 64 hex characters");
  if (!get_hex(v, "signature", sig, sizeof sig))
    return bad(CV_MALFORMED, err, errcap, "signature must be 128 hex characters");
  identity_id_of(pub, derived);
  char dhex[BT2C_ID_HEX + 1];
  hex_encode(derived, sizeof derived, dhex);
  if (strcmp(dhex, id) != 0)
    return bad(CV_BAD_KEY, err, errcap, "%s %s is not the node id of publicKey (%s)", idkey, id,
               dhex);
  if (!identity_verify(pub, bytes->data, bytes->len, sig))
    return bad(CV_BAD_SIGNATURE, err, errcap, "signature of %s does not verify", id);
  if (vm == NULL || vm->is_validator == NULL || !vm->is_validator(vm->ctx, id))
    return bad(CV_NOT_VALIDATOR, err, errcap, "%s is not in the current validator set", id);
  return CV_OK;
}

static bool signed_at_all(const struct json_value *v, const char *idkey) {
  return json_get(v, idkey) || json_get(v, "publicKey") || json_get(v, "signature");
}

/* ---- votes -------------------------------------------------------------------- */

int consensus_sign_vote(struct buf *out, const struct identity *me, const char *network_id,
                        long long height, long long round, const char *block_hash,
                        const char *vote, char *err, size_t errcap) {
  uint8_t raw[32];
  if (block_hash[0] && hex_decode(block_hash, strlen(block_hash), raw, sizeof raw) != 0) {
    snprintf(err, errcap, "blockHash must be 64 hex characters, or \"\" for a nil vote");
    return -1;
  }
  char hash[BT2C_HASH_HEX + 1] = "";
  if (block_hash[0]) hex_encode(raw, sizeof raw, hash);
  struct json_value kind = {.type = JSON_STRING, .str = vote, .len = strlen(vote)};
  if (!vote_kind(&kind)) {
    snprintf(err, errcap, "vote must be 1..32 characters of a-z, 0-9 and _ (\"prevote\", ...)");
    return -1;
  }
  if (height < 0 || round < 0) {
    snprintf(err, errcap, "height and round must be integers >= 0");
    return -1;
  }
  struct buf bytes = {0};
  consensus_vote_bytes(&bytes, network_id, height, round, hash, vote);
  uint8_t sig[ID_SIG_LEN];
  char pub[65], sh[ID_SIG_LEN * 2 + 1];
  identity_sign(me, bytes.data, bytes.len, sig);
  buf_free(&bytes);
  hex_encode(me->pub, ID_PUBKEY_LEN, pub);
  hex_encode(sig, sizeof sig, sh);
  buf_appendf(out,
              "{\"blockHash\":\"%s\",\"height\":%lld,\"publicKey\":\"%s\",\"round\":%lld,"
              "\"signature\":\"%s\",\"validator\":\"%s\",\"vote\":\"%s\"}",
              hash, height, pub, round, sh, me->id_hex, vote);
  return 0;
}

enum consensus_verdict consensus_check_vote(const struct json_value *v, const char *network_id,
                                            const struct bt2c_validator_manager *vm,
                                            struct bt2c_vote *out, char *err, size_t errcap) {
  memset(out, 0, sizeof *out);
  if (v == NULL || v->type != JSON_OBJECT)
    return bad(CV_MALFORMED, err, errcap, "a vote is a JSON object");
  if (!signed_at_all(v, "validator"))
    return bad(CV_UNSIGNED, err, errcap, "no validator, publicKey or signature");
  if (!json_get_int(v, "height", 0, (long long)CHAIN_MAX_INT, &out->height))
    return bad(CV_MALFORMED, err, errcap, "height must be an integer >= 0");
  if (!json_get_int(v, "round", 0, (long long)CHAIN_MAX_INT, &out->round))
    return bad(CV_MALFORMED, err, errcap, "round must be an integer >= 0");
  const struct json_value *bh = json_get_string(v, "blockHash");
  uint8_t raw[32];
  if (bh == NULL || (bh->len && hex_decode(bh->str, bh->len, raw, sizeof raw) != 0))
    return bad(CV_MALFORMED, err, errcap, "blockHash must be 64 hex characters or \"\"");
  if (bh->len) hex_encode(raw, sizeof raw, out->block_hash);
  const struct json_value *kind = json_get_string(v, "vote");
  if (!vote_kind(kind)) return bad(CV_MALFORMED, err, errcap, "vote must be 1..32 of [a-z0-9_]");
  memcpy(out->vote, kind->str, kind->len);
  struct buf bytes = {0};
  consensus_vote_bytes(&bytes, network_id, out->height, out->round, out->block_hash, out->vote);
  enum consensus_verdict r = check_signer(v, "validator", &bytes, vm, out->validator, err, errcap);
  buf_free(&bytes);
  return r;
}

/* ---- proposals ------------------------------------------------------------------ */

int consensus_sign_proposal(struct buf *out, const struct identity *me, const char *network_id,
                            long long height, long long round, const struct bt2c_block *b) {
  struct buf bytes = {0};
  consensus_proposal_bytes(&bytes, network_id, height, round, b->hash);
  uint8_t sig[ID_SIG_LEN];
  char pub[65], sh[ID_SIG_LEN * 2 + 1];
  int rc = identity_sign(me, bytes.data, bytes.len, sig);
  buf_free(&bytes);
  if (rc != 0) return -1;
  hex_encode(me->pub, ID_PUBKEY_LEN, pub);
  hex_encode(sig, sizeof sig, sh);
  buf_append(out, "{\"block\":", 9);
  buf_append(out, b->json, b->json_len);
  buf_appendf(out, ",\"height\":%lld,\"proposer\":\"%s\",\"publicKey\":\"%s\",\"round\":%lld,"
                   "\"signature\":\"%s\"}",
              height, me->id_hex, pub, round, sh);
  return 0;
}

enum consensus_verdict consensus_check_proposal(const struct json_value *v, const char *network_id,
                                                const struct bt2c_validator_manager *vm,
                                                size_t max_block, struct bt2c_proposal *out,
                                                struct bt2c_block *blk, char *err, size_t errcap) {
  memset(out, 0, sizeof *out);
  memset(blk, 0, sizeof *blk);
  if (v == NULL || v->type != JSON_OBJECT)
    return bad(CV_MALFORMED, err, errcap, "a proposal is a JSON object");
  if (!signed_at_all(v, "proposer"))
    return bad(CV_UNSIGNED, err, errcap, "no proposer, publicKey or signature");
  if (!json_get_int(v, "height", 0, (long long)CHAIN_MAX_INT, &out->height))
    return bad(CV_MALFORMED, err, errcap, "height must be an integer >= 0");
  if (!json_get_int(v, "round", 0, (long long)CHAIN_MAX_INT, &out->round))
    return bad(CV_MALFORMED, err, errcap, "round must be an integer >= 0");
  char why[256];
  if (chain_block_check(json_get(v, "block"), max_block, blk, why, sizeof why) != 0)
    return bad(CV_MALFORMED, err, errcap, "%s", why);
  enum consensus_verdict r = CV_OK;
  if (blk->height != out->height)
    r = bad(CV_MALFORMED, err, errcap, "block height %lld is not the proposal's height %lld",
            blk->height, out->height);
  if (r == CV_OK) {
    struct buf bytes = {0};
    consensus_proposal_bytes(&bytes, network_id, out->height, out->round, blk->hash);
    r = check_signer(v, "proposer", &bytes, vm, out->proposer, err, errcap);
    buf_free(&bytes);
  }
  if (r != CV_OK) {
    chain_block_free(blk);
    return r;
  }
  out->block = blk;
  return CV_OK;
}

/* ---- validator sets ----------------------------------------------------------------- */

void consensus_write_set(struct buf *out, long long epoch, const struct bt2c_validator *v, int n) {
  buf_appendf(out, "{\"epoch\":%lld,\"validators\":[", epoch);
  for (int i = 0; i < n; i++) {
    buf_appendf(out, "%s{\"nodeId\":\"%s\",\"power\":%lld", i ? "," : "", v[i].node_id, v[i].power);
    if (v[i].has_key) {
      char pub[65];
      hex_encode(v[i].public_key, 32, pub);
      buf_appendf(out, ",\"publicKey\":\"%s\"", pub);
    }
    buf_append(out, "}", 1);
  }
  buf_append(out, "]}", 2);
}

int consensus_parse_set(const struct json_value *v, long long *epoch, struct bt2c_validator **out,
                        int *n, char *err, size_t errcap) {
  *out = NULL;
  *n = 0;
  if (v == NULL || v->type != JSON_OBJECT) {
    snprintf(err, errcap, "a validator set is a JSON object");
    return -1;
  }
  if (!json_get_int(v, "epoch", 0, (long long)CHAIN_MAX_INT, epoch)) {
    snprintf(err, errcap, "epoch must be an integer >= 0");
    return -1;
  }
  const struct json_value *list = json_get(v, "validators");
  if (list == NULL || list->type != JSON_ARRAY || list->len == 0 ||
      list->len > CONSENSUS_MAX_VALIDATORS) {
    snprintf(err, errcap, "validators must be an array of 1..%d entries", CONSENSUS_MAX_VALIDATORS);
    return -1;
  }
  struct bt2c_validator *set = calloc(list->len, sizeof *set);
  if (set == NULL) abort();
  for (size_t i = 0; i < list->len; i++) {
    const struct json_value *e = list->items[i];
    struct bt2c_validator *x = &set[i];
    uint8_t id[ENV_NODE_ID_LEN];
    if (!get_id(e, "nodeId", x->node_id) || !get_hex(e, "publicKey", x->public_key, 32)) {
      snprintf(err, errcap, "validators[%zu]: nodeId (40 hex) and publicKey (64 hex) are required",
               i + 1);
      free(set);
      return -1;
    }
    x->has_key = true;
    identity_id_of(x->public_key, id);
    char dhex[BT2C_ID_HEX + 1];
    hex_encode(id, sizeof id, dhex);
    if (strcmp(dhex, x->node_id) != 0) {
      snprintf(err, errcap, "validators[%zu]: nodeId %s is not the id of its publicKey (%s)", i + 1,
               x->node_id, dhex);
      free(set);
      return -1;
    }
    x->power = 1;
    if (json_get(e, "power") && !json_get_int(e, "power", 1, (long long)CHAIN_MAX_INT, &x->power)) {
      snprintf(err, errcap, "validators[%zu]: power must be an integer >= 1", i + 1);
      free(set);
      return -1;
    }
    if (i > 0 && strcmp(set[i - 1].node_id, x->node_id) >= 0) {
      snprintf(err, errcap, "validators must be in ascending nodeId order without duplicates "
                            "(entry %zu)", i + 1);
      free(set);
      return -1;
    }
  }
  *out = set;
  *n = (int)list->len;
  return 0;
}

int consensus_sign_set(struct buf *out, const struct identity *me, const char *network_id,
                       long long epoch, const struct bt2c_validator *v, int n) {
  struct buf bytes = {0};
  consensus_set_bytes(&bytes, network_id, epoch, v, n);
  uint8_t sig[ID_SIG_LEN];
  int rc = identity_sign(me, bytes.data, bytes.len, sig);
  buf_free(&bytes);
  if (rc != 0) return -1;
  char pub[65], sh[ID_SIG_LEN * 2 + 1];
  hex_encode(me->pub, ID_PUBKEY_LEN, pub);
  hex_encode(sig, sizeof sig, sh);
  buf_appendf(out, "{\"publicKey\":\"%s\",\"signature\":\"%s\"}", pub, sh);
  return 0;
}

enum consensus_verdict consensus_check_set(const struct json_value *v, const char *network_id,
                                           const struct bt2c_validator_manager *vm,
                                           long long *epoch, struct bt2c_validator **out, int *n,
                                           int *signers, char *err, size_t errcap) {
  *signers = 0;
  if (v && v->type == JSON_OBJECT && !json_get(v, "signatures"))
    return bad(CV_UNSIGNED, err, errcap, "no signatures");
  if (consensus_parse_set(v, epoch, out, n, err, errcap) != 0) return CV_MALFORMED;
  enum consensus_verdict r = CV_OK;
  long long cur_epoch = 0;
  int cur_n = vm && vm->current ? vm->current(vm->ctx, NULL, 0, &cur_epoch) : 0;
  const struct json_value *sigs = json_get(v, "signatures");
  if (sigs == NULL || sigs->type != JSON_ARRAY || sigs->len > 2 * CONSENSUS_MAX_VALIDATORS)
    r = bad(CV_MALFORMED, err, errcap, "signatures must be an array of at most %d entries",
            2 * CONSENSUS_MAX_VALIDATORS);
  else if (*epoch <= cur_epoch)
    r = bad(CV_STALE, err, errcap, "epoch %lld is not above the current epoch %lld", *epoch,
            cur_epoch);
  else if (cur_n == 0)
    r = bad(CV_NO_QUORUM, err, errcap, "there is no current validator set to authorise a new one");
  if (r != CV_OK) goto done;

  struct buf bytes = {0};
  consensus_set_bytes(&bytes, network_id, *epoch, *out, *n);
  char (*seen)[BT2C_ID_HEX + 1] = calloc(sigs->len ? sigs->len : 1, sizeof *seen);
  if (seen == NULL) abort();
  int k = 0;
  for (size_t i = 0; i < sigs->len && 3 * k <= 2 * cur_n; i++) {
    const struct json_value *s = sigs->items[i];
    uint8_t pub[ID_PUBKEY_LEN], sig[ID_SIG_LEN], id[ENV_NODE_ID_LEN];
    if (!get_hex(s, "publicKey", pub, sizeof pub) || !get_hex(s, "signature", sig, sizeof sig)) {
      r = bad(CV_MALFORMED, err, errcap, "signatures[%zu]: publicKey and signature are required",
              i + 1);
      break;
    }
    identity_id_of(pub, id);
    char idh[BT2C_ID_HEX + 1];
    hex_encode(id, sizeof id, idh);
    bool dup = false;
    for (int j = 0; j < k && !dup; j++) dup = strcmp(seen[j], idh) == 0;
    if (dup || !vm->is_validator(vm->ctx, idh)) continue; /* outsiders do not count */
    if (!identity_verify(pub, bytes.data, bytes.len, sig)) {
      r = bad(CV_BAD_SIGNATURE, err, errcap, "signature of validator %s does not verify", idh);
      break;
    }
    memcpy(seen[k++], idh, sizeof seen[0]);
  }
  free(seen);
  buf_free(&bytes);
  *signers = k;
  if (r == CV_OK && 3 * k <= 2 * cur_n)
    r = bad(CV_NO_QUORUM, err, errcap,
            "signed by %d of the %d current validators; more than 2/3 are required", k, cur_n);
done:
  if (r != CV_OK) {
    free(*out);
    *out = NULL;
    *n = 0;
  }
  return r;
}

/* ---- the built-in ValidatorManager ------------------------------------------------ */

static bool vs_is_validator(void *ctx, const char *node_id) {
  const struct consensus_vset *s = ctx;
  for (int i = 0; i < s->n; i++)
    if (strcmp(s->v[i].node_id, node_id) == 0) return true;
  return false;
}

static int vs_current(void *ctx, struct bt2c_validator *out, int cap, long long *epoch) {
  const struct consensus_vset *s = ctx;
  for (int i = 0; i < s->n && i < cap; i++) out[i] = s->v[i];
  if (epoch) *epoch = s->epoch;
  return s->n;
}

static int vs_adopt(void *ctx, long long epoch, const struct bt2c_validator *v, int n) {
  return consensus_vset_replace(ctx, epoch, v, n, "network");
}

int consensus_vset_replace(struct consensus_vset *s, long long epoch,
                           const struct bt2c_validator *v, int n, const char *source) {
  struct bt2c_validator *copy = calloc(n ? (size_t)n : 1, sizeof *copy);
  if (copy == NULL) abort();
  if (n) memcpy(copy, v, (size_t)n * sizeof *copy);
  free(s->v);
  s->v = copy;
  s->n = n;
  s->epoch = epoch;
  snprintf(s->source, sizeof s->source, "%s", source);
  if (s->store && strcmp(source, "network") == 0) {
    struct buf b = {0};
    consensus_write_set(&b, epoch, v, n);
    int rc = chainstore_put_validator_set(s->store, epoch, b.data, b.len);
    buf_free(&b);
    if (rc != 0) log_at(LV_WARN, "validator_set_not_saved", "epoch=%lld", epoch);
  }
  return 0;
}

int consensus_vset_init(struct consensus_vset *s, const struct conf *c, struct chain *store) {
  memset(s, 0, sizeof *s);
  s->store = store;
  struct buf b = {0};
  long long epoch = 0;
  if (store && chainstore_get_validator_set(store, &epoch, &b) == 0) {
    struct json_doc doc;
    char err[160];
    struct bt2c_validator *v = NULL;
    int n = 0;
    if (json_parse(b.data, b.len, &doc, err, sizeof err) == 0) {
      if (consensus_parse_set(doc.root, &epoch, &v, &n, err, sizeof err) == 0) {
        consensus_vset_replace(s, epoch, v, n, "network");
        free(v);
        log_at(LV_INFO, "validator_set_loaded", "epoch=%lld validators=%d source=%s", epoch, n,
               "chain.db (the configuration's validators are the epoch-0 set)");
      }
      json_free(&doc);
    }
    buf_free(&b);
    if (s->v) return 0;
  }
  buf_free(&b);
  struct bt2c_validator *v = calloc(c->n_validators ? c->n_validators : 1, sizeof *v);
  if (v == NULL) abort();
  for (size_t i = 0; i < c->n_validators; i++) {
    snprintf(v[i].node_id, sizeof v[i].node_id, "%s", c->validators[i]);
    v[i].power = 1;
  }
  s->v = v;
  s->n = (int)c->n_validators;
  s->epoch = 0;
  snprintf(s->source, sizeof s->source, "config");
  return 0;
}

void consensus_vset_free(struct consensus_vset *s) {
  free(s->v);
  memset(s, 0, sizeof *s);
}

void consensus_vset_iface(struct consensus_vset *s, struct bt2c_validator_manager *out) {
  memset(out, 0, sizeof *out);
  out->ctx = s;
  out->is_validator = vs_is_validator;
  out->current = vs_current;
  out->adopt = vs_adopt;
}
