/* ltest_peerstore: spec bindings for the peer store.
 *
 *   bt2c.peerstore_open(path, max_entries) -> store | nil, err
 *   store:get(id) -> record | nil            store:put(record) -> true | nil, err
 *   store:add_address(id, addr, source, now) -> true | nil, err
 *   store:forget(id) -> bool                 store:count() -> n
 *   store:flush() -> true | nil, err         store:set_anchors({ids}) -> true | nil, err
 *   store:best(max, now) -> {records}        store:each() -> {records}
 *   store:ban_address(addr, until) -> true | nil, err
 *   store:unban_address(addr) -> bool        store:address_banned(addr, now) -> until | 0
 *   store:stats() -> {commits = ...}         store:close()
 *   bt2c.peerstore_sql(path, sql) -> {rows}  (a raw second connection, to look at the file)
 *   bt2c.peerstore_lock(path) -> lock        (holds the write lock until lock:unlock())
 *
 * A record is a table with the fields of struct peer_record; pubkey is a
 * 32-byte string or nil, score_state a string ("" when the scoring module
 * has stored none). put() copies strings into the fixed-size fields without
 * terminating over-long ones, so the store's own validation is what the
 * specs exercise.
 */
#include <limits.h>
#include <string.h>

#include <lauxlib.h>
#include <sqlite3.h>

#include "ltest.h"
#include "peerstore.h"

#define LPS_MT "bt2c.peerstore"
#define LPS_LOCK_MT "bt2c.peerstore.lock"

struct lps {
  struct peerstore *ps;
};

static struct peerstore *lps_check(lua_State *L) {
  struct lps *u = luaL_checkudata(L, 1, LPS_MT);
  if (!u->ps) luaL_error(L, "peerstore is closed");
  return u->ps;
}

static int lps_result(lua_State *L, int rc, const char *what) {
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  luaL_pushfail(L);
  lua_pushstring(L, what);
  return 2;
}

/* [-0, +1, m] */
static void lps_push_record(lua_State *L, const struct peer_record *r) {
  lua_createtable(L, 0, 13);
  lua_pushstring(L, r->node_id);
  lua_setfield(L, -2, "node_id");
  if (r->has_pubkey) {
    lua_pushlstring(L, (const char *)r->pubkey, sizeof r->pubkey);
    lua_setfield(L, -2, "pubkey");
  }
  lua_createtable(L, r->n_addrs, 0);
  for (int i = 0; i < r->n_addrs; i++) {
    lua_pushstring(L, r->addrs[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "addrs");
  lua_pushnumber(L, r->first_seen);
  lua_setfield(L, -2, "first_seen");
  lua_pushnumber(L, r->last_seen);
  lua_setfield(L, -2, "last_seen");
  lua_pushnumber(L, r->last_connected);
  lua_setfield(L, -2, "last_connected");
  lua_pushinteger(L, r->failures);
  lua_setfield(L, -2, "failures");
  lua_pushstring(L, r->source);
  lua_setfield(L, -2, "source");
  lua_pushboolean(L, r->is_validator);
  lua_setfield(L, -2, "is_validator");
  lua_pushnumber(L, r->score);
  lua_setfield(L, -2, "score");
  lua_pushnumber(L, r->ban_until);
  lua_setfield(L, -2, "ban_until");
  lua_pushboolean(L, r->anchor);
  lua_setfield(L, -2, "anchor");
  lua_pushstring(L, r->score_state);
  lua_setfield(L, -2, "score_state");
}

/* Copies at most cap bytes; a string of cap bytes or more stays unterminated. */
static void lps_copy(char *dst, size_t cap, const char *s, size_t len) {
  memset(dst, 0, cap);
  memcpy(dst, s, len < cap ? len : cap);
}

static void lps_field_string(lua_State *L, int t, const char *k, char *dst, size_t cap) {
  size_t len = 0;
  const char *s = "";
  if (lua_getfield(L, t, k) != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "record field %s must be a string", k);
    s = lua_tolstring(L, -1, &len);
  }
  lps_copy(dst, cap, s, len);
  lua_pop(L, 1);
}

static double lps_field_number(lua_State *L, int t, const char *k) {
  double v = 0;
  if (lua_getfield(L, t, k) != LUA_TNIL) {
    int ok;
    v = (double)lua_tonumberx(L, -1, &ok);
    if (!ok) luaL_error(L, "record field %s must be a number", k);
  }
  lua_pop(L, 1);
  return v;
}

static bool lps_field_bool(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  bool v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static void lps_to_record(lua_State *L, int t, struct peer_record *r) {
  luaL_checktype(L, t, LUA_TTABLE);
  memset(r, 0, sizeof *r);
  lps_field_string(L, t, "node_id", r->node_id, sizeof r->node_id);
  if (lua_getfield(L, t, "pubkey") != LUA_TNIL) {
    size_t len;
    const char *k = lua_tolstring(L, -1, &len);
    if (!k || len != sizeof r->pubkey) luaL_error(L, "record field pubkey must be 32 bytes");
    memcpy(r->pubkey, k, sizeof r->pubkey);
    r->has_pubkey = true;
  }
  lua_pop(L, 1);
  if (lua_getfield(L, t, "addrs") != LUA_TNIL) {
    luaL_checktype(L, -1, LUA_TTABLE);
    lua_Integer n = luaL_len(L, -1);
    r->n_addrs = n > 1000 ? 1000 : (int)n; /* too many is the store's to refuse */
    for (int i = 0; i < r->n_addrs && i < PEERSTORE_MAX_ADDRS; i++) {
      size_t len;
      lua_rawgeti(L, -1, i + 1);
      const char *a = lua_tolstring(L, -1, &len);
      if (!a) luaL_error(L, "record field addrs[%d] must be a string", i + 1);
      lps_copy(r->addrs[i], sizeof r->addrs[i], a, len);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  r->first_seen = lps_field_number(L, t, "first_seen");
  r->last_seen = lps_field_number(L, t, "last_seen");
  r->last_connected = lps_field_number(L, t, "last_connected");
  double failures = lps_field_number(L, t, "failures");
  r->failures = failures != failures ? -1 /* NaN: let the store refuse it */
                : failures < INT_MIN  ? INT_MIN
                : failures > INT_MAX  ? INT_MAX
                                      : (int)failures;
  lps_field_string(L, t, "source", r->source, sizeof r->source);
  r->is_validator = lps_field_bool(L, t, "is_validator");
  r->score = lps_field_number(L, t, "score");
  r->ban_until = lps_field_number(L, t, "ban_until");
  r->anchor = lps_field_bool(L, t, "anchor");
  lps_field_string(L, t, "score_state", r->score_state, sizeof r->score_state);
}

static int l_peerstore_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int max = (int)luaL_optinteger(L, 2, 0);
  struct lps *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->ps = NULL;
  luaL_setmetatable(L, LPS_MT);
  char err[512];
  u->ps = peerstore_open(path, max, err, sizeof err);
  if (!u->ps) {
    luaL_pushfail(L);
    lua_pushstring(L, err);
    return 2;
  }
  return 1;
}

static int lps_get(lua_State *L) {
  struct peerstore *ps = lps_check(L);
  struct peer_record r;
  if (peerstore_get(ps, luaL_checkstring(L, 2), &r) != 0) return 0;
  lps_push_record(L, &r);
  return 1;
}

static int lps_put(lua_State *L) {
  struct peerstore *ps = lps_check(L);
  struct peer_record r;
  lps_to_record(L, 2, &r);
  return lps_result(L, peerstore_put(ps, &r), "invalid record");
}

static int lps_add_address(lua_State *L) {
  struct peerstore *ps = lps_check(L);
  int rc = peerstore_add_address(ps, luaL_checkstring(L, 2), luaL_checkstring(L, 3),
                                 luaL_optstring(L, 4, NULL), luaL_checknumber(L, 5));
  return lps_result(L, rc, "invalid node id, address or source");
}

static int lps_forget(lua_State *L) {
  struct peerstore *ps = lps_check(L);
  lua_pushboolean(L, peerstore_forget(ps, luaL_checkstring(L, 2)) == 0);
  return 1;
}

static int lps_count(lua_State *L) {
  lua_pushinteger(L, peerstore_count(lps_check(L)));
  return 1;
}

static int lps_flush(lua_State *L) {
  return lps_result(L, peerstore_flush(lps_check(L)), "flush failed (see the log)");
}

static int lps_set_anchors(lua_State *L) {
  struct peerstore *ps = lps_check(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  int n = (int)luaL_len(L, 2);
  const char **ids = lua_newuserdatauv(L, sizeof *ids * (size_t)(n ? n : 1), 0);
  luaL_checkstack(L, n, "set_anchors");
  for (int i = 0; i < n; i++) { /* the strings stay on the stack during the call */
    lua_rawgeti(L, 2, i + 1);
    ids[i] = luaL_checkstring(L, -1);
  }
  return lps_result(L, peerstore_set_anchors(ps, ids, n), "invalid node id");
}

static int lps_best(lua_State *L) {
  struct peerstore *ps = lps_check(L);
  lua_Integer max = luaL_checkinteger(L, 2);
  double now = luaL_checknumber(L, 3);
  luaL_argcheck(L, max >= 0 && max <= 100000, 2, "max must be in 0..100000");
  struct peer_record *out = lua_newuserdatauv(L, sizeof *out * (size_t)(max ? max : 1), 0);
  int n = peerstore_best(ps, out, (int)max, now);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lps_push_record(L, &out[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int lps_each_cb(const struct peer_record *r, void *ud) {
  lua_State *L = ud;
  lps_push_record(L, r);
  lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
  return 0;
}

static int lps_each(lua_State *L) {
  struct peerstore *ps = lps_check(L);
  lua_newtable(L);
  peerstore_each(ps, lps_each_cb, L);
  return 1;
}

static int lps_ban_address(lua_State *L) {
  struct peerstore *ps = lps_check(L);
  int rc = peerstore_ban_address(ps, luaL_checkstring(L, 2), luaL_checknumber(L, 3));
  return lps_result(L, rc, "invalid address or expiry");
}

static int lps_unban_address(lua_State *L) {
  struct peerstore *ps = lps_check(L);
  lua_pushboolean(L, peerstore_unban_address(ps, luaL_checkstring(L, 2)) == 0);
  return 1;
}

static int lps_address_banned(lua_State *L) {
  struct peerstore *ps = lps_check(L);
  lua_pushnumber(L, peerstore_address_banned(ps, luaL_checkstring(L, 2), luaL_checknumber(L, 3)));
  return 1;
}

static int lps_stats(lua_State *L) {
  struct peerstore_stats st;
  peerstore_get_stats(lps_check(L), &st);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)st.commits);
  lua_setfield(L, -2, "commits");
  lua_pushinteger(L, (lua_Integer)st.flushes);
  lua_setfield(L, -2, "flushes");
  lua_pushinteger(L, (lua_Integer)st.flush_failures);
  lua_setfield(L, -2, "flush_failures");
  lua_pushinteger(L, (lua_Integer)st.rows_written);
  lua_setfield(L, -2, "rows_written");
  lua_pushinteger(L, (lua_Integer)st.rows_deleted);
  lua_setfield(L, -2, "rows_deleted");
  lua_pushinteger(L, (lua_Integer)st.pruned);
  lua_setfield(L, -2, "pruned");
  return 1;
}

static int lps_close(lua_State *L) {
  struct lps *u = luaL_checkudata(L, 1, LPS_MT);
  peerstore_close(u->ps);
  u->ps = NULL;
  return 0;
}

/* ---- a raw second connection, for looking at the file from outside ------ */

static int lps_sql_row(void *ud, int ncol, char **vals, char **names) {
  lua_State *L = ud;
  lua_createtable(L, 0, ncol);
  for (int i = 0; i < ncol; i++) {
    if (!vals[i]) continue;
    lua_pushstring(L, vals[i]);
    lua_setfield(L, -2, names[i]);
  }
  lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
  return 0;
}

static int l_peerstore_sql(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  const char *sql = luaL_checkstring(L, 2);
  sqlite3 *db;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
    lua_pushfstring(L, "%s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return lua_error(L);
  }
  sqlite3_busy_timeout(db, 2000);
  lua_newtable(L);
  char *msg = NULL;
  if (sqlite3_exec(db, sql, lps_sql_row, L, &msg) != SQLITE_OK) {
    luaL_pushfail(L);
    lua_pushstring(L, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    sqlite3_close(db);
    return 2;
  }
  sqlite3_close(db);
  return 1;
}

struct lps_lock {
  sqlite3 *db;
};

static int l_peerstore_lock(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct lps_lock *k = lua_newuserdatauv(L, sizeof *k, 0);
  k->db = NULL;
  luaL_setmetatable(L, LPS_LOCK_MT);
  if (sqlite3_open_v2(path, &k->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK ||
      sqlite3_exec(k->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
    return luaL_error(L, "%s: %s", path, k->db ? sqlite3_errmsg(k->db) : "out of memory");
  return 1;
}

static int lps_unlock(lua_State *L) {
  struct lps_lock *k = luaL_checkudata(L, 1, LPS_LOCK_MT);
  if (k->db) {
    sqlite3_exec(k->db, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(k->db);
  }
  k->db = NULL;
  return 0;
}

void ltest_peerstore(lua_State *L) {
  static const luaL_Reg methods[] = {{"get", lps_get},
                                     {"put", lps_put},
                                     {"add_address", lps_add_address},
                                     {"forget", lps_forget},
                                     {"count", lps_count},
                                     {"flush", lps_flush},
                                     {"set_anchors", lps_set_anchors},
                                     {"best", lps_best},
                                     {"each", lps_each},
                                     {"ban_address", lps_ban_address},
                                     {"unban_address", lps_unban_address},
                                     {"address_banned", lps_address_banned},
                                     {"stats", lps_stats},
                                     {"close", lps_close},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, LPS_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, lps_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, LPS_LOCK_MT)) {
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, lps_unlock);
    lua_setfield(L, -2, "unlock");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, lps_unlock);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"peerstore_open", l_peerstore_open},
                                 {"peerstore_sql", l_peerstore_sql},
                                 {"peerstore_lock", l_peerstore_lock},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
