/* ltest_ws: spec bindings for the client side of RFC 6455: the frames it
 * sends (wsframe.c), and (wsclient.c) the opening request, the check of the
 * server's response and the frame parser, each fed by a table of chunks so
 * that specs choose where reads split. */
#include <string.h>

#include <lauxlib.h>

#include "lfield.h"
#include "ltest.h"
#include "wsclient.h"
#include "wsframe.h"

/* wsc_request(host, path, subprotocol [, cap]) -> request, key | nil, why */
static int l_wsc_request(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  const char *path = luaL_checkstring(L, 2);
  const char *sub = luaL_checkstring(L, 3);
  lua_Integer cap = luaL_optinteger(L, 4, 2048);
  luaL_argcheck(L, cap >= 0 && cap <= 2048, 4, "cap must be 0..2048");
  struct wsc_upgrade u;
  char out[2048];
  int n = wsc_request(&u, host, path, sub, out, (size_t)cap);
  if (n < 0) {
    luaL_pushfail(L);
    lua_pushstring(L, "wsc_request failed");
    return 2;
  }
  lua_pushlstring(L, out, (size_t)n);
  lua_pushstring(L, u.key);
  return 2;
}

/* [-0, +0, v] The chunk list at idx: its length, each item checked a string. */
static lua_Integer check_chunks(lua_State *L, int idx) {
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_Integer n = luaL_len(L, idx);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_rawgeti(L, idx, i) != LUA_TSTRING) luaL_error(L, "chunk %d is not a string", (int)i);
    lua_pop(L, 1);
  }
  return n;
}

/* wsc_response_check(key, {chunk...}, subprotocol)
 *   -> head length, index of the chunk that ended it, bytes of that chunk used
 *   | 0 if the head is still incomplete after every chunk | nil, why
 * Chunks after the one that completes the head are not fed. */
static int l_wsc_response_check(lua_State *L) {
  size_t klen;
  const char *key = luaL_checklstring(L, 1, &klen);
  luaL_argcheck(L, klen <= WSC_KEY_LEN, 1, "a key is at most 24 characters");
  lua_Integer n = check_chunks(L, 2);
  const char *sub = luaL_checkstring(L, 3);
  struct wsc_upgrade u;
  memcpy(u.key, key, klen);
  u.key[klen] = '\0';
  u.len = 0;
  size_t before = 0;
  for (lua_Integer i = 1; i <= n; i++) {
    size_t len;
    lua_rawgeti(L, 2, i);
    const char *s = lua_tolstring(L, -1, &len); /* the table keeps it alive */
    lua_pop(L, 1);
    const char *why = NULL;
    long r = wsc_response(&u, (const uint8_t *)s, len, sub, &why);
    if (r < 0) {
      luaL_pushfail(L);
      lua_pushstring(L, why);
      return 2;
    }
    if (r > 0) {
      lua_pushinteger(L, (lua_Integer)(before + (size_t)r));
      lua_pushinteger(L, i);
      lua_pushinteger(L, r);
      return 3;
    }
    before += len;
  }
  lua_pushinteger(L, 0);
  return 1;
}

struct parse_ctx {
  lua_State *L;
  int events;              /* stack index of the event list */
  lua_Integer count, stop; /* stop after `stop` events (0: never) */
  const uint8_t *in;       /* the chunk being fed */
  size_t len;
  lua_Integer chunk;
};

static int add_event(struct parse_ctx *c) {
  lua_rawseti(c->L, c->events, ++c->count);
  return c->stop > 0 && c->count >= c->stop;
}

static int on_data(void *ud, const uint8_t *p, size_t n, bool first, bool binary,
                   uint64_t frame_left, bool last) {
  struct parse_ctx *c = ud;
  lua_State *L = c->L;
  lua_createtable(L, 0, 7);
  lfield_str(L, "kind", "data");
  lua_pushlstring(L, (const char *)p, n);
  lua_setfield(L, -2, "bytes");
  lfield_bool(L, "first", first);
  lfield_bool(L, "binary", binary);
  lfield_int(L, "frame_left", (lua_Integer)frame_left);
  lfield_bool(L, "last", last);
  /* Bulk, no copy: a piece must point into the chunk being fed. */
  bool inside = p >= c->in && n <= c->len && p - c->in <= (ptrdiff_t)(c->len - n);
  lfield_int(L, "chunk", inside ? c->chunk : 0);
  return add_event(c);
}

static int on_control(void *ud, unsigned opcode, const uint8_t *p, size_t n) {
  struct parse_ctx *c = ud;
  lua_State *L = c->L;
  lua_createtable(L, 0, 3);
  lfield_str(L, "kind", "control");
  lfield_int(L, "opcode", opcode);
  lua_pushlstring(L, (const char *)p, n);
  lua_setfield(L, -2, "bytes");
  return add_event(c);
}

/* wsc_parse({chunk...} [, stop_after]) -> {event...}, result
 * Feeds the chunks in order to one parser. Events:
 *   {kind="data", bytes=, first=, binary=, frame_left=, last=, chunk=}
 *     (chunk: index of the chunk the piece points into, 0 if it does not)
 *   {kind="control", opcode=, bytes=}
 *   {kind="error", why=}
 * result: 0 when every chunk was used, 1 if stopped after stop_after
 * events, -1 after a protocol error. */
static int l_wsc_parse(lua_State *L) {
  lua_Integer n = check_chunks(L, 1);
  lua_Integer stop = luaL_optinteger(L, 2, 0);
  lua_newtable(L);
  struct parse_ctx c = {L, lua_gettop(L), 0, stop, NULL, 0, 0};
  static const struct wsc_handlers h = {on_data, on_control};
  struct wsc_parser ps;
  wsc_parser_init(&ps);
  int r = 0;
  for (lua_Integer i = 1; i <= n && r == 0; i++) {
    lua_rawgeti(L, 1, i);
    c.in = (const uint8_t *)lua_tolstring(L, -1, &c.len); /* the table keeps it alive */
    lua_pop(L, 1);
    c.chunk = i;
    const char *why = NULL;
    r = wsc_parse(&ps, c.in, c.len, &h, &c, &why);
    if (r < 0) {
      lua_createtable(L, 0, 2);
      lfield_str(L, "kind", "error");
      lfield_str(L, "why", why);
      lua_rawseti(L, c.events, ++c.count);
    }
  }
  lua_pushinteger(L, r);
  return 2;
}

/* ws_frame(payload, key4 or nil) -> header .. (masked) payload, as sent */
static int l_ws_frame(lua_State *L) {
  size_t n, klen = 0;
  const char *payload = luaL_checklstring(L, 1, &n);
  const char *key = luaL_optlstring(L, 2, NULL, &klen);
  if (key && klen != 4) return luaL_error(L, "the key is 4 bytes");
  luaL_Buffer b;
  uint8_t *out = (uint8_t *)luaL_buffinitsize(L, &b, WSFRAME_MAX_HEADER + n);
  uint8_t *p = out + WSFRAME_MAX_HEADER;
  memcpy(p, payload, n);
  if (key) wsframe_mask(p, n, (const uint8_t *)key);
  size_t h = wsframe_header(p, n, WSFRAME_OP_BINARY, (const uint8_t *)key);
  memmove(out, p - h, h + n);
  luaL_pushresultsize(&b, h + n);
  return 1;
}

void ltest_ws(lua_State *L) {
  static const luaL_Reg fns[] = {{"wsc_request", l_wsc_request},
                                 {"wsc_response_check", l_wsc_response_check},
                                 {"wsc_parse", l_wsc_parse},
                                 {"ws_frame", l_ws_frame},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
  lua_pushinteger(L, WSC_RESPONSE_MAX);
  lua_setfield(L, -2, "WSC_RESPONSE_MAX");
}
