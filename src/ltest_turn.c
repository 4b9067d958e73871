/* ltest_turn: spec bindings for the TURN client's pure part and for
 * candidates (wire form, dial order, the peer store merge).
 *
 *   bt2c.turn_encode{method=, class=, txid=, transport=, lifetime=,
 *                    peer={address, port}, channel=, connectionId=, data=,
 *                    auth={username, realm, nonce, key}} -> bytes
 *   bt2c.turn_classify(bytes[, key]) -> verdict, {code, reason, realm, nonce}
 *   bt2c.turn_parse_url(url) -> {host, port, udp, tcp} | nil, why
 *   bt2c.cand_parse(json_text) -> {{type, address, port, priority, transport}...}, bad
 *                                 | nil, why
 *   bt2c.cand_write(list) -> json_text
 *   bt2c.cand_sort(list, preferredMethod, candidatePreference) -> list
 *   bt2c.cand_dial_urls(list, entry_url, preferredMethod, candidatePreference[, tls])
 *     -> {url...}
 *   bt2c.cand_merge_urls({addrs = {...}, lastConnected =, failures =}, {url...})
 *     -> addrs, changed
 */
#include <string.h>

#include <lauxlib.h>

#include "buf.h"
#include "candidates.h"
#include "json.h"
#include "ltest.h"
#include "peerstore.h"
#include "stun.h"
#include "turn.h"
#include "turn_msg.h"

static const char *opt_field_str(lua_State *L, int t, const char *k, size_t *len) {
  lua_getfield(L, t, k);
  const char *s = lua_isnil(L, -1) ? NULL : luaL_checklstring(L, -1, len);
  lua_pop(L, 1); /* the string stays alive: the table holds it */
  return s;
}

static lua_Integer opt_field_int(lua_State *L, int t, const char *k, lua_Integer def) {
  lua_getfield(L, t, k);
  lua_Integer v = luaL_optinteger(L, -1, def);
  lua_pop(L, 1);
  return v;
}

static int l_turn_encode(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  struct turn_req r;
  memset(&r, 0, sizeof r);
  r.method = (uint16_t)opt_field_int(L, 1, "method", STUN_ALLOCATE);
  size_t n;
  const char *cls = opt_field_str(L, 1, "class", &n);
  r.cls = cls && strcmp(cls, "indication") == 0 ? STUN_INDICATION : STUN_REQUEST;
  r.transport = (uint8_t)opt_field_int(L, 1, "transport", 0);
  lua_getfield(L, 1, "lifetime");
  if (!lua_isnil(L, -1)) {
    r.has_lifetime = true;
    r.lifetime = (uint32_t)luaL_checkinteger(L, -1);
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "connectionId");
  if (!lua_isnil(L, -1)) {
    r.has_conn_id = true;
    r.conn_id = (uint32_t)luaL_checkinteger(L, -1);
  }
  lua_pop(L, 1);
  r.channel = (uint16_t)opt_field_int(L, 1, "channel", 0);
  struct stun_addr peer;
  if (lua_getfield(L, 1, "peer") == LUA_TTABLE) {
    int p = lua_gettop(L);
    const char *ip = opt_field_str(L, p, "address", &n);
    if (ip == NULL || stun_addr_set(&peer, ip, (uint16_t)opt_field_int(L, p, "port", 0)) != 0)
      return luaL_error(L, "peer needs a numeric address and a port");
    r.peer = &peer;
  }
  lua_pop(L, 1);
  r.data = opt_field_str(L, 1, "data", &r.data_len);
  size_t txl = 0;
  const char *txid = opt_field_str(L, 1, "txid", &txl);
  if (txid && txl != STUN_TXID_LEN) return luaL_error(L, "txid must be 12 bytes");
  struct turn_auth au, *ap = NULL;
  if (lua_getfield(L, 1, "auth") == LUA_TTABLE) {
    int a = lua_gettop(L);
    size_t kl = 0;
    au.username = opt_field_str(L, a, "username", &n);
    au.realm = opt_field_str(L, a, "realm", &n);
    au.nonce = (const uint8_t *)opt_field_str(L, a, "nonce", &au.nonce_len);
    au.key = (const uint8_t *)opt_field_str(L, a, "key", &kl);
    if (!au.username || !au.realm || !au.nonce || kl != STUN_LONGTERM_KEY_LEN)
      return luaL_error(L, "auth needs username, realm, nonce and a 16-byte key");
    ap = &au;
  }
  uint8_t buf[TURN_MSG_MAX];
  size_t len = turnmsg_encode(buf, sizeof buf, (const uint8_t *)txid, &r, ap);
  lua_pop(L, 1);
  if (len == 0) return luaL_error(L, "the message does not fit");
  lua_pushlstring(L, (const char *)buf, len);
  return 1;
}

static int l_turn_classify(lua_State *L) {
  size_t len, kl = 0;
  const char *bytes = luaL_checklstring(L, 1, &len);
  const char *key = luaL_optlstring(L, 2, NULL, &kl);
  if (key && kl != STUN_LONGTERM_KEY_LEN) return luaL_error(L, "the key is 16 bytes");
  struct stun_msg m;
  if (stun_parse(&m, bytes, len) != STUN_OK) return luaL_error(L, "not a STUN message");
  struct turn_answer a;
  enum turn_verdict v = turnmsg_classify(&m, (const uint8_t *)key, &a);
  lua_pushstring(L, turnmsg_verdict_name(v));
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, a.code);
  lua_setfield(L, -2, "code");
  lua_pushstring(L, a.reason);
  lua_setfield(L, -2, "reason");
  lua_pushstring(L, a.realm);
  lua_setfield(L, -2, "realm");
  lua_pushlstring(L, (const char *)a.nonce, a.nonce_len);
  lua_setfield(L, -2, "nonce");
  return 2;
}

static int l_turn_parse_url(lua_State *L) {
  char host[256], why[128];
  uint16_t port;
  unsigned mask;
  if (turnmsg_parse_url(luaL_checkstring(L, 1), host, sizeof host, &port, &mask, why, sizeof why)) {
    luaL_pushfail(L);
    lua_pushstring(L, why);
    return 2;
  }
  lua_createtable(L, 0, 4);
  lua_pushstring(L, host);
  lua_setfield(L, -2, "host");
  lua_pushinteger(L, port);
  lua_setfield(L, -2, "port");
  lua_pushboolean(L, mask & 1);
  lua_setfield(L, -2, "udp");
  lua_pushboolean(L, (mask & 2) != 0);
  lua_setfield(L, -2, "tcp");
  return 1;
}

/* [-0, +1, m] */
static void push_cands(lua_State *L, const struct cand *c, int n) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_createtable(L, 0, 5);
    lua_pushstring(L, cand_type_name(c[i].type));
    lua_setfield(L, -2, "type");
    lua_pushstring(L, c[i].ip);
    lua_setfield(L, -2, "address");
    lua_pushinteger(L, c[i].port);
    lua_setfield(L, -2, "port");
    lua_pushinteger(L, c[i].priority);
    lua_setfield(L, -2, "priority");
    lua_pushstring(L, cand_transport_name(c[i].transport));
    lua_setfield(L, -2, "transport");
    lua_rawseti(L, -2, i + 1);
  }
}

/* Reads a Lua list of candidates (checked like the wire form: through the
 * JSON writer and reader is too roundabout here, so field by field). */
static int check_cands(lua_State *L, int idx, struct cand *out, int cap) {
  luaL_checktype(L, idx, LUA_TTABLE);
  int n = (int)luaL_len(L, idx);
  if (n > cap) luaL_error(L, "at most %d candidates", cap);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, idx, i + 1);
    int t = lua_gettop(L);
    size_t len, other;
    memset(&out[i], 0, sizeof out[i]);
    const char *type = opt_field_str(L, t, "type", &other);
    const char *tr = opt_field_str(L, t, "transport", &other);
    const char *ip = opt_field_str(L, t, "address", &len);
    int ty = type ? cand_type_parse(type) : -1;
    if (ty < 0 || ip == NULL || len >= CAND_IP_LEN) luaL_error(L, "candidate %d: bad type or address", i + 1);
    out[i].type = (uint8_t)ty;
    memcpy(out[i].ip, ip, len + 1);
    out[i].port = (uint16_t)opt_field_int(L, t, "port", 0);
    out[i].priority = (uint32_t)opt_field_int(L, t, "priority", 0);
    out[i].transport = tr && strcmp(tr, "udp") == 0 ? CAND_UDP : CAND_TCP;
    lua_pop(L, 1);
  }
  return n;
}

static int l_cand_parse(lua_State *L) {
  size_t len;
  const char *text = luaL_checklstring(L, 1, &len);
  struct json_doc doc;
  char err[96];
  if (json_parse(text, len, &doc, err, sizeof err) != 0) return luaL_error(L, "json: %s", err);
  struct cand c[CAND_MAX];
  int bad, n = cand_parse_json(doc.root, c, CAND_MAX, &bad);
  json_free(&doc);
  if (n < 0) {
    luaL_pushfail(L);
    lua_pushliteral(L, "not an array of at most 32 entries");
    return 2;
  }
  push_cands(L, c, n);
  lua_pushinteger(L, bad);
  return 2;
}

static int l_cand_write(lua_State *L) {
  struct cand c[4 * CAND_MAX];
  int n = check_cands(L, 1, c, 4 * CAND_MAX);
  struct buf b = {0};
  cand_write_json(&b, c, n);
  lua_pushlstring(L, b.data, b.len);
  buf_free(&b);
  return 1;
}

static int l_cand_sort(lua_State *L) {
  struct cand c[4 * CAND_MAX];
  int n = check_cands(L, 1, c, 4 * CAND_MAX);
  struct cand_pref p;
  cand_pref_set(&p, luaL_optstring(L, 2, NULL), luaL_optstring(L, 3, NULL));
  cand_sort(c, n, &p);
  push_cands(L, c, n);
  return 1;
}

static int l_cand_dial_urls(lua_State *L) {
  struct cand c[4 * CAND_MAX];
  int n = check_cands(L, 1, c, 4 * CAND_MAX);
  const char *entry = luaL_optstring(L, 2, NULL);
  struct cand_pref p;
  cand_pref_set(&p, luaL_optstring(L, 3, NULL), luaL_optstring(L, 4, NULL));
  char urls[CAND_MAX_URLS][CAND_URL_LEN];
  int k = cand_dial_urls(c, n, entry, lua_toboolean(L, 5), &p, urls, CAND_MAX_URLS);
  lua_createtable(L, k, 0);
  for (int i = 0; i < k; i++) {
    lua_pushstring(L, urls[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int l_cand_merge_urls(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checktype(L, 2, LUA_TTABLE);
  struct peer_record r;
  memset(&r, 0, sizeof r);
  lua_getfield(L, 1, "addrs");
  int na = lua_istable(L, -1) ? (int)luaL_len(L, -1) : 0;
  for (int i = 0; i < na && i < PEERSTORE_MAX_ADDRS; i++) {
    lua_rawgeti(L, -1, i + 1);
    snprintf(r.addrs[r.n_addrs++], PEERSTORE_ADDR_LEN, "%s", luaL_checkstring(L, -1));
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "lastConnected");
  r.last_connected = luaL_optnumber(L, -1, 0);
  lua_pop(L, 1);
  r.failures = (int)opt_field_int(L, 1, "failures", 0);
  char urls[CAND_MAX_URLS][CAND_URL_LEN];
  int n = (int)luaL_len(L, 2);
  if (n > CAND_MAX_URLS) n = CAND_MAX_URLS;
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 2, i + 1);
    snprintf(urls[i], CAND_URL_LEN, "%s", luaL_checkstring(L, -1));
    lua_pop(L, 1);
  }
  bool changed = cand_merge_urls(&r, urls, n);
  lua_createtable(L, r.n_addrs, 0);
  for (int i = 0; i < r.n_addrs; i++) {
    lua_pushstring(L, r.addrs[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_pushboolean(L, changed);
  return 2;
}

void ltest_turn(lua_State *L) {
  static const luaL_Reg fns[] = {{"turn_encode", l_turn_encode},
                                 {"turn_classify", l_turn_classify},
                                 {"turn_parse_url", l_turn_parse_url},
                                 {"cand_parse", l_cand_parse},
                                 {"cand_write", l_cand_write},
                                 {"cand_sort", l_cand_sort},
                                 {"cand_dial_urls", l_cand_dial_urls},
                                 {"cand_merge_urls", l_cand_merge_urls},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
