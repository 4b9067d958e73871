/* console: see console.h. */
#include "console.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <lauxlib.h>

#include "buf.h"
#include "lconsole.h"
#include "log.h"
#include "luaembed.h"

struct session {
  struct loop_io io;
  struct console *c;
  struct session *next;
  unsigned id;
  uid_t uid;
  struct buf in;      /* bytes received, not yet parsed */
  struct buf out;     /* bytes to send */
  size_t out_off;     /* sent part of out */
  struct buf pending; /* an incomplete interactive chunk */
  struct buf printed; /* what the running command printed */
  bool close_after_flush;
};

struct console {
  struct loop *loop;
  lua_State *L;
  char *path;
  int timeout_ms;
  struct loop_io listener;
  struct session *sessions;
  unsigned next_id;
  int repl_ref; /* lua/repl.lua's table in the registry */
  struct log_limit refused_limit;
};

static void session_free(struct session *s) {
  struct console *c = s->c;
  for (struct session **p = &c->sessions; *p; p = &(*p)->next) {
    if (*p == s) {
      *p = s->next;
      break;
    }
  }
  buf_free(&s->in);
  buf_free(&s->out);
  buf_free(&s->pending);
  buf_free(&s->printed);
  free(s);
}

static void session_on_close(struct loop_io *io) {
  struct session *s = io->user;
  log_at(LV_DEBUG, "console_closed", "session=%u", s->id);
  session_free(s);
}

static void send_frame(struct session *s, const char *kind, const char *data, size_t len) {
  char head[48];
  int n = snprintf(head, sizeof head, "%s %zu\n", kind, len);
  buf_append(&s->out, head, (size_t)n);
  buf_append(&s->out, data, len);
  loop_want_write(&s->io);
}

static void sink_print(void *ud, const char *str, size_t len) {
  struct session *s = ud;
  if (s->printed.len + len > CONSOLE_MAX_FRAME / 2) return; /* output cap */
  buf_append(&s->printed, str, len);
}

/* Runs one request in the trusted state and queues the response frames. */
static void evaluate(struct session *s, const char *mode, const char *text, size_t len) {
  struct console *c = s->c;
  lua_State *L = c->L;
  int top = lua_gettop(L);
  bool interactive = strcmp(mode, "line") == 0 || strcmp(mode, "jline") == 0;
  const char *fmt_mode = (strcmp(mode, "json") == 0 || strcmp(mode, "jline") == 0) ? "json" : "text";

  if (interactive) {
    if (s->pending.len) buf_append(&s->pending, "\n", 1);
    buf_append(&s->pending, text, len);
    text = s->pending.data;
    len = s->pending.len;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->repl_ref);
  int repl = lua_gettop(L);
  lua_getfield(L, repl, "compile");
  lua_pushlstring(L, text, len);
  if (lconsole_pcall(L, 1, 3, c->timeout_ms) != LUA_OK) {
    size_t elen;
    const char *e = lua_tolstring(L, -1, &elen);
    send_frame(s, "err", e ? e : "?", e ? elen : 1);
    buf_reset(&s->pending);
    lua_settop(L, top);
    return;
  }
  if (lua_isnil(L, -3)) {
    if (interactive && lua_toboolean(L, -1)) {
      send_frame(s, "more", "", 0);
      lua_settop(L, top);
      return;
    }
    size_t elen;
    const char *e = lua_tolstring(L, -2, &elen);
    log_at(LV_INFO, "console_command", "session=%u uid=%u mode=%s chunk=%.*s err=%s", s->id,
           (unsigned)s->uid, mode, (int)(len > 200 ? 200 : len), text, e);
    send_frame(s, "err", e, elen);
    buf_reset(&s->pending);
    lua_settop(L, top);
    return;
  }
  log_at(LV_INFO, "console_command", "session=%u uid=%u mode=%s chunk=%.*s", s->id,
         (unsigned)s->uid, mode, (int)(len > 200 ? 200 : len), text);
  buf_reset(&s->pending);
  lua_pop(L, 2); /* keep the compiled function */

  /* Run it: print goes to this session. */
  int base = lua_gettop(L);
  buf_reset(&s->printed);
  lconsole_set_sink(L, sink_print, s);
  int st = lconsole_pcall(L, 0, LUA_MULTRET, c->timeout_ms);
  lconsole_set_sink(L, NULL, NULL);
  if (s->printed.len) send_frame(s, "out", s->printed.data, s->printed.len);
  buf_reset(&s->printed);
  if (st != LUA_OK) {
    size_t elen;
    const char *e = lua_tolstring(L, -1, &elen);
    if (e == NULL) e = "(error object is not a string)", elen = strlen(e);
    log_at(LV_INFO, "console_error", "session=%u err=%.*s", s->id, (int)(elen > 300 ? 300 : elen),
           e);
    send_frame(s, "err", e, elen);
    lua_settop(L, top);
    return;
  }
  int nres = lua_gettop(L) - base + 1;
  /* format(mode, n, ...) */
  lua_getfield(L, repl, "format");
  lua_insert(L, base);
  lua_pushstring(L, fmt_mode);
  lua_insert(L, base + 1);
  lua_pushinteger(L, nres);
  lua_insert(L, base + 2);
  if (lconsole_pcall(L, nres + 2, 1, c->timeout_ms) != LUA_OK) {
    size_t elen;
    const char *e = lua_tolstring(L, -1, &elen);
    send_frame(s, "err", e ? e : "?", e ? elen : 1);
  } else {
    size_t rlen;
    const char *r = lua_tolstring(L, -1, &rlen);
    send_frame(s, "ok", r ? r : "", r ? rlen : 0);
  }
  lua_settop(L, top);
}

/* Parses whole frames out of s->in and evaluates them in order. */
static void session_process(struct session *s) {
  size_t off = 0;
  while (off < s->in.len) {
    const char *start = s->in.data + off;
    const char *nl = memchr(start, '\n', s->in.len - off);
    if (nl == NULL) {
      if (s->in.len - off > 64) goto bad;
      break;
    }
    char kind[16];
    size_t len;
    char tail;
    if (nl - start > 40 || sscanf(start, "%15s %zu%c", kind, &len, &tail) != 3 || tail != '\n')
      goto bad;
    if (strcmp(kind, "line") && strcmp(kind, "jline") && strcmp(kind, "eval") &&
        strcmp(kind, "json"))
      goto bad;
    if (len > CONSOLE_MAX_FRAME) {
      static const char msg[] = "console: request too large";
      send_frame(s, "err", msg, sizeof msg - 1);
      s->close_after_flush = true;
      buf_reset(&s->in);
      return;
    }
    size_t head = (size_t)(nl - start) + 1;
    if (s->in.len - off - head < len) break; /* wait for the rest */
    evaluate(s, kind, start + head, len);
    off += head + len;
  }
  buf_consume(&s->in, off);
  return;
bad: {
  static const char msg[] = "console: malformed request (expected \"<line|eval|json> <length>\\n\")";
  send_frame(s, "err", msg, sizeof msg - 1);
  s->close_after_flush = true;
  buf_reset(&s->in);
}
}

static void session_on_readable(struct loop_io *io) {
  struct session *s = io->user;
  for (;;) {
    char tmp[16384];
    ssize_t n = read(io->fd, tmp, sizeof tmp);
    if (n > 0) {
      if (!s->close_after_flush) buf_append(&s->in, tmp, (size_t)n);
      if (s->in.len > CONSOLE_MAX_FRAME + 64) {
        buf_reset(&s->in);
        static const char msg[] = "console: request too large";
        send_frame(s, "err", msg, sizeof msg - 1);
        s->close_after_flush = true;
      }
      continue;
    }
    if (n == 0) { /* peer closed its side; answer what we have, then close */
      session_process(s);
      s->close_after_flush = true;
      if (s->out.len == s->out_off) loop_close(io);
      return;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      loop_close(io);
      return;
    }
    break;
  }
  if (!s->close_after_flush) session_process(s);
}

static void session_on_writable(struct loop_io *io) {
  struct session *s = io->user;
  while (s->out_off < s->out.len) {
    ssize_t n = send(io->fd, s->out.data + s->out_off, s->out.len - s->out_off, MSG_NOSIGNAL);
    if (n > 0) {
      s->out_off += (size_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      loop_want_write(io);
      return;
    }
    loop_close(io);
    return;
  }
  buf_reset(&s->out);
  s->out_off = 0;
  if (s->close_after_flush) loop_close(io);
}

static void listener_on_readable(struct loop_io *io) {
  struct console *c = io->user;
  for (;;) {
    int fd = accept4(io->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        log_limited(&c->refused_limit, LV_WARN, "console_accept_failed", "errno=%d err=%s",
                    errno, strerror(errno));
      return;
    }
    struct ucred cred;
    socklen_t cl = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) != 0 ||
        (cred.uid != geteuid() && cred.uid != 0)) {
      static const char msg[] = "err 42\nconsole: permission denied for this user\n";
      (void)!send(fd, msg, sizeof msg - 1, MSG_NOSIGNAL);
      log_limited(&c->refused_limit, LV_WARN, "console_refused", "uid=%u pid=%d",
                  (unsigned)cred.uid, (int)cred.pid);
      close(fd);
      continue;
    }
    struct session *s = calloc(1, sizeof *s);
    if (s == NULL) {
      close(fd);
      return;
    }
    s->c = c;
    s->id = ++c->next_id;
    s->uid = cred.uid;
    s->io.fd = fd;
    s->io.user = s;
    s->io.on_readable = session_on_readable;
    s->io.on_writable = session_on_writable;
    s->io.on_close = session_on_close;
    s->next = c->sessions;
    c->sessions = s;
    if (loop_watch(c->loop, &s->io) != 0) {
      c->sessions = s->next;
      free(s); /* the loop closed fd */
      continue;
    }
    log_at(LV_DEBUG, "console_opened", "session=%u uid=%u pid=%d", s->id, (unsigned)cred.uid,
           (int)cred.pid);
  }
}

static void listener_on_close(struct loop_io *io) { (void)io; }

/* A socket file left by a node that died is removed; one that answers belongs
 * to a running node and is left alone. */
static int claim_path(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0) return 0;
  if (!S_ISSOCK(st.st_mode)) {
    log_at(LV_ERROR, "console_failed", "path=%s err=%s", path, "exists and is not a socket");
    return -1;
  }
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
    close(fd);
    log_at(LV_ERROR, "console_failed", "path=%s err=%s", path,
           "in use by a running node (stop it or set consoleSocket)");
    return -1;
  }
  if (fd >= 0) close(fd);
  unlink(path);
  return 0;
}

struct console *console_start(struct loop *l, lua_State *L, const char *path, int timeout_ms) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof a.sun_path) {
    log_at(LV_ERROR, "console_failed", "path=%s err=%s", path, "path too long for a Unix socket");
    return NULL;
  }
  if (claim_path(path) != 0) return NULL;
  strcpy(a.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) goto fail;
  /* Create the file without group/other permissions from the start. */
  mode_t old = umask(0177);
  int rc = bind(fd, (struct sockaddr *)&a, sizeof a);
  umask(old);
  if (rc != 0 || chmod(path, 0600) != 0 || listen(fd, 16) != 0) goto fail;

  struct console *c = calloc(1, sizeof *c);
  if (c == NULL) goto fail;
  c->loop = l;
  c->L = L;
  c->path = strdup(path);
  c->timeout_ms = timeout_ms;
  luaembed_require(L, "repl"); /* embedded and tested; raising here is a build bug */
  c->repl_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  c->listener.fd = fd;
  c->listener.user = c;
  c->listener.on_readable = listener_on_readable;
  c->listener.on_close = listener_on_close;
  if (loop_watch(l, &c->listener) != 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, c->repl_ref);
    free(c->path);
    free(c);
    unlink(path);
    log_at(LV_ERROR, "console_failed", "path=%s err=%s", path, "cannot watch the socket");
    return NULL;
  }
  log_at(LV_INFO, "console_listening", "path=%s", path);
  return c;
fail:
  log_at(LV_ERROR, "console_failed", "path=%s err=%s", path, strerror(errno));
  if (fd >= 0) close(fd);
  return NULL;
}

void console_stop(struct console *c) {
  if (c == NULL) return;
  /* The loop is torn down right after; it closes the descriptors. */
  while (c->sessions) {
    struct session *s = c->sessions;
    loop_detach(&s->io);
    session_free(s);
  }
  loop_detach(&c->listener);
  unlink(c->path);
  luaL_unref(c->L, LUA_REGISTRYINDEX, c->repl_ref);
  free(c->path);
  free(c);
}

int console_sessions(const struct console *c) {
  int n = 0;
  for (const struct session *s = c ? c->sessions : NULL; s; s = s->next) n++;
  return n;
}
