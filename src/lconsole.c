/* lconsole: see lconsole.h. */
#include "lconsole.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "conf.h"
#include "console.h"
#include "log.h"
#include "luaembed.h"
#include "node.h"
#include "policy.h"

int luaopen_cjson(lua_State *L);

/* Lives in the state's extra space (one pointer). */
struct lconsole_ctx {
  struct node *n;
  lconsole_sink sink;
  void *sink_ud;
  double deadline; /* monotonic seconds; HUGE_VAL when no budget runs */
  int budget_ms;
};

#define HOOK_COUNT 1000

static struct lconsole_ctx *ctx_of(lua_State *L) {
  return *(struct lconsole_ctx **)lua_getextraspace(L);
}

/* Checks the deadline every HOOK_COUNT instructions. Once past it, the hook
 * re-arms on every instruction of this thread, so a pcall in the command can
 * catch the error but cannot run anything afterwards. Coroutines inherit the
 * hook from the thread that creates them, and the main thread keeps it. */
static void budget_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  struct lconsole_ctx *x = ctx_of(L);
  if (log_monotonic() < x->deadline) return;
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
  luaL_error(L, "console command exceeded its time budget of %d ms", x->budget_ms);
}

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int lconsole_pcall(lua_State *L, int nargs, int nres, int timeout_ms) {
  struct lconsole_ctx *x = ctx_of(L);
  int fn = lua_gettop(L) - nargs;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, fn);
  double saved_deadline = x->deadline; /* nested calls keep the outer budget */
  int saved_budget = x->budget_ms;
  double mine = log_monotonic() + timeout_ms / 1000.0;
  if (mine < x->deadline) {
    x->deadline = mine;
    x->budget_ms = timeout_ms;
  }
  int st = lua_pcall(L, nargs, nres, fn);
  x->deadline = saved_deadline;
  x->budget_ms = saved_budget;
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_COUNT);
  lua_remove(L, fn);
  return st;
}

void lconsole_set_sink(lua_State *L, lconsole_sink sink, void *ud) {
  struct lconsole_ctx *x = ctx_of(L);
  x->sink = sink;
  x->sink_ud = ud;
}

/* print: to the console session running the command, else to the log. */
static int l_print(lua_State *L) {
  struct lconsole_ctx *x = ctx_of(L);
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int i = 1; i <= n; i++) {
    if (i > 1) luaL_addchar(&b, '\t');
    luaL_tolstring(L, i, NULL);
    luaL_addvalue(&b);
  }
  if (x->sink) luaL_addchar(&b, '\n');
  luaL_pushresult(&b);
  size_t len;
  const char *s = lua_tolstring(L, -1, &len);
  if (x->sink)
    x->sink(x->sink_ud, s, len);
  else
    log_at(LV_INFO, "lua_print", "msg=%s", s);
  return 0;
}

static int l_os_exit(lua_State *L) {
  return luaL_error(L, "os.exit is disabled in the console; send SIGTERM to stop the node");
}

/* ---- policy ------------------------------------------------------------ */

static struct node *node_of(lua_State *L) { return ctx_of(L)->n; }

static void push_errors(lua_State *L, const struct conf_errors *errs) {
  lua_createtable(L, (int)errs->n, 0);
  for (size_t i = 0; i < errs->n; i++) {
    lua_pushstring(L, errs->msg[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

/* policy.reload() -> {ok = bool, generation = n, errors = {...}} */
static int l_policy_reload(lua_State *L) {
  struct node *n = node_of(L);
  struct conf_errors errs = {0};
  int rc = node_reload_policies(n, &errs);
  lua_createtable(L, 0, 3);
  lua_pushboolean(L, rc == 0);
  lua_setfield(L, -2, "ok");
  lua_pushinteger(L, (lua_Integer)policy_generation(n->policy));
  lua_setfield(L, -2, "generation");
  push_errors(L, &errs);
  lua_setfield(L, -2, "errors");
  conf_errors_free(&errs);
  return 1;
}

static int l_policy_generation(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)policy_generation(node_of(L)->policy));
  return 1;
}

static int l_policy_errors(lua_State *L) {
  policy_push_stats(L, node_of(L)->policy);
  return 1;
}

/* ---- node -------------------------------------------------------------- */

static void setfield_str(lua_State *L, const char *k, const char *v) {
  if (v == NULL) return;
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

static int l_node_info(lua_State *L) {
  struct node *n = node_of(L);
  lua_createtable(L, 0, 12);
  setfield_str(L, "version", BT2C_VERSION);
  lua_pushinteger(L, (lua_Integer)getpid());
  lua_setfield(L, -2, "pid");
  lua_pushnumber(L, log_monotonic() - n->started);
  lua_setfield(L, -2, "uptime");
  setfield_str(L, "config", n->conf.path);
  setfield_str(L, "dataDir", n->conf.dataDir);
  setfield_str(L, "policyDir", n->conf.policyDir);
  setfield_str(L, "consoleSocket", n->conf.consoleSocket);
  setfield_str(L, "networkId", n->conf.networkId);
  setfield_str(L, "logLevel", log_level_name(log_get_level()));
  lua_pushinteger(L, console_sessions(n->console));
  lua_setfield(L, -2, "consoleSessions");
  lua_pushinteger(L, (lua_Integer)policy_generation(n->policy));
  lua_setfield(L, -2, "policyGeneration");
  return 1;
}

static int l_node_set_log_level(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  int level = log_level_parse(name);
  if (level < 0) return luaL_error(L, "unknown log level '%s' (debug, info, warn, error)", name);
  log_set_level(level);
  log_at(LV_INFO, "log_level", "level=%s", name);
  return 0;
}

static int l_node_config(lua_State *L) {
  conf_push(L, &node_of(L)->conf);
  return 1;
}

static void register_lib(lua_State *L, const char *name, const luaL_Reg *fns) {
  lua_newtable(L);
  luaL_setfuncs(L, fns, 0);
  lua_setglobal(L, name);
}

static void *trusted_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

/* Runs in protected mode: any allocation failure is reported, not fatal. */
static int open_all(lua_State *L) {
  luaL_openlibs(L);
  luaembed_install_searcher(L);
  luaL_requiref(L, "cjson", luaopen_cjson, 0);
  lua_pop(L, 1);

  lua_pushcfunction(L, l_print);
  lua_setglobal(L, "print");
  lua_getglobal(L, "os");
  lua_pushcfunction(L, l_os_exit);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);

  static const luaL_Reg policy_fns[] = {{"reload", l_policy_reload},
                                        {"generation", l_policy_generation},
                                        {"errors", l_policy_errors},
                                        {NULL, NULL}};
  register_lib(L, "policy", policy_fns);
  static const luaL_Reg node_fns[] = {{"info", l_node_info},
                                      {"set_log_level", l_node_set_log_level},
                                      {"config", l_node_config},
                                      {NULL, NULL}};
  register_lib(L, "node", node_fns);
  conf_push(L, &node_of(L)->conf);
  lua_setglobal(L, "config");
  return 0;
}

lua_State *lconsole_open(struct node *n) {
  struct lconsole_ctx *x = calloc(1, sizeof *x);
  lua_State *L = x ? lua_newstate(trusted_alloc, NULL) : NULL;
  if (L == NULL) {
    free(x);
    log_at(LV_ERROR, "lua_failed", "err=%s", "cannot create the trusted state");
    return NULL;
  }
  x->n = n;
  x->deadline = HUGE_VAL;
  *(struct lconsole_ctx **)lua_getextraspace(L) = x;
  lua_pushcfunction(L, open_all);
  if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
    log_at(LV_ERROR, "lua_failed", "err=%s", lua_tostring(L, -1));
    lconsole_close(L);
    return NULL;
  }
  lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_COUNT);
  return L;
}

void lconsole_close(lua_State *L) {
  if (L == NULL) return;
  struct lconsole_ctx *x = ctx_of(L);
  lua_close(L);
  free(x);
}
