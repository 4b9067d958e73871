/* lchain: see lchain.h. Values cross as JSON: Lua tables are encoded with
 * cjson and checked by C; chain objects come back decoded. Hooks set from
 * Lua run in the trusted state, each call under a 1 s budget, their errors
 * logged (event=hook_error). */
#include "lchain.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "bt2c.h"
#include "chain.h"
#include "consensus.h"
#include "lconsole.h"
#include "log.h"
#include "netmgr.h"
#include "node.h"
#include "lfield.h"

#define HOOK_BUDGET_MS 1000

struct lchain {
  struct node *n;
  lua_State *L;
  int encode_ref, decode_ref;
  int engine_ref, monitor_ref; /* the Lua tables given, or LUA_NOREF */
  struct log_limit error_limit;
};

static struct lchain *lc_of(lua_State *L) { return lua_touserdata(L, lua_upvalueindex(1)); }
static struct bt2c *integ(lua_State *L) { return lc_of(L)->n->integ; }

/* [-0, +1] Pushes the decoded JSON text (the text itself if it does not
 * decode, which our own JSON always does). */
static void push_json(struct lchain *c, lua_State *L, const char *text, size_t len) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->decode_ref);
  lua_pushlstring(L, text, len);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    lua_pushlstring(L, text, len);
  }
}

/* [-0, +1, e] Encodes the value at idx as JSON; returns the text (on the stack). */
static const char *encode(struct lchain *c, lua_State *L, int idx, size_t *len) {
  idx = lua_absindex(L, idx);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->encode_ref);
  lua_pushvalue(L, idx);
  lua_call(L, 1, 1);
  return lua_tolstring(L, -1, len);
}

static int fail(lua_State *L, const char *err) {
  luaL_pushfail(L);
  lua_pushstring(L, err);
  return 2;
}

/* An integer field of the table at idx (def when absent, -1 = required). */
static long long int_field(lua_State *L, int idx, const char *k, long long def) {
  lua_getfield(L, idx, k);
  if (lua_isnil(L, -1) && def >= 0) {
    lua_pop(L, 1);
    return def;
  }
  int ok;
  lua_Integer v = lua_tointegerx(L, -1, &ok);
  if (!ok || v < 0) luaL_error(L, "%s must be an integer >= 0", k);
  lua_pop(L, 1);
  return (long long)v;
}

/* ---- hooks into Lua -------------------------------------------------------------- */

static bool has_hook(struct lchain *c, int ref, const char *fn) {
  if (ref == LUA_NOREF) return false;
  lua_rawgeti(c->L, LUA_REGISTRYINDEX, ref);
  bool yes = lua_getfield(c->L, -1, fn) == LUA_TFUNCTION;
  lua_pop(c->L, 2);
  return yes;
}

/* [-nargs, +0] Calls table[fn](args) under the budget. */
static void call_hook(struct lchain *c, int ref, const char *fn, int nargs) {
  lua_State *L = c->L;
  int base = lua_gettop(L) - nargs;
  lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
  if (lua_getfield(L, -1, fn) != LUA_TFUNCTION) {
    lua_settop(L, base);
    return;
  }
  lua_remove(L, -2);
  lua_insert(L, base + 1);
  if (lconsole_pcall(L, nargs, 0, HOOK_BUDGET_MS) != LUA_OK)
    log_limited(&c->error_limit, LV_WARN, "hook_error", "hook=%s err=%s", fn, lua_tostring(L, -1));
  lua_settop(L, base);
}

static void push_from(lua_State *L, const char *from) {
  if (from) lua_pushstring(L, from);
  else lua_pushnil(L);
}

static void e_on_vote(void *ctx, const struct bt2c_vote *v, const char *from) {
  struct lchain *c = ctx;
  if (!has_hook(c, c->engine_ref, "on_vote")) return;
  push_json(c, c->L, v->json, v->json_len);
  push_from(c->L, from);
  call_hook(c, c->engine_ref, "on_vote", 2);
}

static void e_on_proposal(void *ctx, const struct bt2c_proposal *p, const char *from) {
  struct lchain *c = ctx;
  if (!has_hook(c, c->engine_ref, "on_proposal")) return;
  push_json(c, c->L, p->json, p->json_len);
  push_from(c->L, from);
  call_hook(c, c->engine_ref, "on_proposal", 2);
}

static void e_on_block(void *ctx, const struct bt2c_block *b, const char *from) {
  struct lchain *c = ctx;
  if (!has_hook(c, c->engine_ref, "on_block")) return;
  push_json(c, c->L, b->json, b->json_len);
  push_from(c->L, from);
  call_hook(c, c->engine_ref, "on_block", 2);
}

static void m_metrics(void *ctx, const struct bt2c_metric *m, int n) {
  struct lchain *c = ctx;
  if (!has_hook(c, c->monitor_ref, "on_metrics")) return;
  lua_createtable(c->L, 0, n);
  for (int i = 0; i < n; i++) lfield_num(c->L, m[i].name, m[i].value);
  call_hook(c, c->monitor_ref, "on_metrics", 1);
}

static void m_event(void *ctx, const char *name, const char *json) {
  struct lchain *c = ctx;
  if (!has_hook(c, c->monitor_ref, "on_event")) return;
  lua_pushstring(c->L, name);
  push_json(c, c->L, json, strlen(json));
  call_hook(c, c->monitor_ref, "on_event", 2);
}

/* Keeps t (a table of functions, or nil) in *ref; true if it is a table. */
static bool take_table(lua_State *L, int *ref, const char *const *allowed, const char *names) {
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 1)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
      bool found = false;
      for (int i = 0; k && lua_isfunction(L, -1) && allowed[i] && !found; i++)
        found = strcmp(k, allowed[i]) == 0;
      if (!found) luaL_error(L, "expected a table of functions %s (got %s)", names, k ? k : "?");
      lua_pop(L, 1);
    }
  }
  if (*ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
  if (lua_isnoneornil(L, 1)) return false;
  lua_pushvalue(L, 1);
  *ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return true;
}

/* integration.set_consensus_engine({on_proposal =, on_vote =, on_block =} | nil) */
static int l_set_engine(lua_State *L) {
  struct lchain *c = lc_of(L);
  static const char *const allowed[] = {"on_proposal", "on_vote", "on_block", NULL};
  if (take_table(L, &c->engine_ref, allowed, "{on_proposal, on_vote, on_block}")) {
    struct bt2c_consensus_engine e = {
        .ctx = c, .on_block = e_on_block, .on_proposal = e_on_proposal, .on_vote = e_on_vote};
    bt2c_set_consensus_engine(integ(L), &e);
  } else {
    bt2c_set_consensus_engine(integ(L), NULL);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* integration.set_monitoring_service({on_metrics =, on_event =} | nil) */
static int l_set_monitoring(lua_State *L) {
  struct lchain *c = lc_of(L);
  static const char *const allowed[] = {"on_metrics", "on_event", NULL};
  if (take_table(L, &c->monitor_ref, allowed, "{on_metrics, on_event}")) {
    struct bt2c_monitoring_service m = {.ctx = c, .metrics = m_metrics, .event = m_event};
    bt2c_set_monitoring_service(integ(L), &m);
  } else {
    bt2c_set_monitoring_service(integ(L), NULL);
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int l_metrics(lua_State *L) {
  struct bt2c_metric m[64];
  int n = bt2c_metrics(integ(L), m, 64);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) lfield_num(L, m[i].name, m[i].value);
  return 1;
}

/* ---- blockchain -------------------------------------------------------------------- */

static int l_get_height(lua_State *L) {
  const struct bt2c_blockchain_store *st = bt2c_store(integ(L));
  lua_pushinteger(L, st->height(st->ctx));
  return 1;
}

static int l_get_tip(lua_State *L) {
  const struct bt2c_blockchain_store *st = bt2c_store(integ(L));
  char hash[BT2C_HASH_HEX + 1];
  st->tip(st->ctx, hash);
  lua_createtable(L, 0, 2);
  lfield_int(L, "height", st->height(st->ctx));
  lua_pushstring(L, hash);
  lua_setfield(L, -2, "hash");
  return 1;
}

/* A hash argument in lowercase, or a Lua error. */
static void hash_arg(lua_State *L, int idx, char out[BT2C_HASH_HEX + 1]) {
  size_t len;
  const char *s = luaL_checklstring(L, idx, &len);
  uint8_t raw[32];
  luaL_argcheck(L, hex_decode(s, len, raw, sizeof raw) == 0, idx, "a hash is 64 hex characters");
  hex_encode(raw, sizeof raw, out);
}

static int l_get_block(lua_State *L) {
  struct lchain *c = lc_of(L);
  const struct bt2c_blockchain_store *st = bt2c_store(integ(L));
  struct buf b = {0};
  int rc;
  if (lua_type(L, 1) == LUA_TNUMBER) {
    rc = st->get_block(st->ctx, (long long)luaL_checkinteger(L, 1), NULL, &b);
  } else {
    char h[BT2C_HASH_HEX + 1];
    hash_arg(L, 1, h);
    rc = st->get_block(st->ctx, -1, h, &b);
  }
  if (rc != 0) {
    buf_free(&b);
    return 0;
  }
  push_json(c, L, b.data, b.len);
  buf_free(&b);
  return 1;
}

/* blockchain.append([data [, max_transactions]]) -> block, or nil, err */
static int l_append(lua_State *L) {
  struct lchain *c = lc_of(L);
  size_t dl = 0;
  const char *data = NULL;
  int max_tx = (int)luaL_optinteger(L, 2, CHAIN_MAX_TXS);
  if (!lua_isnoneornil(L, 1)) data = encode(c, L, 1, &dl);
  struct buf out = {0};
  char err[256];
  if (bt2c_append_block(integ(L), data, dl, max_tx, &out, err, sizeof err) != 0) {
    buf_free(&out);
    return fail(L, err);
  }
  push_json(c, L, out.data, out.len);
  buf_free(&out);
  return 1;
}

/* blockchain.add_transaction(tx) -> hash, true (new) | hash, false (known) | nil, err */
static int l_add_tx(lua_State *L) {
  struct lchain *c = lc_of(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t len;
  const char *json = encode(c, L, 1, &len);
  char hash[BT2C_HASH_HEX + 1], err[256];
  int rc = bt2c_add_transaction(integ(L), json, len, hash, err, sizeof err);
  if (rc < 0) return fail(L, err);
  lua_pushstring(L, hash);
  lua_pushboolean(L, rc == 0);
  return 2;
}

static int l_get_tx(lua_State *L) {
  struct lchain *c = lc_of(L);
  const struct bt2c_blockchain_store *st = bt2c_store(integ(L));
  char h[BT2C_HASH_HEX + 1];
  hash_arg(L, 1, h);
  struct buf b = {0};
  int rc = st->get_transaction(st->ctx, h, &b);
  if (rc == 0) push_json(c, L, b.data, b.len);
  buf_free(&b);
  return rc == 0 ? 1 : 0;
}

struct mempool_list {
  struct lchain *c;
  lua_State *L;
  int i;
};

static int push_pending(void *ud, const struct bt2c_transaction *t) {
  struct mempool_list *m = ud;
  push_json(m->c, m->L, t->json, t->json_len);
  lua_rawseti(m->L, -2, ++m->i);
  return 0;
}

static int l_get_mempool(lua_State *L) {
  const struct bt2c_blockchain_store *st = bt2c_store(integ(L));
  lua_Integer max = luaL_optinteger(L, 1, 100);
  luaL_argcheck(L, max >= 0 && max <= 100000, 1, "max must be in 0..100000");
  lua_newtable(L);
  struct mempool_list m = {lc_of(L), L, 0};
  if (st->pending) st->pending(st->ctx, (int)max, push_pending, &m);
  return 1;
}

/* blockchain.request_transactions({hash, ...}) -> peers asked */
static int l_request_txs(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 1);
  luaL_argcheck(L, n >= 1 && n <= 500, 1, "1..500 hashes");
  char(*h)[BT2C_HASH_HEX + 1] = lua_newuserdatauv(L, (size_t)n * sizeof *h, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 1, i);
    hash_arg(L, -1, h[i - 1]);
    lua_pop(L, 1);
  }
  lua_pushinteger(L, bt2c_request_transactions(integ(L), h, (int)n));
  return 1;
}

static int l_sync_status(lua_State *L) {
  struct bt2c_sync_status s;
  bt2c_sync_status(integ(L), &s);
  lua_createtable(L, 0, 16);
  lfield_int(L, "height", s.height);
  lfield_int(L, "target", s.target);
  lua_pushboolean(L, s.syncing);
  lua_setfield(L, -2, "syncing");
  lfield_int(L, "peers", s.peers);
  lfield_int(L, "requests_in_flight", s.requests_in_flight);
  lfield_int(L, "buffered", s.buffered);
  lfield_int(L, "blocks_received", (long long)s.blocks_received);
  lfield_int(L, "blocks_applied", (long long)s.blocks_applied);
  lfield_int(L, "requests_sent", (long long)s.requests_sent);
  lfield_int(L, "bad_responses", (long long)s.bad_responses);
  lfield_int(L, "timeouts", (long long)s.timeouts);
  lfield_int(L, "empty_responses", (long long)s.empty_responses);
  lfield_int(L, "served_requests", (long long)s.served_requests);
  lfield_int(L, "served_blocks", (long long)s.served_blocks);
  if (s.started_at > 0) lfield_num(L, "started_at", s.started_at);
  if (s.completed_at > 0) lfield_num(L, "completed_at", s.completed_at);
  return 1;
}

/* TEST ONLY: blockchain._corrupt_responses(on) makes this node answer block
 * requests with blocks that do not match their hashes. */
static int l_corrupt(lua_State *L) {
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  bt2c_test_corrupt_responses(integ(L), lua_toboolean(L, 1));
  lua_pushboolean(L, 1);
  return 1;
}

/* TEST ONLY: blockchain._silent_responses(on) leaves block requests
 * unanswered (a slow peer). */
static int l_silent(lua_State *L) {
  luaL_checktype(L, 1, LUA_TBOOLEAN);
  bt2c_test_silent_responses(integ(L), lua_toboolean(L, 1));
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- consensus ----------------------------------------------------------------------- */

/* Reads {height, round, blockHash, vote} at idx. */
static void vote_args(lua_State *L, int idx, long long *height, long long *round, const char **hash,
                      const char **vote) {
  luaL_checktype(L, idx, LUA_TTABLE);
  *height = int_field(L, idx, "height", -1);
  *round = int_field(L, idx, "round", 0);
  lua_getfield(L, idx, "blockHash");
  *hash = lua_isnil(L, -1) ? "" : lua_tostring(L, -1);
  lua_getfield(L, idx, "vote");
  *vote = lua_tostring(L, -1); /* both stay on the stack: the strings live */
  if (*hash == NULL) luaL_error(L, "blockHash must be 64 hex characters, or \"\" for a nil vote");
  if (*vote == NULL) luaL_error(L, "vote must be a string such as \"prevote\" or \"precommit\"");
}

/* consensus.send_vote({height, round, blockHash, vote}) -> peers, vote | nil, err */
static int l_send_vote(lua_State *L) {
  long long height, round;
  const char *hash, *vote;
  vote_args(L, 1, &height, &round, &hash, &vote);
  struct buf out = {0};
  char err[256];
  int n = bt2c_send_vote(integ(L), height, round, hash, vote, &out, err, sizeof err);
  if (n < 0) {
    buf_free(&out);
    return fail(L, err);
  }
  lua_pushinteger(L, n);
  push_json(lc_of(L), L, out.data, out.len);
  buf_free(&out);
  return 2;
}

/* consensus.sign_vote({...}) -> the signed payload, not sent (no
 * membership check: for engines that send themselves, and for tests). */
static int l_sign_vote(lua_State *L) {
  struct lchain *c = lc_of(L);
  long long height, round;
  const char *hash, *vote;
  vote_args(L, 1, &height, &round, &hash, &vote);
  struct buf out = {0};
  char err[256];
  if (consensus_sign_vote(&out, &c->n->net.me, c->n->conf.networkId, height, round, hash, vote, err,
                          sizeof err) != 0) {
    buf_free(&out);
    return fail(L, err);
  }
  push_json(c, L, out.data, out.len);
  buf_free(&out);
  return 1;
}

/* consensus.send_proposal({height, round, block}) -> peers, proposal | nil, err */
static int l_send_proposal(lua_State *L) {
  struct lchain *c = lc_of(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  long long height = int_field(L, 1, "height", -1), round = int_field(L, 1, "round", 0);
  lua_getfield(L, 1, "block");
  size_t bl;
  const char *block =
      lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &bl) : encode(c, L, -1, &bl);
  /* cjson writes an empty Lua table as {}: a block's transactions are a list */
  const char *empty = strstr(block, "\"transactions\":{}");
  if (empty) {
    luaL_Buffer lb;
    luaL_buffinit(L, &lb);
    luaL_addlstring(&lb, block, (size_t)(empty - block));
    luaL_addstring(&lb, "\"transactions\":[]");
    luaL_addstring(&lb, empty + 17);
    luaL_pushresult(&lb);
    block = lua_tolstring(L, -1, &bl);
  }
  struct buf out = {0};
  char err[300];
  int n = bt2c_send_proposal(integ(L), height, round, block, bl, &out, err, sizeof err);
  if (n < 0) {
    buf_free(&out);
    return fail(L, err);
  }
  lua_pushinteger(L, n);
  push_json(c, L, out.data, out.len);
  buf_free(&out);
  return 2;
}

/* ---- validators ------------------------------------------------------------------------ */

static int l_vals_get(lua_State *L) {
  const struct bt2c_validator_manager *vm = bt2c_validators(integ(L));
  long long epoch = 0;
  int n = vm->current ? vm->current(vm->ctx, NULL, 0, &epoch) : 0;
  struct bt2c_validator *v = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *v, 0);
  if (n) n = vm->current(vm->ctx, v, n, &epoch);
  lua_createtable(L, 0, 3);
  lfield_int(L, "epoch", epoch);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, v[i].node_id);
    lua_setfield(L, -2, "nodeId");
    if (v[i].has_key) {
      char pub[65];
      hex_encode(v[i].public_key, 32, pub);
      lua_pushstring(L, pub);
      lua_setfield(L, -2, "publicKey");
    }
    lfield_int(L, "power", v[i].power);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "validators");
  return 1;
}

static int l_vals_is(lua_State *L) {
  const struct bt2c_validator_manager *vm = bt2c_validators(integ(L));
  const char *id = luaL_checkstring(L, 1);
  lua_pushboolean(L, vm->is_validator && vm->is_validator(vm->ctx, id));
  return 1;
}

/* validators.set({id | {nodeId, publicKey, power}, ...} [, epoch]) */
static int l_vals_set(lua_State *L) {
  lua_settop(L, 2); /* the userdata below is then at 3, kept while we fill it */
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 1);
  luaL_argcheck(L, n >= 0 && n <= CONSENSUS_MAX_VALIDATORS, 1, "at most 1000 validators");
  const struct bt2c_validator_manager *vm = bt2c_validators(integ(L));
  long long epoch = 0;
  if (vm->current) vm->current(vm->ctx, NULL, 0, &epoch);
  epoch = (long long)luaL_optinteger(L, 2, epoch);
  struct bt2c_validator *v = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *v, 0);
  memset(v, 0, (size_t)(n ? n : 1) * sizeof *v);
  for (lua_Integer i = 1; i <= n; i++) {
    struct bt2c_validator *x = &v[i - 1];
    uint8_t id[ENV_NODE_ID_LEN];
    x->power = 1;
    lua_geti(L, 1, i);
    const char *s = NULL;
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_getfield(L, -1, "publicKey");
      const char *pk = lua_tostring(L, -1);
      if (pk) {
        if (hex_decode(pk, strlen(pk), x->public_key, 32) != 0)
          return luaL_error(L, "validators[%d].publicKey must be 64 hex characters", (int)i);
        x->has_key = true;
      }
      lua_pop(L, 1);
      lua_getfield(L, -1, "power");
      if (!lua_isnil(L, -1)) x->power = (long long)luaL_checkinteger(L, -1);
      lua_pop(L, 1);
      lua_getfield(L, -1, "nodeId");
      s = lua_tostring(L, -1);
    } else {
      s = lua_tostring(L, -1);
    }
    if (s == NULL || hex_decode(s, strlen(s), id, sizeof id) != 0)
      return luaL_error(L, "validators[%d]: a node id is 40 hex characters", (int)i);
    hex_encode(id, sizeof id, x->node_id);
    if (x->has_key) {
      uint8_t derived[ENV_NODE_ID_LEN];
      identity_id_of(x->public_key, derived);
      if (memcmp(derived, id, sizeof id) != 0)
        return luaL_error(L, "validators[%d]: nodeId is not the id of publicKey", (int)i);
    }
    lua_settop(L, 3);
  }
  if (bt2c_replace_validators(integ(L), v, (int)n, epoch) != 0)
    return fail(L, "another ValidatorManager is in use; change the set there");
  lua_pushboolean(L, 1);
  return 1;
}

/* validators.sign({epoch, validators}) -> {publicKey, signature} */
static int l_vals_sign(lua_State *L) {
  struct lchain *c = lc_of(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t len;
  const char *json = encode(c, L, 1, &len);
  struct buf out = {0};
  char err[256];
  if (bt2c_sign_validator_set(integ(L), json, len, &out, err, sizeof err) != 0) {
    buf_free(&out);
    return fail(L, err);
  }
  push_json(c, L, out.data, out.len);
  buf_free(&out);
  return 1;
}

/* validators.submit({epoch, validators, signatures}) -> true | nil, err */
static int l_vals_submit(lua_State *L) {
  struct lchain *c = lc_of(L);
  luaL_checktype(L, 1, LUA_TTABLE);
  size_t len;
  const char *json = encode(c, L, 1, &len);
  char err[300];
  if (bt2c_submit_validator_set(integ(L), json, len, err, sizeof err) != 0) return fail(L, err);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- opening ------------------------------------------------------------------------------- */

static int lc_gc(lua_State *L) {
  (void)L;
  return 0;
}

static void new_table(lua_State *L, int ud, const char *name, const luaL_Reg *fns) {
  lua_newtable(L);
  lua_pushvalue(L, ud);
  luaL_setfuncs(L, fns, 1);
  lua_setglobal(L, name);
}

void lchain_open(lua_State *L, struct node *n) {
  struct lchain *c = lua_newuserdatauv(L, sizeof *c, 0);
  memset(c, 0, sizeof *c);
  int ud = lua_gettop(L);
  c->n = n;
  c->L = L;
  c->engine_ref = c->monitor_ref = LUA_NOREF;
  lua_newtable(L);
  lua_pushcfunction(L, lc_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, ud);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "cjson");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "decode");
  c->decode_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, -1, "encode");
  c->encode_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);

  static const luaL_Reg chain_fns[] = {{"get_height", l_get_height},
                                       {"get_tip", l_get_tip},
                                       {"get_block", l_get_block},
                                       {"append", l_append},
                                       {"add_transaction", l_add_tx},
                                       {"get_transaction", l_get_tx},
                                       {"get_mempool", l_get_mempool},
                                       {"request_transactions", l_request_txs},
                                       {"sync_status", l_sync_status},
                                       {"_corrupt_responses", l_corrupt},
                                       {"_silent_responses", l_silent},
                                       {NULL, NULL}};
  static const luaL_Reg cons_fns[] = {{"send_vote", l_send_vote},
                                      {"sign_vote", l_sign_vote},
                                      {"send_proposal", l_send_proposal},
                                      {NULL, NULL}};
  static const luaL_Reg val_fns[] = {{"get", l_vals_get},       {"is_validator", l_vals_is},
                                     {"set", l_vals_set},       {"sign", l_vals_sign},
                                     {"submit", l_vals_submit}, {NULL, NULL}};
  static const luaL_Reg int_fns[] = {{"set_consensus_engine", l_set_engine},
                                     {"set_monitoring_service", l_set_monitoring},
                                     {"metrics", l_metrics},
                                     {NULL, NULL}};
  new_table(L, ud, "blockchain", chain_fns);
  new_table(L, ud, "consensus", cons_fns);
  new_table(L, ud, "validators", val_fns);
  new_table(L, ud, "integration", int_fns);
  luaL_ref(L, LUA_REGISTRYINDEX); /* anchors the userdata with the state */
}
