/* conf: see conf.h.
 *
 * The division of labour: this file reads the file, owns the temporary
 * lua_State (its allocator caps memory) and copies the checked table into
 * struct conf; lua/conf.lua holds the schema, evaluates the text and checks
 * it. The temporary state never outlives conf_load.
 */
#include "conf.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "log.h"
#include "luaembed.h"

#define CONF_MEMORY_CAP ((size_t)32 << 20)  /* the whole temporary state */
#define CONF_INSTRUCTIONS 1000000           /* evaluating the file */
#define CONF_MAX_FILE ((size_t)1 << 20)     /* a config this big is a mistake */

/* ---- errors ------------------------------------------------------------ */

static void conf_errf(struct conf_errors *errs, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void conf_errf(struct conf_errors *errs, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  char *msg = malloc((size_t)n + 1);
  char **grown = realloc(errs->msg, (errs->n + 1) * sizeof *errs->msg);
  if (msg == NULL || grown == NULL) { /* nothing better to do than drop it */
    free(msg);
    if (grown) errs->msg = grown;
    return;
  }
  errs->msg = grown;
  va_start(ap, fmt);
  vsnprintf(msg, (size_t)n + 1, fmt, ap);
  va_end(ap);
  errs->msg[errs->n++] = msg;
}

void conf_errors_free(struct conf_errors *errs) {
  for (size_t i = 0; i < errs->n; i++) free(errs->msg[i]);
  free(errs->msg);
  errs->msg = NULL;
  errs->n = 0;
}

/* ---- the temporary state's allocator ------------------------------------ */

struct conf_mem {
  size_t used, cap;
};

/* Refuses growth past the cap; frees and shrinks always succeed, as Lua
 * requires. */
static void *conf_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  struct conf_mem *m = ud;
  size_t old = ptr ? osize : 0; /* for new blocks osize is a type tag */
  if (nsize == 0) {
    free(ptr);
    m->used -= old;
    return NULL;
  }
  if (nsize > old && nsize - old > m->cap - m->used) return NULL;
  void *p = realloc(ptr, nsize);
  if (p == NULL) return nsize <= old ? ptr : NULL;
  m->used = m->used - old + nsize;
  return p;
}

/* ---- reading the file --------------------------------------------------- */

/* Reads path into *text (NUL-terminated). Returns 0, or an errno value
 * (EFBIG for a file over CONF_MAX_FILE). */
static int conf_read_file(const char *path, char **text, size_t *len) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  struct stat st;
  int e = fstat(fd, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
  if (e != 0) {
    close(fd);
    return e;
  }
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  if (buf == NULL) e = ENOMEM;
  while (e == 0) {
    if (n + 1 >= cap) {
      if (cap > CONF_MAX_FILE) {
        e = EFBIG;
        break;
      }
      char *grown = realloc(buf, cap * 2);
      if (grown == NULL) {
        e = ENOMEM;
        break;
      }
      buf = grown;
      cap *= 2;
    }
    ssize_t r = read(fd, buf + n, cap - n - 1);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) e = errno;
    if (r <= 0) break;
    n += (size_t)r;
  }
  close(fd);
  if (e == 0 && n > CONF_MAX_FILE) e = EFBIG;
  if (e != 0) {
    free(buf);
    return e;
  }
  buf[n] = '\0';
  *text = buf;
  *len = n;
  return 0;
}

static char *conf_getcwd(void) {
  char buf[PATH_MAX];
  return getcwd(buf, sizeof buf) ? strdup(buf) : NULL;
}

/* The absolute, symlink-free directory of an existing file. */
static char *conf_file_dir(const char *path) {
  char *real = realpath(path, NULL);
  if (real == NULL) return NULL;
  char *slash = strrchr(real, '/');
  if (slash == real) slash[1] = '\0';
  else if (slash) *slash = '\0';
  return real;
}

/* ---- copying the checked table into struct conf --------------------------
 * These run inside the protected call: a type mismatch is a bug in conf.lua
 * and raises; every allocation is recorded in c at once, so conf_free cleans
 * up whatever was filled before an error. */

static void *conf_check_alloc(lua_State *L, void *p) {
  if (p == NULL) luaL_error(L, "out of memory");
  return p;
}

static char *conf_dup(lua_State *L, const char *s) {
  return conf_check_alloc(L, strdup(s));
}

/* [-0, +0, e] */
static lua_Integer conf_int(lua_State *L, int t, const char *k, lua_Integer lo, lua_Integer hi) {
  lua_getfield(L, t, k);
  int isint;
  lua_Integer v = lua_tointegerx(L, -1, &isint);
  if (!isint || v < lo || v > hi) luaL_error(L, "checked config: %s is not an integer in range", k);
  lua_pop(L, 1);
  return v;
}

/* [-0, +0, e] */
static double conf_num(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "checked config: %s is not a number", k);
  double v = lua_tonumber(L, -1);
  lua_pop(L, 1);
  return v;
}

/* [-0, +0, e] NULL when absent and optional. */
static char *conf_str(lua_State *L, int t, const char *k, bool optional) {
  lua_getfield(L, t, k);
  char *s = NULL;
  if (lua_type(L, -1) == LUA_TSTRING) s = conf_dup(L, lua_tostring(L, -1));
  else if (!(optional && lua_isnil(L, -1))) luaL_error(L, "checked config: %s is not a string", k);
  lua_pop(L, 1);
  return s;
}

/* [-0, +0, e] */
static bool conf_bool(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  if (!lua_isboolean(L, -1)) luaL_error(L, "checked config: %s is not a boolean", k);
  bool v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* [-0, +1, e] Pushes sub-table k of t and returns its index. */
static int conf_sub(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  if (!lua_istable(L, -1)) luaL_error(L, "checked config: %s is not a table", k);
  return lua_gettop(L);
}

/* [-0, +0, e] */
static char **conf_strlist(lua_State *L, int t, const char *k, size_t *n) {
  int l = conf_sub(L, t, k);
  size_t len = (size_t)luaL_len(L, l);
  char **v = conf_check_alloc(L, calloc(len ? len : 1, sizeof *v));
  *n = len;
  for (size_t i = 0; i < len; i++) {
    lua_rawgeti(L, l, (lua_Integer)i + 1);
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "checked config: %s[%d] is not a string", k, (int)i + 1);
    v[i] = strdup(lua_tostring(L, -1));
    if (v[i] == NULL) luaL_error(L, "out of memory");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return v;
}

static void conf_fill(lua_State *L, int t, struct conf *c) {
  c->port = (int)conf_int(L, t, "port", 0, 65535);
  c->host = conf_str(L, t, "host", false);
  c->maxPeers = (int)conf_int(L, t, "maxPeers", 0, INT_MAX);
  c->maxInbound = (int)conf_int(L, t, "maxInbound", 0, INT_MAX);
  c->maxOutbound = (int)conf_int(L, t, "maxOutbound", 0, INT_MAX);
  c->connectionTimeout = (int)conf_int(L, t, "connectionTimeout", 1, INT_MAX);
  c->handshakeTimeout = (int)conf_int(L, t, "handshakeTimeout", 1, INT_MAX);
  c->pingInterval = (int)conf_int(L, t, "pingInterval", 1, INT_MAX);
  c->peerDiscoveryInterval = (int)conf_int(L, t, "peerDiscoveryInterval", 1, INT_MAX);
  c->bootstrapPeers = conf_strlist(L, t, "bootstrapPeers", &c->n_bootstrapPeers);
  c->validators = conf_strlist(L, t, "validators", &c->n_validators);
  c->persistentPeers = conf_strlist(L, t, "persistentPeers", &c->n_persistentPeers);
  c->nodeId = conf_str(L, t, "nodeId", true);

  int s = conf_sub(L, t, "nodeMetadata");
  c->metaVersion = conf_str(L, s, "version", false);
  c->isValidator = conf_bool(L, s, "isValidator");
  lua_pop(L, 1);

  s = conf_sub(L, t, "peerScoring");
  c->peerScoring.decayPeriod = conf_num(L, s, "decayPeriod");
  c->peerScoring.decayFactor = conf_num(L, s, "decayFactor");
  c->peerScoring.historyLimit = (int)conf_int(L, s, "historyLimit", 0, INT_MAX);
  int w = conf_sub(L, s, "weights");
  for (int cat = 0; cat < SCORE_NCATEGORIES; cat++)
    c->peerScoring.weights[cat] = conf_num(L, w, conf_category_name((enum score_category)cat));
  lua_pop(L, 1);
  int th = conf_sub(L, s, "thresholds");
  c->peerScoring.trusted = conf_num(L, th, "trusted");
  c->peerScoring.neutral = conf_num(L, th, "neutral");
  c->peerScoring.banned = conf_num(L, th, "banned");
  lua_pop(L, 2);

  s = conf_sub(L, t, "natTraversal");
  c->natTraversal.stunServers = conf_strlist(L, s, "stunServers", &c->natTraversal.n_stunServers);
  int ts = conf_sub(L, s, "turnServers");
  size_t nturn = (size_t)luaL_len(L, ts);
  c->natTraversal.turnServers =
      conf_check_alloc(L, calloc(nturn ? nturn : 1, sizeof *c->natTraversal.turnServers));
  c->natTraversal.n_turnServers = nturn;
  for (size_t i = 0; i < nturn; i++) {
    lua_rawgeti(L, ts, (lua_Integer)i + 1);
    int item = lua_gettop(L);
    if (!lua_istable(L, item)) luaL_error(L, "checked config: turnServers[%d] is not a table", (int)i + 1);
    struct conf_turn_server *srv = &c->natTraversal.turnServers[i];
    srv->urls = conf_str(L, item, "urls", false);
    srv->username = conf_str(L, item, "username", false);
    srv->credential = conf_str(L, item, "credential", false);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  c->natTraversal.preferredMethod = conf_str(L, s, "preferredMethod", false);
  c->natTraversal.candidatePreference = conf_str(L, s, "candidatePreference", false);
  c->natTraversal.stunRto = (int)conf_int(L, s, "stunRto", 10, 60000);
  c->natTraversal.stunRetransmissions = (int)conf_int(L, s, "stunRetransmissions", 1, 16);
  c->natTraversal.stunRefreshInterval = (int)conf_int(L, s, "stunRefreshInterval", 1000, 86400000);
  lua_pop(L, 1);

  s = conf_sub(L, t, "messageRelay");
  c->messageRelay.maxRelayHops = (int)conf_int(L, s, "maxRelayHops", 1, 255);
  lua_getfield(L, s, "relayMode");
  const char *mode = lua_tostring(L, -1);
  if (mode && strcmp(mode, "flood") == 0) c->messageRelay.relayMode = RELAY_FLOOD;
  else if (mode && strcmp(mode, "selective") == 0) c->messageRelay.relayMode = RELAY_SELECTIVE;
  else if (mode && strcmp(mode, "validator_only") == 0) c->messageRelay.relayMode = RELAY_VALIDATOR_ONLY;
  else luaL_error(L, "checked config: bad relayMode");
  lua_pop(L, 1);
  c->messageRelay.relayThreshold = conf_num(L, s, "relayThreshold");
  c->messageRelay.messageExpiration = conf_num(L, s, "messageExpiration");
  c->messageRelay.cleanupInterval = conf_num(L, s, "cleanupInterval");
  c->messageRelay.seenCacheSize = (unsigned)conf_int(L, s, "seenCacheSize", 1024, 16777216);
  lua_pop(L, 1);

  c->dataDir = conf_str(L, t, "dataDir", false);
  c->policyDir = conf_str(L, t, "policyDir", false);
  c->consoleSocket = conf_str(L, t, "consoleSocket", false);
  c->networkId = conf_str(L, t, "networkId", false);
  s = conf_sub(L, t, "metrics");
  c->metrics.host = conf_str(L, s, "host", false);
  c->metrics.port = (int)conf_int(L, s, "port", 0, 65535);
  lua_pop(L, 1);
  s = conf_sub(L, t, "tls");
  c->tls.cert = conf_str(L, s, "cert", true);
  c->tls.key = conf_str(L, s, "key", true);
  lua_pop(L, 1);

  lua_getfield(L, t, "logLevel");
  int level = lua_isstring(L, -1) ? log_level_parse(lua_tostring(L, -1)) : -1;
  if (level < 0 || level == LV_OFF) luaL_error(L, "checked config: bad logLevel");
  c->logLevel = level;
  lua_pop(L, 1);
  c->maxMessageSize = (size_t)conf_int(L, t, "maxMessageSize", 1, LUA_MAXINTEGER);
  c->consoleTimeout = (int)conf_int(L, t, "consoleTimeout", 1, INT_MAX);
  s = conf_sub(L, t, "policyLimits");
  c->policyLimits.instructions = (long)conf_int(L, s, "instructions", 1, LONG_MAX);
  c->policyLimits.time = (int)conf_int(L, s, "time", 1, INT_MAX);
  c->policyLimits.memory = (size_t)conf_int(L, s, "memory", 1, LUA_MAXINTEGER);
  c->policyLimits.failures = (int)conf_int(L, s, "failures", 1, INT_MAX);
  lua_pop(L, 1);
}

/* ---- the protected run -------------------------------------------------- */

struct conf_job {
  const char *path; /* NULL: defaults */
  const char *text;
  size_t len;
  struct conf *c;
  struct conf_errors *errs;
  bool ok;
};

/* [-0, +0, e] The whole load, inside lua_pcall: a memory error anywhere,
 * even while opening the libraries, comes back as a status. */
static int conf_run(lua_State *L) {
  struct conf_job *job = lua_touserdata(L, 1);
  luaL_openlibs(L);
  luaembed_install_searcher(L);
  luaembed_require(L, "conf");
  lua_getfield(L, -1, "load");
  if (job->text) lua_pushlstring(L, job->text, job->len);
  else lua_pushnil(L);
  if (job->path) lua_pushstring(L, job->path);
  else lua_pushnil(L);
  lua_pushstring(L, job->c->dir);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, CONF_INSTRUCTIONS);
  lua_setfield(L, -2, "instructions");
  lua_pushinteger(L, (lua_Integer)CONF_MEMORY_CAP);
  lua_setfield(L, -2, "memory");
  lua_call(L, 4, 2);
  if (lua_isnil(L, -2)) {
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      conf_errf(job->errs, "%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
      lua_pop(L, 1);
    }
    if (n == 0) conf_errf(job->errs, "%s: rejected without a reason", job->path ? job->path : "config");
    return 0;
  }
  conf_fill(L, lua_absindex(L, -2), job->c);
  job->c->normalized = conf_dup(L, luaL_checkstring(L, -1));
  job->ok = true;
  return 0;
}

int conf_load(struct conf *c, const char *path, bool optional, struct conf_errors *errs) {
  memset(c, 0, sizeof *c);
  char *text = NULL;
  size_t len = 0;
  if (path) {
    int e = conf_read_file(path, &text, &len);
    if (e == EFBIG) {
      conf_errf(errs, "%s: the file is larger than %zu bytes; a configuration is a short table",
                path, CONF_MAX_FILE);
      return -1;
    }
    if (e != 0 && !(e == ENOENT && optional)) {
      conf_errf(errs, "%s: cannot open: %s", path, strerror(e));
      return -1;
    }
  }
  const char *src = text ? path : NULL;
  if (src) {
    c->path = strdup(path);
    c->dir = conf_file_dir(path);
  } else {
    c->dir = conf_getcwd();
  }
  if ((src && c->path == NULL) || c->dir == NULL) {
    conf_errf(errs, "%s: cannot resolve the configuration's directory: %s",
              path ? path : "(defaults)", strerror(errno));
    free(text);
    conf_free(c);
    return -1;
  }

  struct conf_mem mem = {0, CONF_MEMORY_CAP};
  struct conf_job job = {src, text, len, c, errs, false};
  lua_State *L = lua_newstate(conf_alloc, &mem);
  if (L == NULL) {
    conf_errf(errs, "%s: out of memory", path ? path : "(defaults)");
  } else {
    lua_pushcfunction(L, conf_run);
    lua_pushlightuserdata(L, &job);
    int st = lua_pcall(L, 1, 0, 0);
    if (st == LUA_ERRMEM) {
      conf_errf(errs, "%s: the configuration is too large to check within %zu MiB",
                path ? path : "(defaults)", CONF_MEMORY_CAP >> 20);
    } else if (st != LUA_OK) {
      const char *msg = lua_tostring(L, -1);
      conf_errf(errs, "%s: internal error in the configuration checker: %s",
                path ? path : "(defaults)", msg ? msg : "?");
    }
    if (st != LUA_OK) job.ok = false;
    lua_close(L);
  }
  free(text);
  if (!job.ok) {
    conf_free(c);
    return -1;
  }
  return 0;
}

void conf_free(struct conf *c) {
  free(c->path);
  free(c->dir);
  free(c->host);
  for (size_t i = 0; i < c->n_bootstrapPeers; i++) free(c->bootstrapPeers[i]);
  free(c->bootstrapPeers);
  for (size_t i = 0; i < c->n_validators; i++) free(c->validators[i]);
  free(c->validators);
  for (size_t i = 0; i < c->n_persistentPeers; i++) free(c->persistentPeers[i]);
  free(c->persistentPeers);
  free(c->nodeId);
  free(c->metaVersion);
  for (size_t i = 0; i < c->natTraversal.n_stunServers; i++) free(c->natTraversal.stunServers[i]);
  free(c->natTraversal.stunServers);
  for (size_t i = 0; i < c->natTraversal.n_turnServers; i++) {
    free(c->natTraversal.turnServers[i].urls);
    free(c->natTraversal.turnServers[i].username);
    free(c->natTraversal.turnServers[i].credential);
  }
  free(c->natTraversal.turnServers);
  free(c->natTraversal.preferredMethod);
  free(c->natTraversal.candidatePreference);
  free(c->dataDir);
  free(c->policyDir);
  free(c->consoleSocket);
  free(c->networkId);
  free(c->metrics.host);
  free(c->tls.cert);
  free(c->tls.key);
  free(c->normalized);
  memset(c, 0, sizeof *c);
}

/* ---- conf_push ----------------------------------------------------------- */

struct conf_reader {
  const char *parts[2];
  size_t lens[2];
  int next;
};

static const char *conf_read_parts(lua_State *L, void *ud, size_t *size) {
  struct conf_reader *r = ud;
  if (r->next >= 2) {
    *size = 0;
    return NULL;
  }
  *size = r->lens[r->next];
  return r->parts[r->next++];
}

void conf_push(lua_State *L, const struct conf *c) {
  if (c->normalized == NULL) {
    lua_newtable(L);
    return;
  }
  /* "return " .. normalized, without copying it */
  struct conf_reader r = {{"return ", c->normalized}, {7, strlen(c->normalized)}, 0};
  int st = lua_load(L, conf_read_parts, &r, "=config", "t");
  if (st == LUA_ERRMEM) lua_error(L);
  if (st != LUA_OK) { /* cannot happen: conf.lua wrote it */
    lua_pop(L, 1);
    lua_newtable(L);
    return;
  }
  lua_newtable(L); /* an empty _ENV: the chunk is a constructor and needs none */
  lua_setupvalue(L, -2, 1);
  lua_call(L, 0, 1);
}

const char *conf_relay_mode_name(enum relay_mode m) {
  switch (m) {
    case RELAY_FLOOD: return "flood";
    case RELAY_SELECTIVE: return "selective";
    case RELAY_VALIDATOR_ONLY: return "validator_only";
  }
  return "?";
}

const char *conf_category_name(enum score_category cat) {
  static const char *const names[SCORE_NCATEGORIES] = {
      "latency", "uptime", "blockPropagation", "transactionRelay", "validatorStatus", "behavior"};
  return (cat >= 0 && cat < SCORE_NCATEGORIES) ? names[cat] : "?";
}
