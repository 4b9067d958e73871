/* lsandbox: see lsandbox.h.
 *
 * Layout of a sandboxed state:
 *   registry[LUA_RIDX_GLOBALS] = G, an empty proxy: reads fall through to R,
 *     every write raises (so `print = nil` fails as loudly as `x = 1`);
 *   R = the real globals, whose own __index raises "undefined global";
 *   R.string/table/math/utf8 = read-only proxies of the library tables;
 *   the string metatable's __index is the real string table, which only C
 *     can reach: getmetatable("") answers "locked".
 * registry[PROXIES] maps every proxy to the table behind it (weak keys), so
 * the rawset wrapper, setmetatable and C readers can recognise them.
 */
#include "lsandbox.h"
#include "lpattern.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "log.h"

#define PROXIES_KEY "bt2c.sandbox.proxies"
#define HOOK_STEP 1000 /* instructions between two looks at the clock */

enum trip { TRIP_NONE, TRIP_INSTRUCTIONS, TRIP_TIME };

struct lsandbox {
  lua_State *L;
  size_t used, cap;
  bool refused; /* the allocator said no since the current call began */
  /* the running call */
  long budget, executed;
  int step;
  double deadline;
  enum trip tripped;
  struct lsandbox_limits lim;
  /* setup hook for lsandbox_new */
  lua_CFunction setup;
  void *setup_ud;
  struct log_limit print_rl;
  char name[32];
  char msg[1024];
};

static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct lsandbox *sandbox_of(lua_State *L) {
  void *ud = NULL;
  lua_getallocf(L, &ud);
  return ud;
}

struct lsandbox *lsandbox_from_state(lua_State *L) { return sandbox_of(L); }

/* ---- memory -------------------------------------------------------------- */

/* Caps growth only: frees and shrinks always succeed, so Lua can always
 * unwind and collect. A refusal is remembered for the classification. */
static void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  struct lsandbox *sb = ud;
  if (ptr == NULL) osize = 0; /* osize then carries the object's type */
  if (nsize == 0) {
    free(ptr);
    sb->used -= osize;
    return NULL;
  }
  if (nsize > osize && nsize - osize > sb->cap - sb->used) {
    sb->refused = true;
    return NULL;
  }
  void *p = realloc(ptr, nsize);
  if (p == NULL) {
    sb->refused = true;
    return NULL;
  }
  sb->used = sb->used - osize + nsize;
  return p;
}

static int sandbox_panic(lua_State *L) {
  const char *msg = lua_tostring(L, -1);
  log_at(LV_ERROR, "sandbox_panic", "msg=%s", msg ? msg : "(not a string)");
  return 0; /* Lua aborts */
}

/* ---- budget ---------------------------------------------------------------- */

/* Count events measure the instruction budget; call events (every Lua or C
 * function call) look at the clock, so time spent inside C library
 * functions (sorting, string building, pattern matching) is noticed before
 * the next function starts. Once tripped the hook re-arms itself for every
 * instruction, so a policy's own pcall, its message handler and even its
 * final RETURN raise again and the error reaches our pcall. */
#define HOOK_MASK (LUA_MASKCOUNT | LUA_MASKCALL)

static void trip_message(struct lsandbox *sb, lua_State *L, lua_Debug *ar) {
  char where[96] = "";
  lua_Debug up;
  if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0) {
    snprintf(where, sizeof where, "%s:%d: ", ar->short_src, ar->currentline);
  } else { /* a C function: name the nearest Lua caller */
    for (int level = 1; level < 8 && lua_getstack(L, level, &up); level++) {
      if (lua_getinfo(L, "Sl", &up) && up.currentline > 0) {
        snprintf(where, sizeof where, "%s:%d: ", up.short_src, up.currentline);
        break;
      }
    }
  }
  if (sb->tripped == TRIP_INSTRUCTIONS)
    snprintf(sb->msg, sizeof sb->msg,
             "%sinstruction budget exceeded (%ld instructions per call): make the code "
             "cheaper or raise policyLimits.instructions",
             where, sb->lim.instructions);
  else
    snprintf(sb->msg, sizeof sb->msg,
             "%stime budget exceeded (%g ms per call): make the code cheaper or raise "
             "policyLimits.time",
             where, sb->lim.time_ms);
}

static void sandbox_hook(lua_State *L, lua_Debug *ar) {
  struct lsandbox *sb = sandbox_of(L);
  if (sb->tripped == TRIP_NONE) {
    bool count = ar->event == LUA_HOOKCOUNT;
    if (count) {
      sb->executed += sb->step;
      if (sb->executed >= sb->budget) sb->tripped = TRIP_INSTRUCTIONS;
    }
    if (sb->tripped == TRIP_NONE && mono_now() >= sb->deadline) sb->tripped = TRIP_TIME;
    if (sb->tripped == TRIP_NONE) {
      long left = sb->budget - sb->executed;
      int step = left < HOOK_STEP ? (int)left : HOOK_STEP;
      if (count && step != sb->step) {
        sb->step = step;
        lua_sethook(L, sandbox_hook, HOOK_MASK, step);
      }
      return;
    }
    lua_sethook(L, sandbox_hook, HOOK_MASK, 1);
    trip_message(sb, L, ar);
  }
  lua_pushstring(L, "budget exceeded");
  lua_error(L);
}

/* [-1, +1, m] Message handler: the message with a traceback. Non-string
 * error objects are only named: their __tostring is not trusted. */
static int sandbox_msgh(lua_State *L) {
  const char *msg = lua_type(L, 1) == LUA_TSTRING ? lua_tostring(L, 1) : NULL;
  if (msg == NULL) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

const char *lsandbox_status_name(enum lsandbox_status st) {
  switch (st) {
    case LSANDBOX_OK: return "ok";
    case LSANDBOX_ERROR: return "error";
    case LSANDBOX_TIMEOUT: return "timeout";
    case LSANDBOX_OOM: return "oom";
  }
  return "?";
}

static void set_msg_from_stack(struct lsandbox *sb) {
  const char *m = lua_type(sb->L, -1) == LUA_TSTRING ? lua_tostring(sb->L, -1) : NULL;
  snprintf(sb->msg, sizeof sb->msg, "%s", m ? m : "(no message)");
}

static void set_oom_msg(struct lsandbox *sb) {
  snprintf(sb->msg, sizeof sb->msg,
           "out of memory: the state reached its cap of %zu bytes (policyLimits.memory)", sb->cap);
}

enum lsandbox_status lsandbox_pcall(struct lsandbox *sb, int nargs, int nresults,
                                    const struct lsandbox_limits *lim, double *elapsed_ms) {
  lua_State *L = sb->L;
  int fidx = lua_gettop(L) - nargs;
  lua_pushcfunction(L, sandbox_msgh); /* a light C function: no allocation */
  lua_insert(L, fidx);
  sb->lim = *lim;
  sb->refused = false;
  sb->tripped = TRIP_NONE;
  sb->executed = 0;
  sb->budget = lim->instructions > 0 ? lim->instructions : LONG_MAX;
  sb->step = sb->budget < HOOK_STEP ? (int)sb->budget : HOOK_STEP;
  double t0 = mono_now();
  sb->deadline = lim->time_ms > 0 ? t0 + lim->time_ms / 1000.0 : INFINITY;
  lua_sethook(L, sandbox_hook, HOOK_MASK, sb->step);
  int rc = lua_pcall(L, nargs, nresults, fidx);
  lua_sethook(L, NULL, 0, 0);
  if (elapsed_ms) *elapsed_ms = (mono_now() - t0) * 1000.0;
  lua_remove(L, fidx);

  enum lsandbox_status st = LSANDBOX_OK;
  if (sb->refused || rc == LUA_ERRMEM) st = LSANDBOX_OOM;
  else if (sb->tripped != TRIP_NONE) st = LSANDBOX_TIMEOUT;
  else if (rc != LUA_OK) st = LSANDBOX_ERROR;
  if (st == LSANDBOX_OK) {
    sb->msg[0] = '\0';
    return st;
  }
  if (rc != LUA_OK) {
    if (st == LSANDBOX_ERROR) set_msg_from_stack(sb);
    lua_pop(L, 1);
  } else {
    lua_settop(L, fidx - 1); /* results computed after a caught failure don't count */
  }
  if (st == LSANDBOX_OOM) {
    set_oom_msg(sb);
    lua_gc(L, LUA_GCCOLLECT, 0);
  }
  /* TIMEOUT keeps the message written when the hook tripped */
  return st;
}

enum lsandbox_status lsandbox_load(struct lsandbox *sb, const char *text, size_t len,
                                   const char *chunkname) {
  sb->refused = false;
  int rc = luaL_loadbufferx(sb->L, text, len, chunkname, "t");
  if (rc == LUA_OK) {
    sb->msg[0] = '\0';
    return LSANDBOX_OK;
  }
  if (rc == LUA_ERRMEM) {
    set_oom_msg(sb);
  } else {
    set_msg_from_stack(sb);
  }
  lua_pop(sb->L, 1);
  if (rc == LUA_ERRMEM) lua_gc(sb->L, LUA_GCCOLLECT, 0);
  return rc == LUA_ERRMEM ? LSANDBOX_OOM : LSANDBOX_ERROR;
}

const char *lsandbox_message(const struct lsandbox *sb) { return sb->msg; }
lua_State *lsandbox_state(struct lsandbox *sb) { return sb->L; }
const char *lsandbox_name(const struct lsandbox *sb) { return sb->name; }
size_t lsandbox_memory(const struct lsandbox *sb) { return sb->used; }
size_t lsandbox_memory_cap(const struct lsandbox *sb) { return sb->cap; }

static void copy_value(lua_State *from, int idx, lua_State *to, int depth) {
  switch (lua_type(from, idx)) {
    case LUA_TNIL: lua_pushnil(to); break;
    case LUA_TBOOLEAN: lua_pushboolean(to, lua_toboolean(from, idx)); break;
    case LUA_TNUMBER:
      if (lua_isinteger(from, idx)) lua_pushinteger(to, lua_tointeger(from, idx));
      else lua_pushnumber(to, lua_tonumber(from, idx));
      break;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(from, idx, &len);
      lua_pushlstring(to, s, len);
      break;
    }
    case LUA_TTABLE:
      if (depth < 2 && lua_checkstack(from, 4)) {
        idx = lua_absindex(from, idx);
        lua_newtable(to);
        lua_pushnil(from);
        while (lua_next(from, idx)) {
          copy_value(from, -2, to, depth + 1);
          copy_value(from, -1, to, depth + 1);
          if (lua_isnil(to, -2)) lua_pop(to, 2);
          else lua_rawset(to, -3);
          lua_pop(from, 1);
        }
        break;
      }
      /* fall through */
    default: lua_pushfstring(to, "<%s>", luaL_typename(from, idx)); break;
  }
}

void lsandbox_copy_out(lua_State *from, int first, int n, lua_State *to) {
  first = lua_absindex(from, first);
  lua_createtable(to, n, 0);
  for (int i = 0; i < n; i++) {
    copy_value(from, first + i, to, 0);
    lua_rawseti(to, -2, i + 1);
  }
}

/* ---- read-only proxies ----------------------------------------------------- */

static void push_proxies(lua_State *L) { /* [-0, +1, -] */
  lua_getfield(L, LUA_REGISTRYINDEX, PROXIES_KEY);
}

static bool is_proxy(lua_State *L, int idx) { /* [-0, +0, -] */
  if (lua_type(L, idx) != LUA_TTABLE) return false;
  idx = lua_absindex(L, idx);
  push_proxies(L);
  lua_pushvalue(L, idx);
  bool yes = lua_rawget(L, -2) == LUA_TTABLE;
  lua_pop(L, 2);
  return yes;
}

void lsandbox_unproxy(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) == LUA_TTABLE) {
    push_proxies(L);
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) == LUA_TTABLE) {
      lua_remove(L, -2);
      return;
    }
    lua_pop(L, 2);
  }
  lua_pushvalue(L, idx);
}

/* [-0, +(0|1), m] A key for an error message (numbers are converted on a
 * copy, left on the stack: callers are about to raise). */
static const char *key_text(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_pushvalue(L, idx);
    return lua_tostring(L, -1);
  }
  return lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : luaL_typename(L, idx);
}

static int ro_newindex(lua_State *L) { /* upvalue 1: the table's name */
  const char *name = lua_tostring(L, lua_upvalueindex(1));
  return luaL_error(L, "cannot assign %s.%s: '%s' is read-only in a policy (copy what you need "
                    "into a local table)", name, key_text(L, 2), name);
}

static int ro_len(lua_State *L) {
  lsandbox_unproxy(L, 1);
  lua_pushinteger(L, (lua_Integer)lua_rawlen(L, -1));
  return 1;
}

static int ro_next(lua_State *L) { /* upvalue 1: the real table */
  lua_settop(L, 2);
  if (lua_next(L, lua_upvalueindex(1))) return 2;
  lua_pushnil(L);
  return 1;
}

/* pairs(proxy) iterates the real table without handing it out. */
static int ro_pairs(lua_State *L) {
  lsandbox_unproxy(L, 1);
  lua_pushcclosure(L, ro_next, 1);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  return 3;
}

/* [-0, +1, e] A proxy for the table at `real` whose writes raise `newindex`
 * (a closure over `name`). */
static void make_proxy(lua_State *L, int real, const char *name, lua_CFunction newindex) {
  real = lua_absindex(L, real);
  lua_newtable(L); /* proxy */
  lua_createtable(L, 0, 5);
  lua_pushvalue(L, real);
  lua_setfield(L, -2, "__index");
  lua_pushstring(L, name);
  lua_pushcclosure(L, newindex, 1);
  lua_setfield(L, -2, "__newindex");
  lua_pushcfunction(L, ro_len);
  lua_setfield(L, -2, "__len");
  lua_pushcfunction(L, ro_pairs);
  lua_setfield(L, -2, "__pairs");
  lua_pushliteral(L, "read-only");
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
  push_proxies(L);
  lua_pushvalue(L, -2);
  lua_pushvalue(L, real);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

static void readonly_rec(lua_State *L, int real, const char *name, int depth) {
  luaL_checkstack(L, 10, "read-only table");
  if (depth > 16) luaL_error(L, "'%s' is nested too deeply to be made read-only", name);
  lua_pushnil(L);
  while (lua_next(L, real)) {
    if (lua_type(L, -1) == LUA_TTABLE && !is_proxy(L, -1)) {
      int child = lua_gettop(L);
      /* key_text may push a copy of a number key: keep exactly one slot */
      const char *kt = key_text(L, child - 1);
      lua_pushfstring(L, "%s.%s", name, kt);
      if (lua_gettop(L) == child + 2) lua_remove(L, child + 1);
      const char *cname = lua_tostring(L, child + 1);
      readonly_rec(L, child, cname, depth + 1);
      lua_pushvalue(L, child - 1);
      lua_insert(L, -2);
      lua_rawset(L, real); /* replacing an existing field is allowed mid-traversal */
      lua_pop(L, 1);       /* cname */
    }
    lua_pop(L, 1);
  }
  make_proxy(L, real, name, ro_newindex);
}

void lsandbox_readonly(lua_State *L, int idx, const char *name) {
  readonly_rec(L, lua_absindex(L, idx), name, 0);
}

/* ---- sealed globals ------------------------------------------------------ */

static int global_newindex(lua_State *L) {
  const char *key = key_text(L, 2);
  lsandbox_unproxy(L, 1);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, -2) != LUA_TNIL)
    return luaL_error(L, "cannot assign global '%s': the globals of a policy are read-only "
                      "(use a local)", key);
  return luaL_error(L, "assignment to undeclared global '%s': a policy cannot create globals "
                    "(declare it local)", key);
}

static int global_undefined(lua_State *L) {
  return luaL_error(L, "undefined global '%s' (not available in a policy sandbox; check the "
                    "spelling or declare it local)", key_text(L, 2));
}

static void seal_globals(lua_State *L) { /* [-0, +0, e] */
  lua_pushglobaltable(L);
  int real = lua_gettop(L);
  make_proxy(L, real, "_G", global_newindex);
  int proxy = lua_gettop(L);
  lua_pushvalue(L, proxy);
  lua_setfield(L, real, "_G");
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, global_undefined);
  lua_setfield(L, -2, "__index");
  lua_pushliteral(L, "sealed");
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, real);
  lua_pushvalue(L, proxy);
  lua_rawseti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
  lua_pop(L, 2);
}

/* ---- base library replacements --------------------------------------------- */

static int sandbox_rawset(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkany(L, 2);
  luaL_checkany(L, 3);
  if (is_proxy(L, 1))
    return luaL_error(L, "rawset: the table is read-only in a policy (a library, _G or config)");
  lua_settop(L, 3);
  lua_rawset(L, 1);
  return 1;
}

/* __gc is refused because finalizers run with hooks off, i.e. outside any
 * budget (and at lua_close). */
static int sandbox_setmetatable(lua_State *L) { /* upvalue 1: the original */
  luaL_checktype(L, 1, LUA_TTABLE);
  if (is_proxy(L, 1))
    return luaL_error(L, "setmetatable: the table is read-only in a policy (a library, _G or "
                      "config)");
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_pushliteral(L, "__gc");
    if (lua_rawget(L, 2) != LUA_TNIL)
      return luaL_error(L, "setmetatable: __gc finalizers are not allowed in a policy (they "
                        "would run outside the time budget)");
    lua_pop(L, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

/* The budget error is raised from inside the count hook, where Lua runs
 * with hooks off; a policy's xpcall handler called from there could loop
 * forever. So handlers pass through this gate, which skips them once the
 * budget has tripped (the message goes through unchanged). */
static int xpcall_gate(lua_State *L) { /* upvalue 1: the policy's handler */
  if (sandbox_of(L)->tripped != TRIP_NONE) {
    lua_settop(L, 1);
    return 1;
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

static int sandbox_xpcall(lua_State *L) { /* upvalue 1: the original */
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_pushvalue(L, 2);
  lua_pushcclosure(L, xpcall_gate, 1);
  lua_replace(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

static int sandbox_print(lua_State *L) {
  struct lsandbox *sb = sandbox_of(L);
  char line[512];
  size_t used = 0;
  int n = lua_gettop(L);
  for (int i = 1; i <= n && used + 1 < sizeof line; i++) {
    size_t len;
    const char *s = luaL_tolstring(L, i, &len);
    if (i > 1) line[used++] = '\t';
    size_t room = sizeof line - 1 - used;
    if (len > room) len = room;
    memcpy(line + used, s, len);
    used += len;
    lua_pop(L, 1);
  }
  line[used] = '\0';
  log_limited(&sb->print_rl, LV_INFO, "policy_print", "policy=%s msg=%s", sb->name, line);
  return 0;
}

/* ---- pattern guard (the estimate is in lpattern.c) -------------------- */

/* upvalues: 1 the original function, 2 its name, 3 whether '^' anchors */
static int guarded_match(lua_State *L) {
  int t1 = lua_type(L, 1), t2 = lua_type(L, 2);
  const char *fname = lua_tostring(L, lua_upvalueindex(2));
  bool plain = strcmp(fname, "find") == 0 && lua_toboolean(L, 4);
  if (!plain && (t1 == LUA_TSTRING || t1 == LUA_TNUMBER) &&
      (t2 == LUA_TSTRING || t2 == LUA_TNUMBER)) {
    size_t len, plen;
    luaL_checklstring(L, 1, &len);
    const char *pat = luaL_checklstring(L, 2, &plen);
    double cost = lpattern_cost(len, pat, plen, lua_toboolean(L, lua_upvalueindex(3)));
    if (cost > LPATTERN_LIMIT) {
      char buf[400];
      snprintf(buf, sizeof buf,
               "string.%s: pattern '%.40s%s' is too costly on a %zu-byte subject (worst case "
               "~%.1e steps, limit %.0e): shorten the subject (s:sub(1, n)), anchor the pattern "
               "with '^', or use fewer .- / .* / %%b items",
               fname, pat, plen > 40 ? "..." : "", len, cost, LPATTERN_LIMIT);
      return luaL_error(L, "%s", buf);
    }
  }
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
  return lua_gettop(L);
}

static void guard_string_lib(lua_State *L, int strlib) { /* [-0, +0, e] */
  static const struct {
    const char *name;
    bool anchor;
  } fns[] = {{"find", true}, {"match", true}, {"gmatch", false}, {"gsub", true}};
  for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
    lua_getfield(L, strlib, fns[i].name);
    lua_pushstring(L, fns[i].name);
    lua_pushboolean(L, fns[i].anchor);
    lua_pushcclosure(L, guarded_match, 3);
    lua_setfield(L, strlib, fns[i].name);
  }
  lua_pushnil(L);
  lua_setfield(L, strlib, "dump");
}

/* ---- construction -------------------------------------------------------- */

static int sandbox_open(lua_State *L) {
  struct lsandbox *sb = sandbox_of(L);
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, PROXIES_KEY);
  push_proxies(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pop(L, 1);

  luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
  int g = lua_gettop(L);
  static const char *const drop[] = {"dofile", "loadfile", "load", "collectgarbage", "warn"};
  for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++) {
    lua_pushnil(L);
    lua_setfield(L, g, drop[i]);
  }
  lua_getfield(L, g, "setmetatable");
  lua_pushcclosure(L, sandbox_setmetatable, 1);
  lua_setfield(L, g, "setmetatable");
  lua_getfield(L, g, "xpcall");
  lua_pushcclosure(L, sandbox_xpcall, 1);
  lua_setfield(L, g, "xpcall");
  lua_pushcfunction(L, sandbox_print);
  lua_setfield(L, g, "print");
  lua_pushcfunction(L, sandbox_rawset);
  lua_setfield(L, g, "rawset");

  static const struct {
    const char *name;
    lua_CFunction open;
  } libs[] = {{LUA_STRLIBNAME, luaopen_string},
              {LUA_TABLIBNAME, luaopen_table},
              {LUA_MATHLIBNAME, luaopen_math},
              {LUA_UTF8LIBNAME, luaopen_utf8}};
  for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
    luaL_requiref(L, libs[i].name, libs[i].open, 0);
    int lib = lua_gettop(L);
    if (i == 0) {
      guard_string_lib(L, lib);
      lua_pushliteral(L, "");
      lua_getmetatable(L, -1); /* its __index is this very table */
      lua_pushliteral(L, "locked");
      lua_setfield(L, -2, "__metatable");
      lua_pop(L, 2);
    }
    lsandbox_readonly(L, lib, libs[i].name);
    lua_setfield(L, g, libs[i].name);
    lua_pop(L, 1);
  }
  /* drop the loaded-modules table: nothing may require anything */
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  lua_pop(L, 1); /* g */

  if (sb->setup) {
    lua_pushcfunction(L, sb->setup);
    lua_pushlightuserdata(L, sb->setup_ud);
    lua_call(L, 1, 0);
  }
  seal_globals(L);
  return 0;
}

struct lsandbox *lsandbox_new(const char *name, size_t memory, lua_CFunction setup, void *ud,
                              char *err, size_t errcap) {
  struct lsandbox *sb = calloc(1, sizeof *sb);
  if (sb == NULL) {
    snprintf(err, errcap, "out of memory");
    return NULL;
  }
  sb->cap = memory;
  sb->setup = setup;
  sb->setup_ud = ud;
  snprintf(sb->name, sizeof sb->name, "%s", name ? name : "sandbox");
  sb->L = lua_newstate(sandbox_alloc, sb);
  if (sb->L == NULL) {
    snprintf(err, errcap, "cannot create a Lua state within %zu bytes (policyLimits.memory)",
             memory);
    free(sb);
    return NULL;
  }
  lua_atpanic(sb->L, sandbox_panic);
  lua_pushcfunction(sb->L, sandbox_open);
  int rc = lua_pcall(sb->L, 0, 0, 0);
  if (rc != LUA_OK) {
    if (rc == LUA_ERRMEM || sb->refused)
      snprintf(err, errcap, "the sandbox does not fit in %zu bytes (policyLimits.memory)",
               memory);
    else
      snprintf(err, errcap, "%s", lua_type(sb->L, -1) == LUA_TSTRING ? lua_tostring(sb->L, -1)
                                                                      : "sandbox setup failed");
    lsandbox_free(sb);
    return NULL;
  }
  lua_gc(sb->L, LUA_GCCOLLECT, 0);
  return sb;
}

void lsandbox_free(struct lsandbox *sb) {
  if (sb == NULL) return;
  if (sb->L) lua_close(sb->L);
  free(sb);
}
