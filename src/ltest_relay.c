/* ltest_relay: spec bindings for the duplicate filter and the relay's choice
 * of targets, the C core of MessageRelay. */
#include <string.h>

#include <lauxlib.h>

#include "envelope.h"
#include "ltest.h"
#include "relay.h"
#include "seen.h"

#define SEEN_MT "bt2c.test.seen"

static struct seen *checkseen(lua_State *L) { return luaL_checkudata(L, 1, SEEN_MT); }

static const uint8_t *id_arg(lua_State *L, int idx) {
  size_t len;
  const char *s = luaL_checklstring(L, idx, &len);
  luaL_argcheck(L, len == SEEN_ID_LEN, idx, "an id is 32 raw bytes");
  return (const uint8_t *)s;
}

/* seen:check(id, now) -> true if a duplicate (else remembered) */
static int seen_check(lua_State *L) {
  struct seen *s = checkseen(L);
  lua_pushboolean(L, seen_check_insert(s, id_arg(L, 2), luaL_checknumber(L, 3), 0, NULL));
  return 1;
}

/* seen:insert(id, now, from) -> the new entry's from tag, or nil if a duplicate */
static int seen_do_insert(lua_State *L) {
  struct seen *s = checkseen(L);
  struct seen_entry *e =
      seen_insert(s, id_arg(L, 2), luaL_checknumber(L, 3), (uint32_t)luaL_checkinteger(L, 4));
  if (e) lua_pushinteger(L, e->from);
  else lua_pushnil(L);
  return 1;
}

static int seen_has(lua_State *L) {
  struct seen *s = checkseen(L);
  lua_pushboolean(L, seen_contains(s, id_arg(L, 2), luaL_checknumber(L, 3)));
  return 1;
}

static int seen_do_sweep(lua_State *L) {
  lua_pushinteger(L, seen_sweep(checkseen(L), luaL_checknumber(L, 2)));
  return 1;
}

static int seen_count(lua_State *L) {
  struct seen *s = checkseen(L);
  lua_pushinteger(L, s->count);
  lua_pushinteger(L, (lua_Integer)s->evicted_early);
  return 2;
}

static int seen_gc(lua_State *L) {
  seen_free(luaL_checkudata(L, 1, SEEN_MT));
  return 0;
}

/* seen_new(capacity, ttl_seconds) */
static int l_seen_new(lua_State *L) {
  struct seen *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  luaL_setmetatable(L, SEEN_MT);
  if (seen_init(s, (uint32_t)luaL_checkinteger(L, 1), luaL_checknumber(L, 2)) != 0)
    return luaL_error(L, "seen_init failed");
  return 1;
}

/* relay_select{mode =, threshold =, trusted =, neutral =, origin = raw20,
 *              path = {raw20...}, candidates = {{id =, score =, validator =, from =}...}}
 * -> list of chosen candidate indices (1-based) */
static int l_relay_select(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  static const char *const modes[] = {"flood", "selective", "validator_only", NULL};
  struct relay_choice how;
  lua_getfield(L, 1, "mode");
  how.mode = (enum relay_mode)luaL_checkoption(L, -1, NULL, modes);
  lua_getfield(L, 1, "threshold");
  how.threshold = luaL_optnumber(L, -1, 50);
  lua_getfield(L, 1, "trusted");
  how.trusted = luaL_optnumber(L, -1, 75);
  lua_getfield(L, 1, "neutral");
  how.neutral = luaL_optnumber(L, -1, 0);
  lua_getfield(L, 1, "fanout");
  how.fanout = (int)luaL_optinteger(L, -1, 3);
  lua_pop(L, 5);
  static uint64_t rng = 42; /* test binding only */
  how.rng = &rng;

  struct envelope e;
  memset(&e, 0, sizeof e);
  uint8_t path[ENV_MAX_PATH * ENV_NODE_ID_LEN];
  lua_getfield(L, 1, "origin");
  size_t len;
  const char *o = luaL_optlstring(L, -1, "", &len);
  if (len == ENV_NODE_ID_LEN) memcpy(e.origin, o, ENV_NODE_ID_LEN);
  lua_pop(L, 1);
  if (lua_getfield(L, 1, "path") == LUA_TTABLE) {
    int n = (int)luaL_len(L, -1);
    luaL_argcheck(L, n <= ENV_MAX_PATH, 1, "path too long");
    for (int i = 0; i < n; i++) {
      lua_rawgeti(L, -1, i + 1);
      const char *p = luaL_checklstring(L, -1, &len);
      luaL_argcheck(L, len == ENV_NODE_ID_LEN, 1, "path ids are 20 raw bytes");
      memcpy(path + (size_t)i * ENV_NODE_ID_LEN, p, ENV_NODE_ID_LEN);
      lua_pop(L, 1);
    }
    e.path_len = e.hops = (uint8_t)n;
    e.path = path;
  }
  lua_pop(L, 1);

  lua_getfield(L, 1, "candidates");
  luaL_checktype(L, -1, LUA_TTABLE);
  int n = (int)luaL_len(L, -1);
  luaL_argcheck(L, n <= 256, 1, "at most 256 candidates");
  struct relay_candidate c[256];
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, -1, i + 1);
    lua_getfield(L, -1, "id");
    const char *id = luaL_checklstring(L, -1, &len);
    luaL_argcheck(L, len == ENV_NODE_ID_LEN, 1, "candidate ids are 20 raw bytes");
    c[i].id = (const uint8_t *)id; /* kept alive by the argument table */
    lua_getfield(L, -2, "score");
    c[i].score = luaL_optnumber(L, -1, 0);
    lua_getfield(L, -3, "validator");
    c[i].validator = lua_toboolean(L, -1);
    lua_getfield(L, -4, "from");
    c[i].from = lua_toboolean(L, -1);
    lua_pop(L, 5);
  }
  int out[256];
  int k = relay_select(c, n, &e, &how, out, 256);
  lua_createtable(L, k, 0);
  for (int i = 0; i < k; i++) {
    lua_pushinteger(L, out[i] + 1);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

void ltest_relay(lua_State *L) {
  static const luaL_Reg methods[] = {{"check", seen_check},
      {"insert", seen_do_insert},
                                     {"contains", seen_has},
                                     {"sweep", seen_do_sweep},
                                     {"count", seen_count},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, SEEN_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, seen_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_seen_new);
  lua_setfield(L, -2, "seen_new");
  lua_pushcfunction(L, l_relay_select);
  lua_setfield(L, -2, "relay_select");
}
