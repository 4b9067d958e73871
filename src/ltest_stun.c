/* ltest_stun: spec bindings for the STUN codec, and plain UDP sockets so
 * functional specs can talk STUN to a node or to coturn.
 *
 *   bt2c.stun_encode{method=, class=, txid=, attrs={...}} -> bytes
 *   bt2c.stun_decode(bytes) -> t | nil, why, status
 *   bt2c.stun_check_integrity(bytes, key[, "sha256"]) -> true | false | nil (absent)
 *   bt2c.stun_longterm_key(user, realm, password) -> 16 bytes
 *   bt2c.stun_crc32(bytes) -> integer
 *   bt2c.stun_frame_len(bytes) -> integer (0: need more, -1: neither)
 *   bt2c.stun_channel_encode(channel, data[, pad]) -> bytes | nil
 *   bt2c.udp_socket([ip[, port]]) -> u; u:sendto(data, ip, port), u:recvfrom(timeout_s)
 *     -> data, ip, port | nil, "timeout"; u:port(); u:close()
 *   bt2c.udp_free_port([count]) -> p: p .. p+count-1 free for UDP and TCP on 127.0.0.1
 *
 * An attribute for stun_encode is {type = number or name, ...} with one of
 * value = bytes, u32 = n, address = ip + port = n (XORed for XOR-* types),
 * code = n + reason = s (ERROR-CODE), types = {n...} (UNKNOWN-ATTRIBUTES),
 * key = bytes (MESSAGE-INTEGRITY[-SHA256]); FINGERPRINT is computed. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lauxlib.h>

#include "ltest.h"
#include "stun.h"
#include "lfield.h"

#define UDP_MT "bt2c.test.udp"
#define MAX_MSG 4096

static int check_type(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    int t = stun_attr_by_name(lua_tostring(L, idx));
    if (t < 0) luaL_error(L, "unknown attribute name '%s'", lua_tostring(L, idx));
    return t;
  }
  lua_Integer t = luaL_checkinteger(L, idx);
  if (t < 0 || t > 0xFFFF) luaL_error(L, "attribute type out of range");
  return (int)t;
}

static int check_class(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    const char *s = lua_tostring(L, idx);
    for (int c = 0; c < 4; c++)
      if (strcmp(s, stun_class_name((enum stun_class)c)) == 0) return c;
    return luaL_error(L, "class must be request, indication, success or error");
  }
  return (int)(luaL_optinteger(L, idx, 0) & 3);
}

/* [-0, +0, e] Encodes the attribute table at the top of the stack. */
static void put_attr(lua_State *L, struct stun_writer *w) {
  int t = lua_gettop(L);
  lua_getfield(L, t, "type");
  uint16_t type = (uint16_t)check_type(L, -1);
  lua_getfield(L, t, "value");
  lua_getfield(L, t, "u32");
  lua_getfield(L, t, "address");
  lua_getfield(L, t, "code");
  lua_getfield(L, t, "types");
  lua_getfield(L, t, "key");
  size_t len;
  if (!lua_isnil(L, t + 2)) {
    const char *v = lua_tolstring(L, t + 2, &len);
    stun_put(w, type, v, len);
  } else if (!lua_isnil(L, t + 3)) {
    stun_put_u32(w, type, (uint32_t)luaL_checkinteger(L, t + 3));
  } else if (!lua_isnil(L, t + 4)) {
    struct stun_addr a;
    lua_getfield(L, t, "port");
    if (stun_addr_set(&a, luaL_checkstring(L, t + 4), (uint16_t)luaL_checkinteger(L, -1)) != 0)
      luaL_error(L, "not a numeric IP address: %s", lua_tostring(L, t + 4));
    stun_put_addr(w, type, &a);
  } else if (!lua_isnil(L, t + 5)) {
    lua_getfield(L, t, "reason");
    stun_put_error(w, (int)luaL_checkinteger(L, t + 5), luaL_optstring(L, -1, ""));
  } else if (!lua_isnil(L, t + 6)) {
    uint16_t types[STUN_MAX_UNKNOWN];
    size_t n = (size_t)luaL_len(L, t + 6);
    if (n > STUN_MAX_UNKNOWN) luaL_error(L, "at most %d types", STUN_MAX_UNKNOWN);
    for (size_t i = 0; i < n; i++) {
      lua_rawgeti(L, t + 6, (lua_Integer)i + 1);
      types[i] = (uint16_t)luaL_checkinteger(L, -1);
      lua_pop(L, 1);
    }
    stun_put_unknown(w, types, n);
  } else if (!lua_isnil(L, t + 7)) {
    const char *k = luaL_checklstring(L, t + 7, &len);
    if (type == STUN_A_MESSAGE_INTEGRITY_SHA256)
      stun_put_integrity_sha256(w, (const uint8_t *)k, len);
    else
      stun_put_integrity(w, (const uint8_t *)k, len);
  } else if (type == STUN_A_FINGERPRINT) {
    stun_put_fingerprint(w);
  } else {
    stun_put(w, type, NULL, 0);
  }
  lua_settop(L, t);
}

static int l_encode(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "method");
  uint16_t method = (uint16_t)luaL_optinteger(L, -1, STUN_BINDING);
  lua_getfield(L, 1, "class");
  enum stun_class cls = (enum stun_class)check_class(L, -1);
  lua_getfield(L, 1, "txid");
  size_t tl = 0;
  const char *txid = lua_tolstring(L, -1, &tl);
  if (txid && tl != STUN_TXID_LEN) return luaL_error(L, "txid must be 12 bytes");
  uint8_t buf[MAX_MSG];
  struct stun_writer w;
  stun_begin(&w, buf, sizeof buf, method, cls, (const uint8_t *)txid);
  lua_getfield(L, 1, "attrs");
  if (lua_istable(L, -1)) {
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      luaL_checktype(L, -1, LUA_TTABLE);
      put_attr(L, &w);
      lua_pop(L, 1);
    }
  }
  size_t len = stun_finish(&w);
  if (len == 0) return luaL_error(L, "stun_encode: the encoder refused the message");
  lua_pushlstring(L, (const char *)buf, len);
  return 1;
}

static void set_lstr(lua_State *L, const char *k, const void *s, size_t n) {
  lua_pushlstring(L, s, n);
  lua_setfield(L, -2, k);
}

/* [-0, +1, m] One attribute as a table, value decoded where the type is known. */
static void push_attr(lua_State *L, const struct stun_msg *m, const struct stun_attr *a) {
  lua_createtable(L, 0, 6);
  lfield_int(L, "type", a->type);
  const char *name = stun_attr_name(a->type);
  if (name) {
    lua_pushstring(L, name);
    lua_setfield(L, -2, "name");
  }
  set_lstr(L, "value", a->val, a->len);
  if (a->off >= m->auth_end && a->type != STUN_A_FINGERPRINT &&
      a->type != STUN_A_MESSAGE_INTEGRITY_SHA256) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "ignored");
  }
  struct stun_addr addr;
  uint32_t u;
  if (stun_attr_is_addr(a->type) && stun_attr_addr(m, a, &addr) == 0) {
    char ip[STUN_ADDR_STRLEN];
    lua_pushstring(L, stun_addr_ip(&addr, ip, sizeof ip));
    lua_setfield(L, -2, "address");
    lfield_int(L, "port", addr.port);
    lfield_int(L, "family", addr.family == STUN_FAMILY_IPV6 ? 6 : 4);
  } else if (a->type == STUN_A_ERROR_CODE) {
    int code;
    const uint8_t *r;
    size_t rl;
    if (stun_attr_error(a, &code, &r, &rl) == 0) {
      lfield_int(L, "code", code);
      set_lstr(L, "reason", r, rl);
    }
  } else if (a->type == STUN_A_UNKNOWN_ATTRIBUTES) {
    uint16_t types[64];
    size_t n;
    if (stun_attr_unknown_list(a, types, 64, &n) == 0) {
      lua_createtable(L, (int)n, 0);
      for (size_t i = 0; i < n && i < 64; i++) {
        lua_pushinteger(L, types[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
      }
      lua_setfield(L, -2, "types");
    }
  } else if (a->type != STUN_A_FINGERPRINT && stun_attr_u32(a, &u) == 0) {
    lfield_int(L, "u32", u);
  }
}

static int l_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  enum stun_kind k = stun_demux(s, len);
  if (k == STUN_KIND_CHANNEL_DATA) {
    uint16_t ch;
    const uint8_t *d;
    size_t dl;
    if (stun_channel_parse(s, len, &ch, &d, &dl) != 0) {
      luaL_pushfail(L);
      lua_pushliteral(L, "bad ChannelData");
      return 2;
    }
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "channel_data");
    lua_setfield(L, -2, "kind");
    lfield_int(L, "channel", ch);
    set_lstr(L, "data", d, dl);
    return 1;
  }
  struct stun_msg m;
  enum stun_status st = stun_parse(&m, s, len);
  if (st != STUN_OK) {
    static const char *const codes[] = {"ok", "short", "not_stun", "cookie", "length",
                                        "attr_truncated", "attr_length", "fingerprint_pos",
                                        "fingerprint"};
    luaL_pushfail(L);
    lua_pushstring(L, stun_strerror(st));
    lua_pushstring(L, codes[st]);
    return 3;
  }
  lua_createtable(L, 0, 12);
  lua_pushliteral(L, "stun");
  lua_setfield(L, -2, "kind");
  lfield_int(L, "type", m.type);
  lfield_int(L, "method", m.method);
  if (stun_method_name(m.method)) {
    lua_pushstring(L, stun_method_name(m.method));
    lua_setfield(L, -2, "methodName");
  }
  lua_pushstring(L, stun_class_name(m.cls));
  lua_setfield(L, -2, "class");
  set_lstr(L, "txid", m.txid, STUN_TXID_LEN);
  lfield_int(L, "length", (lua_Integer)(m.len - STUN_HEADER_LEN));
  lua_pushboolean(L, m.fp_off != 0);
  lua_setfield(L, -2, "fingerprint");
  lua_pushboolean(L, m.mi_off != 0 || m.mi256_off != 0);
  lua_setfield(L, -2, "integrity");
  lua_createtable(L, (int)m.n_unknown, 0);
  for (unsigned i = 0; i < m.n_unknown; i++) {
    lua_pushinteger(L, m.unknown[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "unknown");
  lua_createtable(L, (int)m.n_attrs, 0);
  lua_newtable(L); /* byName: the first attribute of each name that counts */
  size_t pos = 0;
  lua_Integer i = 0;
  struct stun_attr a;
  while (stun_next_attr(&m, &pos, &a)) {
    push_attr(L, &m, &a);
    struct stun_attr first;
    const char *name = stun_attr_name(a.type);
    if (name && stun_find(&m, a.type, &first) && first.off == a.off) {
      lua_pushvalue(L, -1);
      lua_setfield(L, -3, name);
    }
    lua_rawseti(L, -3, ++i);
  }
  lua_setfield(L, -3, "byName");
  lua_setfield(L, -2, "attrs");
  return 1;
}

static int l_check_integrity(lua_State *L) {
  size_t len, kl;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *key = luaL_checklstring(L, 2, &kl);
  bool sha256 = lua_isstring(L, 3) && strcmp(lua_tostring(L, 3), "sha256") == 0;
  struct stun_msg m;
  enum stun_status st = stun_parse(&m, s, len);
  if (st != STUN_OK) return luaL_error(L, "not a valid STUN message: %s", stun_strerror(st));
  int r = sha256 ? stun_check_integrity_sha256(&m, (const uint8_t *)key, kl)
                 : stun_check_integrity(&m, (const uint8_t *)key, kl);
  if (r < 0) lua_pushnil(L);
  else lua_pushboolean(L, r);
  return 1;
}

static int l_longterm_key(lua_State *L) {
  size_t ul, rl, pl;
  const char *u = luaL_checklstring(L, 1, &ul), *r = luaL_checklstring(L, 2, &rl),
             *p = luaL_checklstring(L, 3, &pl);
  uint8_t key[STUN_LONGTERM_KEY_LEN];
  if (stun_longterm_key(u, ul, r, rl, p, pl, key) != 0) return luaL_error(L, "MD5 failed");
  lua_pushlstring(L, (const char *)key, sizeof key);
  return 1;
}

static int l_crc32(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_pushinteger(L, stun_crc32(0, s, len));
  return 1;
}

static int l_frame_len(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_pushinteger(L, stun_frame_len(s, len));
  return 1;
}

static int l_channel_encode(lua_State *L) {
  size_t len;
  lua_Integer ch = luaL_checkinteger(L, 1);
  const char *d = luaL_checklstring(L, 2, &len);
  uint8_t buf[MAX_MSG];
  size_t n = ch < 0 || ch > 0xFFFF
                 ? 0
                 : stun_channel_write(buf, sizeof buf, (uint16_t)ch, d, len, lua_toboolean(L, 3));
  if (n == 0) {
    luaL_pushfail(L);
    return 1;
  }
  lua_pushlstring(L, (const char *)buf, n);
  return 1;
}

/* ---- UDP sockets --------------------------------------------------------- */

struct udp {
  int fd;
};

static struct udp *check_udp(lua_State *L) {
  struct udp *u = luaL_checkudata(L, 1, UDP_MT);
  luaL_argcheck(L, u->fd >= 0, 1, "socket closed");
  return u;
}

static void sockaddr_of(lua_State *L, const char *ip, int port, struct sockaddr_in *a) {
  memset(a, 0, sizeof *a);
  a->sin_family = AF_INET;
  a->sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, ip, &a->sin_addr) != 1) luaL_error(L, "bad IPv4 address %s", ip);
}

static int l_udp_socket(lua_State *L) {
  struct sockaddr_in a;
  sockaddr_of(L, luaL_optstring(L, 1, "127.0.0.1"), (int)luaL_optinteger(L, 2, 0), &a);
  struct udp *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->fd = -1;
  luaL_setmetatable(L, UDP_MT);
  u->fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (u->fd < 0 || bind(u->fd, (struct sockaddr *)&a, sizeof a) != 0) {
    int e = errno;
    luaL_pushfail(L);
    lua_pushstring(L, strerror(e));
    return 2;
  }
  return 1;
}

static int udp_sendto(lua_State *L) {
  struct udp *u = check_udp(L);
  size_t len;
  const char *d = luaL_checklstring(L, 2, &len);
  struct sockaddr_in a;
  sockaddr_of(L, luaL_checkstring(L, 3), (int)luaL_checkinteger(L, 4), &a);
  if (sendto(u->fd, d, len, 0, (struct sockaddr *)&a, sizeof a) < 0) {
    luaL_pushfail(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static int udp_recvfrom(lua_State *L) {
  struct udp *u = check_udp(L);
  int ms = (int)(luaL_optnumber(L, 2, 1.0) * 1000);
  struct pollfd p = {.fd = u->fd, .events = POLLIN};
  int r;
  while ((r = poll(&p, 1, ms)) < 0 && errno == EINTR) {
  }
  if (r <= 0) {
    luaL_pushfail(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  char buf[65536];
  struct sockaddr_in a;
  socklen_t al = sizeof a;
  ssize_t n;
  do {
    n = recvfrom(u->fd, buf, sizeof buf, 0, (struct sockaddr *)&a, &al);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    luaL_pushfail(L);
    lua_pushstring(L, strerror(errno));
    return 2;
  }
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
  lua_pushlstring(L, buf, (size_t)n);
  lua_pushstring(L, ip);
  lua_pushinteger(L, ntohs(a.sin_port));
  return 3;
}

static int udp_port(lua_State *L) {
  struct udp *u = check_udp(L);
  struct sockaddr_in a;
  socklen_t al = sizeof a;
  if (getsockname(u->fd, (struct sockaddr *)&a, &al) != 0)
    return luaL_error(L, "udp port: %s", strerror(errno));
  lua_pushinteger(L, ntohs(a.sin_port));
  return 1;
}

static int udp_close(lua_State *L) {
  struct udp *u = luaL_checkudata(L, 1, UDP_MT);
  if (u->fd >= 0) close(u->fd);
  u->fd = -1;
  return 0;
}

static bool port_free(int type, int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  bool ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
  if (fd >= 0) close(fd);
  return ok;
}

/* A port p such that p .. p+count-1 were free a moment ago, UDP and TCP. */
static int l_udp_free_port(lua_State *L) {
  int count = (int)luaL_optinteger(L, 1, 1);
  luaL_argcheck(L, count >= 1 && count <= 16, 1, "count must be 1..16");
  for (int attempt = 0; attempt < 200; attempt++) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
      if (fd >= 0) close(fd);
      return luaL_error(L, "udp_free_port: %s", strerror(errno));
    }
    close(fd);
    int p = ntohs(a.sin_port);
    bool ok = p + count - 1 <= 65535;
    for (int i = 0; ok && i < count; i++)
      ok = port_free(SOCK_DGRAM, p + i) && port_free(SOCK_STREAM, p + i);
    if (ok) {
      lua_pushinteger(L, p);
      return 1;
    }
  }
  return luaL_error(L, "udp_free_port: no free range of %d ports found", count);
}

void ltest_stun(lua_State *L) {
  if (luaL_newmetatable(L, UDP_MT)) {
    static const luaL_Reg methods[] = {{"sendto", udp_sendto}, {"recvfrom", udp_recvfrom},
                                       {"port", udp_port},     {"close", udp_close},
                                       {NULL, NULL}};
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, udp_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"stun_encode", l_encode},
                                 {"stun_decode", l_decode},
                                 {"stun_check_integrity", l_check_integrity},
                                 {"stun_longterm_key", l_longterm_key},
                                 {"stun_crc32", l_crc32},
                                 {"stun_frame_len", l_frame_len},
                                 {"stun_channel_encode", l_channel_encode},
                                 {"udp_socket", l_udp_socket},
                                 {"udp_free_port", l_udp_free_port},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
