/* ltest_wire: spec bindings for the envelope codec, the JSON reader and the
 * node identity. */
#include <string.h>

#include <lauxlib.h>

#include "buf.h"
#include "envelope.h"
#include "handshake.h"
#include "identity.h"
#include "json.h"
#include "ltest.h"

static void check_id(lua_State *L, int idx, const char *field, size_t want, uint8_t *out) {
  size_t len;
  const char *s = lua_tolstring(L, idx, &len);
  if (s == NULL || len != want) luaL_error(L, "%s must be %d raw bytes", field, (int)want);
  memcpy(out, s, want);
}

/* env_encode{type=, flags=, hops=, origin=raw20, id=raw32 (default: computed),
 *            path={raw20...}, target=raw20, payload=string} -> bytes */
static int l_env_encode(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  struct envelope e;
  memset(&e, 0, sizeof e);
  lua_getfield(L, 1, "type");
  e.type = (uint8_t)(lua_isstring(L, -1) && !lua_isnumber(L, -1)
                         ? env_type_from_name(lua_tostring(L, -1))
                         : luaL_checkinteger(L, -1));
  lua_getfield(L, 1, "flags");
  e.flags = (uint8_t)luaL_optinteger(L, -1, 0);
  lua_getfield(L, 1, "hops");
  e.hops = (uint8_t)luaL_optinteger(L, -1, 0);
  lua_getfield(L, 1, "origin");
  if (lua_isnil(L, -1)) memset(e.origin, 0, sizeof e.origin);
  else check_id(L, -1, "origin", ENV_NODE_ID_LEN, e.origin);
  size_t plen = 0;
  lua_getfield(L, 1, "payload");
  e.payload = (const uint8_t *)luaL_optlstring(L, -1, "", &plen);
  e.payload_len = (uint32_t)plen;
  lua_getfield(L, 1, "id");
  if (lua_isnil(L, -1)) env_message_id(e.type, e.payload, plen, e.id);
  else check_id(L, -1, "id", ENV_MSG_ID_LEN, e.id);
  uint8_t path[ENV_MAX_PATH * ENV_NODE_ID_LEN], target[ENV_NODE_ID_LEN];
  lua_getfield(L, 1, "path");
  if (lua_istable(L, -1)) {
    lua_Integer n = luaL_len(L, -1);
    luaL_argcheck(L, n <= ENV_MAX_PATH, 1, "path too long");
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      check_id(L, -1, "path item", ENV_NODE_ID_LEN, path + (i - 1) * ENV_NODE_ID_LEN);
      lua_pop(L, 1);
    }
    e.path_len = (uint8_t)n;
    e.path = path;
  }
  lua_getfield(L, 1, "target");
  if (!lua_isnil(L, -1)) {
    check_id(L, -1, "target", ENV_NODE_ID_LEN, target);
    e.target = target;
  }
  size_t n = env_wire_len(e.path_len, e.target != NULL, plen);
  luaL_Buffer b;
  uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, n);
  size_t w = env_encode(out, &e);
  luaL_pushresultsize(&b, w);
  return 1;
}

static void push_envelope(lua_State *L, const struct envelope *e) {
  lua_createtable(L, 0, 10);
  lua_pushinteger(L, e->version);
  lua_setfield(L, -2, "version");
  lua_pushinteger(L, e->type);
  lua_setfield(L, -2, "type");
  lua_pushstring(L, env_type_name(e->type));
  lua_setfield(L, -2, "type_name");
  lua_pushinteger(L, e->flags);
  lua_setfield(L, -2, "flags");
  lua_pushinteger(L, e->hops);
  lua_setfield(L, -2, "hops");
  lua_pushlstring(L, (const char *)e->origin, ENV_NODE_ID_LEN);
  lua_setfield(L, -2, "origin");
  lua_pushlstring(L, (const char *)e->id, ENV_MSG_ID_LEN);
  lua_setfield(L, -2, "id");
  lua_createtable(L, e->path_len, 0);
  for (int i = 0; i < e->path_len; i++) {
    lua_pushlstring(L, (const char *)e->path + i * ENV_NODE_ID_LEN, ENV_NODE_ID_LEN);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "path");
  if (e->target) {
    lua_pushlstring(L, (const char *)e->target, ENV_NODE_ID_LEN);
    lua_setfield(L, -2, "target");
  }
  lua_pushlstring(L, (const char *)e->payload, e->payload_len);
  lua_setfield(L, -2, "payload");
}

static int collect(const struct envelope *e, void *ud) {
  lua_State *L = ud;
  push_envelope(L, e);
  lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
  return 0;
}

/* env_decode_batch(bytes) -> {envelope...} | nil, why, {decoded before} */
static int l_env_decode_batch(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *why = NULL;
  lua_newtable(L);
  int n = env_batch_each((const uint8_t *)s, len, collect, L, &why);
  if (n < 0) {
    lua_pushnil(L);
    lua_pushstring(L, why);
    lua_rotate(L, -3, 2); /* nil, why, table */
    return 3;
  }
  return 1;
}

static int l_env_message_id(lua_State *L) {
  int type = (int)luaL_checkinteger(L, 1);
  size_t len;
  const char *p = luaL_checklstring(L, 2, &len);
  uint8_t id[ENV_MSG_ID_LEN];
  env_message_id((uint8_t)type, p, len, id);
  lua_pushlstring(L, (const char *)id, sizeof id);
  return 1;
}

static int l_env_type_name(lua_State *L) {
  lua_pushstring(L, env_type_name((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* json_parse(text) -> value (null as the light userdata bt2c.null) | nil, err */
static void push_json(lua_State *L, const struct json_value *v) {
  luaL_checkstack(L, 4, "json nesting");
  switch (v->type) {
    case JSON_NULL: lua_pushlightuserdata(L, NULL); break;
    case JSON_BOOL: lua_pushboolean(L, v->b); break;
    case JSON_NUMBER: lua_pushnumber(L, v->num); break;
    case JSON_STRING: lua_pushlstring(L, v->str, v->len); break;
    case JSON_ARRAY:
      lua_createtable(L, (int)v->len, 0);
      for (size_t i = 0; i < v->len; i++) {
        push_json(L, v->items[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
      }
      break;
    case JSON_OBJECT:
      lua_createtable(L, 0, (int)v->len);
      for (size_t i = 0; i < v->len; i++) {
        lua_pushlstring(L, v->members[i].key, v->members[i].key_len);
        push_json(L, v->members[i].value);
        lua_rawset(L, -3);
      }
      break;
  }
}

static int l_json_parse(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  struct json_doc doc;
  char err[128];
  if (json_parse(s, len, &doc, err, sizeof err) != 0) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  push_json(L, doc.root);
  json_free(&doc);
  return 1;
}

static int l_json_string(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  struct buf b = {0};
  json_write_string(&b, s, len);
  lua_pushlstring(L, b.data, b.len);
  buf_free(&b);
  return 1;
}

/* identity_new() -> {id_hex=, pub=raw32, sign=function(msg) -> raw64} */
static int l_identity_sign(lua_State *L) {
  struct identity *me = lua_touserdata(L, lua_upvalueindex(1));
  size_t len;
  const char *m = luaL_checklstring(L, 1, &len);
  uint8_t sig[ID_SIG_LEN];
  if (identity_sign(me, m, len, sig) != 0) return luaL_error(L, "sign failed");
  lua_pushlstring(L, (const char *)sig, sizeof sig);
  return 1;
}

static int l_identity_gc(lua_State *L) {
  identity_free(lua_touserdata(L, 1));
  return 0;
}

static void push_identity_table(lua_State *L, int ud) {
  struct identity *me = lua_touserdata(L, ud);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, me->id_hex);
  lua_setfield(L, -2, "id_hex");
  lua_pushlstring(L, (const char *)me->pub, ID_PUBKEY_LEN);
  lua_setfield(L, -2, "pub");
  lua_pushlstring(L, (const char *)me->id, ENV_NODE_ID_LEN);
  lua_setfield(L, -2, "id");
  lua_pushvalue(L, ud);
  lua_pushcclosure(L, l_identity_sign, 1);
  lua_setfield(L, -2, "sign");
}

static int new_identity_ud(lua_State *L) {
  lua_newuserdatauv(L, sizeof(struct identity), 0);
  if (luaL_newmetatable(L, "bt2c.test.identity")) {
    lua_pushcfunction(L, l_identity_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return lua_gettop(L);
}

static int l_identity_new(lua_State *L) {
  int ud = new_identity_ud(L);
  if (identity_generate(lua_touserdata(L, ud)) != 0) return luaL_error(L, "keygen failed");
  push_identity_table(L, ud);
  return 1;
}

/* identity_load(dir) -> table | nil, err */
static int l_identity_load(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  int ud = new_identity_ud(L);
  char err[512];
  if (identity_load_or_create(lua_touserdata(L, ud), dir, err, sizeof err) != 0) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  push_identity_table(L, ud);
  return 1;
}

static int l_identity_verify(lua_State *L) {
  size_t pl, ml, sl;
  const char *pub = luaL_checklstring(L, 1, &pl);
  const char *msg = luaL_checklstring(L, 2, &ml);
  const char *sig = luaL_checklstring(L, 3, &sl);
  luaL_argcheck(L, pl == ID_PUBKEY_LEN, 1, "public key must be 32 bytes");
  lua_pushboolean(L, sl == ID_SIG_LEN && identity_verify((const uint8_t *)pub, msg, ml,
                                                         (const uint8_t *)sig));
  return 1;
}

static int l_identity_id_of(lua_State *L) {
  size_t pl;
  const char *pub = luaL_checklstring(L, 1, &pl);
  luaL_argcheck(L, pl == ID_PUBKEY_LEN, 1, "public key must be 32 bytes");
  uint8_t id[ENV_NODE_ID_LEN];
  identity_id_of((const uint8_t *)pub, id);
  char hex[ENV_NODE_ID_LEN * 2 + 1];
  hex_encode(id, sizeof id, hex);
  lua_pushstring(L, hex);
  return 1;
}

/* hs_transcript(signer_is_dialer, network_id, dialer_id, listener_id,
 *               dialer_nonce, listener_nonce) -> bytes (ids and nonces raw) */
static int l_hs_transcript(lua_State *L) {
  uint8_t did[ENV_NODE_ID_LEN], lid[ENV_NODE_ID_LEN], dn[HS_NONCE_LEN], ln[HS_NONCE_LEN];
  check_id(L, 3, "dialer id", sizeof did, did);
  check_id(L, 4, "listener id", sizeof lid, lid);
  check_id(L, 5, "dialer nonce", sizeof dn, dn);
  check_id(L, 6, "listener nonce", sizeof ln, ln);
  uint8_t out[HS_TRANSCRIPT_MAX];
  size_t n = hs_transcript(out, lua_toboolean(L, 1), luaL_checkstring(L, 2), did, lid, dn, ln);
  lua_pushlstring(L, (const char *)out, n);
  return 1;
}

/* json_object_keys(text, {key...}) -> bits of the keys found (escaped: bit
 * 30), or -1 */
static int l_json_object_keys(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  luaL_checktype(L, 2, LUA_TTABLE);
  const char *keys[JSON_KEYS_MAX];
  int n = (int)luaL_len(L, 2);
  if (n > JSON_KEYS_MAX) return luaL_error(L, "at most %d keys", JSON_KEYS_MAX);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 2, i + 1);
    keys[i] = luaL_checkstring(L, -1); /* the table keeps it alive */
    lua_pop(L, 1);
  }
  lua_pushinteger(L, json_object_keys(s, len, keys, n));
  return 1;
}

void ltest_wire(lua_State *L) {
  static const luaL_Reg fns[] = {{"env_encode", l_env_encode},
                                 {"env_decode_batch", l_env_decode_batch},
                                 {"env_message_id", l_env_message_id},
                                 {"env_type_name", l_env_type_name},
                                 {"json_parse", l_json_parse},
                                 {"json_string", l_json_string},
                                 {"json_object_keys", l_json_object_keys},
                                 {"identity_new", l_identity_new},
                                 {"identity_load", l_identity_load},
                                 {"identity_verify", l_identity_verify},
                                 {"identity_id_of", l_identity_id_of},
                                 {"hs_transcript", l_hs_transcript},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  lua_pushinteger(L, ENV_HEADER_LEN);
  lua_setfield(L, -2, "ENV_HEADER_LEN");
}
