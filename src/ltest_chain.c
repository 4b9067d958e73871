/* ltest_chain: spec bindings for the hash rules and checks of blocks and
 * transactions, the signing bytes and checks of consensus messages, and the
 * built-in chain store (spec/chain_spec.lua). */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "chain.h"
#include "chain_jcs.h"
#include "chain_store.h"
#include "consensus.h"
#include "identity.h"
#include "json.h"
#include "ltest.h"

#define STORE_MT "bt2c.test.chain"

/* Parses JSON text at idx; raises on invalid JSON. */
static void parse_arg(lua_State *L, int idx, struct json_doc *doc) {
  size_t len;
  const char *s = luaL_checklstring(L, idx, &len);
  char err[96];
  if (json_parse(s, len, doc, err, sizeof err) != 0) luaL_error(L, "invalid JSON: %s", err);
}

static int push_fail(lua_State *L, const char *err) {
  luaL_pushfail(L);
  lua_pushstring(L, err);
  return 2;
}

/* chain_canonical(json [, skip]) -> text | nil, err */
static int l_canonical(lua_State *L) {
  struct json_doc doc;
  parse_arg(L, 1, &doc);
  struct buf b = {0};
  char err[128];
  int rc = jcs_canonical(&b, doc.root, luaL_optstring(L, 2, NULL), err, sizeof err);
  json_free(&doc);
  if (rc != 0) {
    buf_free(&b);
    return push_fail(L, err);
  }
  lua_pushlstring(L, b.data, b.len);
  buf_free(&b);
  return 1;
}

static int l_number(lua_State *L) {
  struct buf b = {0};
  jcs_number(&b, luaL_checknumber(L, 1));
  lua_pushlstring(L, b.data, b.len);
  buf_free(&b);
  return 1;
}

static int l_sha256(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  char hex[BT2C_HASH_HEX + 1];
  chain_sha256_hex(s, len, hex);
  lua_pushstring(L, hex);
  return 1;
}

/* chain_tx_check(json) -> canonical, hash | nil, err */
static int l_tx_check(lua_State *L) {
  struct json_doc doc;
  parse_arg(L, 1, &doc);
  struct buf b = {0};
  char hash[BT2C_HASH_HEX + 1], err[256];
  int rc = chain_tx_check(doc.root, &b, hash, err, sizeof err);
  json_free(&doc);
  if (rc != 0) {
    buf_free(&b);
    return push_fail(L, err);
  }
  lua_pushlstring(L, b.data, b.len);
  lua_pushstring(L, hash);
  buf_free(&b);
  return 2;
}

static void push_block(lua_State *L, const struct bt2c_block *b) {
  lua_createtable(L, 0, 7);
  lua_pushstring(L, b->hash);
  lua_setfield(L, -2, "hash");
  lua_pushinteger(L, b->height);
  lua_setfield(L, -2, "height");
  lua_pushstring(L, b->previous_hash);
  lua_setfield(L, -2, "previousHash");
  lua_pushinteger(L, b->timestamp);
  lua_setfield(L, -2, "timestamp");
  lua_pushlstring(L, b->json, b->json_len);
  lua_setfield(L, -2, "json");
  lua_createtable(L, (int)b->n_transactions, 0);
  for (size_t i = 0; i < b->n_transactions; i++) {
    lua_pushstring(L, b->transactions[i].hash);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "tx_hashes");
}

/* chain_block_check(json [, max_bytes]) -> {hash, height, ...} | nil, err */
static int l_block_check(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  size_t max = (size_t)luaL_optinteger(L, 2, 0);
  struct bt2c_block b;
  char err[300];
  if (chain_block_parse(s, len, max, &b, err, sizeof err) != 0) return push_fail(L, err);
  push_block(L, &b);
  chain_block_free(&b);
  return 1;
}

/* Reads a list of transaction JSON texts at idx into checked transactions. */
static struct bt2c_transaction *tx_list(lua_State *L, int idx, struct buf **canon, size_t *n) {
  luaL_checktype(L, idx, LUA_TTABLE);
  *n = (size_t)luaL_len(L, idx);
  struct bt2c_transaction *t = calloc(*n ? *n : 1, sizeof *t);
  *canon = calloc(*n ? *n : 1, sizeof **canon);
  if (t == NULL || *canon == NULL) abort();
  for (size_t i = 0; i < *n; i++) {
    lua_geti(L, idx, (lua_Integer)i + 1);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    struct json_doc doc;
    char err[256];
    if (s == NULL || json_parse(s, len, &doc, err, sizeof err) != 0) {
      snprintf(err, sizeof err, "transaction %zu is not JSON text", i + 1);
    } else {
      int rc = chain_tx_check(doc.root, &(*canon)[i], t[i].hash, err, sizeof err);
      json_free(&doc);
      if (rc == 0) {
        t[i].json = (*canon)[i].data;
        t[i].json_len = (*canon)[i].len;
        lua_pop(L, 1);
        continue;
      }
    }
    for (size_t j = 0; j <= i; j++) buf_free(&(*canon)[j]);
    free(*canon);
    free(t);
    luaL_error(L, "%s", err);
  }
  return t;
}

/* chain_block_make(height, previous_hash, timestamp, {tx json...} [, data json]) -> json, hash */
static int l_block_make(lua_State *L) {
  long long height = (long long)luaL_checkinteger(L, 1);
  const char *prev = luaL_checkstring(L, 2);
  long long ts = (long long)luaL_checkinteger(L, 3);
  struct buf *canon;
  size_t n;
  struct bt2c_transaction *t = tx_list(L, 4, &canon, &n);
  struct buf data = {0};
  const char *dj = luaL_optstring(L, 5, NULL);
  char err[256];
  if (dj) {
    struct json_doc doc;
    if (json_parse(dj, strlen(dj), &doc, err, sizeof err) == 0) {
      jcs_canonical(&data, doc.root, NULL, err, sizeof err);
      json_free(&doc);
    }
  }
  struct bt2c_block b;
  int rc = chain_block_make(height, prev, ts, t, n, dj ? data.data : NULL, data.len, &b, err,
                            sizeof err);
  for (size_t i = 0; i < n; i++) buf_free(&canon[i]);
  free(canon);
  free(t);
  buf_free(&data);
  if (rc != 0) return luaL_error(L, "%s", err);
  lua_pushlstring(L, b.json, b.json_len);
  lua_pushstring(L, b.hash);
  chain_block_free(&b);
  return 2;
}

/* chain_block_hash(height, prev, ts, {tx hashes}, data_hash|nil) -> hash */
static int l_block_hash(lua_State *L) {
  lua_settop(L, 5);
  luaL_checktype(L, 4, LUA_TTABLE);
  size_t n = (size_t)luaL_len(L, 4);
  struct bt2c_transaction *t = lua_newuserdatauv(L, (n ? n : 1) * sizeof *t, 0);
  for (size_t i = 0; i < n; i++) {
    lua_geti(L, 4, (lua_Integer)i + 1);
    snprintf(t[i].hash, sizeof t[i].hash, "%s", luaL_checkstring(L, -1));
    lua_pop(L, 1);
  }
  char out[BT2C_HASH_HEX + 1];
  chain_block_hash((long long)luaL_checkinteger(L, 1), luaL_checkstring(L, 2),
                   (long long)luaL_checkinteger(L, 3), t, n, luaL_optstring(L, 5, NULL), out);
  lua_pushstring(L, out);
  return 1;
}

static int l_genesis(lua_State *L) {
  struct bt2c_block g;
  chain_genesis(&g);
  lua_pushlstring(L, g.json, g.json_len);
  lua_pushstring(L, g.hash);
  chain_block_free(&g);
  return 2;
}

/* ---- consensus ------------------------------------------------------------------- */

/* A validator manager over a Lua list of ids (argument idx) and an epoch. */
struct test_vm {
  char (*ids)[BT2C_ID_HEX + 1];
  int n;
  long long epoch;
};

static bool tvm_is(void *ctx, const char *id) {
  struct test_vm *v = ctx;
  for (int i = 0; i < v->n; i++)
    if (strcmp(v->ids[i], id) == 0) return true;
  return false;
}

static int tvm_current(void *ctx, struct bt2c_validator *out, int cap, long long *epoch) {
  struct test_vm *v = ctx;
  for (int i = 0; i < v->n && i < cap; i++) {
    memset(&out[i], 0, sizeof out[i]);
    snprintf(out[i].node_id, sizeof out[i].node_id, "%s", v->ids[i]);
    out[i].power = 1;
  }
  *epoch = v->epoch;
  return v->n;
}

static void test_vm(lua_State *L, int idx, long long epoch, struct test_vm *tv,
                    struct bt2c_validator_manager *vm) {
  luaL_checktype(L, idx, LUA_TTABLE);
  tv->n = (int)luaL_len(L, idx);
  tv->ids = lua_newuserdatauv(L, (size_t)(tv->n ? tv->n : 1) * sizeof *tv->ids, 0);
  for (int i = 0; i < tv->n; i++) {
    lua_geti(L, idx, i + 1);
    snprintf(tv->ids[i], sizeof tv->ids[i], "%s", luaL_checkstring(L, -1));
    lua_pop(L, 1);
  }
  tv->epoch = epoch;
  memset(vm, 0, sizeof *vm);
  vm->ctx = tv;
  vm->is_validator = tvm_is;
  vm->current = tvm_current;
}

static int l_vote_bytes(lua_State *L) {
  struct buf b = {0};
  consensus_vote_bytes(&b, luaL_checkstring(L, 1), (long long)luaL_checkinteger(L, 2),
                       (long long)luaL_checkinteger(L, 3), luaL_checkstring(L, 4),
                       luaL_checkstring(L, 5));
  lua_pushlstring(L, b.data, b.len);
  buf_free(&b);
  return 1;
}

static int l_proposal_bytes(lua_State *L) {
  struct buf b = {0};
  consensus_proposal_bytes(&b, luaL_checkstring(L, 1), (long long)luaL_checkinteger(L, 2),
                           (long long)luaL_checkinteger(L, 3), luaL_checkstring(L, 4));
  lua_pushlstring(L, b.data, b.len);
  buf_free(&b);
  return 1;
}

/* consensus_check_vote(json, network, {ids}) -> verdict, err, validator */
static int l_check_vote(lua_State *L) {
  struct test_vm tv;
  struct bt2c_validator_manager vm;
  test_vm(L, 3, 0, &tv, &vm);
  struct json_doc doc;
  parse_arg(L, 1, &doc);
  struct bt2c_vote v;
  char err[256] = "";
  enum consensus_verdict r =
      consensus_check_vote(doc.root, luaL_checkstring(L, 2), &vm, &v, err, sizeof err);
  json_free(&doc);
  lua_pushstring(L, consensus_verdict_name(r));
  lua_pushstring(L, err);
  lua_pushstring(L, v.validator);
  return 3;
}

/* consensus_check_proposal(json, network, {ids}) -> verdict, err, proposer */
static int l_check_proposal(lua_State *L) {
  struct test_vm tv;
  struct bt2c_validator_manager vm;
  test_vm(L, 3, 0, &tv, &vm);
  struct json_doc doc;
  parse_arg(L, 1, &doc);
  struct bt2c_proposal p;
  struct bt2c_block b;
  char err[300] = "";
  enum consensus_verdict r = consensus_check_proposal(doc.root, luaL_checkstring(L, 2), &vm,
                                                      1 << 20, &p, &b, err, sizeof err);
  json_free(&doc);
  if (r == CV_OK) chain_block_free(&b);
  lua_pushstring(L, consensus_verdict_name(r));
  lua_pushstring(L, err);
  lua_pushstring(L, p.proposer);
  return 3;
}

/* consensus_check_set(json, network, {current ids}, current_epoch) -> verdict, err, signers */
static int l_check_set(lua_State *L) {
  struct test_vm tv;
  struct bt2c_validator_manager vm;
  test_vm(L, 3, (long long)luaL_checkinteger(L, 4), &tv, &vm);
  struct json_doc doc;
  parse_arg(L, 1, &doc);
  long long epoch;
  struct bt2c_validator *set = NULL;
  int n = 0, signers = 0;
  char err[256] = "";
  enum consensus_verdict r = consensus_check_set(doc.root, luaL_checkstring(L, 2), &vm, &epoch,
                                                 &set, &n, &signers, err, sizeof err);
  json_free(&doc);
  free(set);
  lua_pushstring(L, consensus_verdict_name(r));
  lua_pushstring(L, err);
  lua_pushinteger(L, signers);
  return 3;
}

/* consensus_set_bytes(network, json of {epoch, validators}) -> bytes | nil, err */
static int l_set_bytes(lua_State *L) {
  struct json_doc doc;
  parse_arg(L, 2, &doc);
  long long epoch;
  struct bt2c_validator *v;
  int n;
  char err[256];
  int rc = consensus_parse_set(doc.root, &epoch, &v, &n, err, sizeof err);
  json_free(&doc);
  if (rc != 0) return push_fail(L, err);
  struct buf b = {0};
  consensus_set_bytes(&b, luaL_checkstring(L, 1), epoch, v, n);
  free(v);
  lua_pushlstring(L, b.data, b.len);
  buf_free(&b);
  return 1;
}

/* ---- the store ------------------------------------------------------------------------ */

struct tstore {
  struct chain *ch;
  struct bt2c_blockchain_store s;
};

static struct tstore *checkstore(lua_State *L) {
  struct tstore *t = luaL_checkudata(L, 1, STORE_MT);
  if (t->ch == NULL) luaL_error(L, "chain store is closed");
  return t;
}

static int s_height(lua_State *L) {
  struct tstore *t = checkstore(L);
  lua_pushinteger(L, t->s.height(t->s.ctx));
  char h[BT2C_HASH_HEX + 1];
  t->s.tip(t->s.ctx, h);
  lua_pushstring(L, h);
  return 2;
}

/* store:put(block_json) -> true | nil, err (checks, then the store's linkage) */
static int s_put(lua_State *L) {
  struct tstore *t = checkstore(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  struct bt2c_block b;
  char err[300];
  if (chain_block_parse(s, len, 0, &b, err, sizeof err) != 0) return push_fail(L, err);
  int rc = t->s.put_block(t->s.ctx, &b, err, sizeof err);
  chain_block_free(&b);
  if (rc != 0) return push_fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

static int s_get(lua_State *L) {
  struct tstore *t = checkstore(L);
  struct buf b = {0};
  int rc = lua_type(L, 2) == LUA_TNUMBER
               ? t->s.get_block(t->s.ctx, (long long)luaL_checkinteger(L, 2), NULL, &b)
               : t->s.get_block(t->s.ctx, -1, luaL_checkstring(L, 2), &b);
  if (rc == 0) lua_pushlstring(L, b.data, b.len);
  buf_free(&b);
  return rc == 0 ? 1 : 0;
}

/* store:add_tx(json) -> 0 added | 1 known | nil, err */
static int s_add_tx(lua_State *L) {
  struct tstore *t = checkstore(L);
  struct json_doc doc;
  parse_arg(L, 2, &doc);
  struct buf canon = {0};
  struct bt2c_transaction tx;
  char err[256];
  int rc = chain_tx_check(doc.root, &canon, tx.hash, err, sizeof err);
  json_free(&doc);
  if (rc == 0) {
    tx.json = canon.data;
    tx.json_len = canon.len;
    rc = t->s.put_transaction(t->s.ctx, &tx, err, sizeof err);
  }
  buf_free(&canon);
  if (rc < 0) return push_fail(L, err);
  lua_pushinteger(L, rc);
  return 1;
}

static int s_get_tx(lua_State *L) {
  struct tstore *t = checkstore(L);
  struct buf b = {0};
  int rc = t->s.get_transaction(t->s.ctx, luaL_checkstring(L, 2), &b);
  if (rc == 0) lua_pushlstring(L, b.data, b.len);
  buf_free(&b);
  return rc == 0 ? 1 : 0;
}

static int push_text(void *ud, const struct bt2c_transaction *t) {
  lua_State *L = ud;
  lua_pushlstring(L, t->json, t->json_len);
  lua_rawseti(L, -2, luaL_len(L, -2) + 1);
  return 0;
}

static int s_pending(lua_State *L) {
  struct tstore *t = checkstore(L);
  int max = (int)luaL_optinteger(L, 2, 1000);
  lua_newtable(L);
  t->s.pending(t->s.ctx, max, push_text, L);
  lua_pushinteger(L, t->s.pending_count(t->s.ctx));
  return 2;
}

static int s_close(lua_State *L) {
  struct tstore *t = luaL_checkudata(L, 1, STORE_MT);
  chainstore_close(t->ch);
  t->ch = NULL;
  return 0;
}

/* chain_open(path) -> store | nil, err */
static int l_chain_open(lua_State *L) {
  char err[512];
  struct chain *ch = chainstore_open(luaL_checkstring(L, 1), err, sizeof err);
  if (ch == NULL) return push_fail(L, err);
  struct tstore *t = lua_newuserdatauv(L, sizeof *t, 0);
  t->ch = ch;
  chainstore_iface(ch, &t->s);
  luaL_setmetatable(L, STORE_MT);
  return 1;
}

void ltest_chain(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"height", s_height}, {"put", s_put},         {"get", s_get},     {"add_tx", s_add_tx},
      {"get_tx", s_get_tx}, {"pending", s_pending}, {"close", s_close}, {NULL, NULL}};
  if (luaL_newmetatable(L, STORE_MT)) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, s_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"chain_canonical", l_canonical},
                                 {"chain_number", l_number},
                                 {"chain_sha256", l_sha256},
                                 {"chain_tx_check", l_tx_check},
                                 {"chain_block_check", l_block_check},
                                 {"chain_block_make", l_block_make},
                                 {"chain_block_hash", l_block_hash},
                                 {"chain_genesis", l_genesis},
                                 {"chain_open", l_chain_open},
                                 {"consensus_vote_bytes", l_vote_bytes},
                                 {"consensus_proposal_bytes", l_proposal_bytes},
                                 {"consensus_set_bytes", l_set_bytes},
                                 {"consensus_check_vote", l_check_vote},
                                 {"consensus_check_proposal", l_check_proposal},
                                 {"consensus_check_set", l_check_set},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
