/* ltest_sys: what functional specs need from the system and plain Lua lacks:
 * monotonic time, sleeping, spawning and signalling processes, free ports,
 * and raw Unix/TCP client sockets with timeouts. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>

#include "ltest.h"

extern char **environ;

static double now_mono(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, now_mono());
  return 1;
}

static void sleep_s(double s) {
  if (s <= 0) return;
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

static int l_sleep(lua_State *L) {
  sleep_s(luaL_checknumber(L, 1));
  return 0;
}

static int l_getuid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)geteuid());
  return 1;
}

/* spawn{argv = {...}, env = {K = V}, stdout = path, stderr = path, stdin = path} -> pid */
static int l_spawn(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "argv");
  luaL_checktype(L, -1, LUA_TTABLE);
  int argv_idx = lua_gettop(L);
  int argc = (int)luaL_len(L, argv_idx);
  luaL_argcheck(L, argc >= 1, 1, "argv must not be empty");
  char **argv = lua_newuserdatauv(L, sizeof(char *) * (size_t)(argc + 1), 0);
  luaL_checkstack(L, argc + 8, "spawn");
  for (int i = 0; i < argc; i++) { /* the strings stay on the stack while we spawn */
    lua_rawgeti(L, argv_idx, i + 1);
    argv[i] = (char *)luaL_checkstring(L, -1);
  }
  argv[argc] = NULL;

  /* environment: ours, with env = {K = V} overriding */
  size_t nenv = 0;
  while (environ[nenv]) nenv++;
  lua_getfield(L, 1, "env");
  int env_idx = lua_gettop(L);
  size_t nextra = 0;
  if (lua_istable(L, env_idx)) {
    lua_pushnil(L);
    while (lua_next(L, env_idx)) {
      nextra++;
      lua_pop(L, 1);
    }
  }
  char **envp = lua_newuserdatauv(L, sizeof(char *) * (nenv + nextra + 1), 0);
  luaL_checkstack(L, (int)nextra + 8, "spawn");
  size_t k = 0;
  if (nextra) {
    lua_pushnil(L);
    while (lua_next(L, env_idx)) {
      const char *key = luaL_checkstring(L, -2);
      const char *val = luaL_checkstring(L, -1);
      lua_pushfstring(L, "%s=%s", key, val);
      envp[k++] = (char *)lua_tostring(L, -1);
      lua_insert(L, -3); /* keep the string below key/value */
      lua_pop(L, 1);
    }
  }
  for (size_t i = 0; i < nenv; i++) {
    const char *eq = strchr(environ[i], '=');
    bool overridden = false;
    for (size_t j = 0; eq && j < nextra; j++) {
      size_t nl = (size_t)(eq - environ[i]) + 1;
      if (strncmp(envp[j], environ[i], nl) == 0) overridden = true;
    }
    if (!overridden) envp[k++] = environ[i];
  }
  envp[k] = NULL;

  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  static const char *const names[] = {"stdin", "stdout", "stderr"};
  for (int fd = 0; fd < 3; fd++) {
    lua_getfield(L, 1, names[fd]);
    if (lua_isstring(L, -1)) {
      int flags = fd == 0 ? O_RDONLY : O_WRONLY | O_CREAT | O_APPEND;
      posix_spawn_file_actions_addopen(&fa, fd, lua_tostring(L, -1), flags, 0644);
    } else if (fd == 0) {
      posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    }
    lua_pop(L, 1);
  }
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t dfl;
  sigfillset(&dfl);
  posix_spawnattr_setsigdefault(&attr, &dfl);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], &fa, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return luaL_error(L, "spawn %s: %s", argv[0], strerror(rc));
  lua_pushinteger(L, pid);
  return 1;
}

static int signal_number(lua_State *L, int idx) {
  if (lua_isinteger(L, idx)) return (int)lua_tointeger(L, idx);
  static const struct {
    const char *name;
    int sig;
  } sigs[] = {{"TERM", SIGTERM}, {"INT", SIGINT}, {"HUP", SIGHUP}, {"KILL", SIGKILL},
              {"STOP", SIGSTOP}, {"CONT", SIGCONT}, {"USR1", SIGUSR1}, {NULL, 0}};
  const char *n = luaL_checkstring(L, idx);
  for (int i = 0; sigs[i].name; i++)
    if (strcmp(sigs[i].name, n) == 0) return sigs[i].sig;
  return luaL_error(L, "unknown signal %s", n);
}

static int l_kill(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int sig = lua_isnoneornil(L, 2) ? SIGTERM : signal_number(L, 2);
  lua_pushboolean(L, kill(pid, sig) == 0);
  return 1;
}

static void push_status(lua_State *L, int st) {
  lua_newtable(L);
  if (WIFEXITED(st)) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "exited");
    lua_pushinteger(L, WEXITSTATUS(st));
    lua_setfield(L, -2, "code");
  } else if (WIFSIGNALED(st)) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "signaled");
    lua_pushinteger(L, WTERMSIG(st));
    lua_setfield(L, -2, "signal");
  }
}

/* wait(pid, timeout_s) -> status table, or nil on timeout */
static int l_wait(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  double deadline = now_mono() + luaL_optnumber(L, 2, 10.0);
  for (;;) {
    int st;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) {
      push_status(L, st);
      return 1;
    }
    if (r < 0) return luaL_error(L, "waitpid %d: %s", (int)pid, strerror(errno));
    if (now_mono() >= deadline) return 0;
    sleep_s(0.01);
  }
}

static int l_alive(lua_State *L) {
  pid_t pid = (pid_t)luaL_checkinteger(L, 1);
  int st;
  pid_t r = waitpid(pid, &st, WNOHANG);
  lua_pushboolean(L, r == 0);
  return 1;
}

/* A TCP port that was free a moment ago on 127.0.0.1. */
static int l_free_port(lua_State *L) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t al = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
    if (fd >= 0) close(fd);
    return luaL_error(L, "free_port: %s", strerror(errno));
  }
  close(fd);
  lua_pushinteger(L, ntohs(a.sin_port));
  return 1;
}

static int l_stat(lua_State *L) {
  struct stat st;
  if (lstat(luaL_checkstring(L, 1), &st) != 0) return 0;
  lua_newtable(L);
  lua_pushinteger(L, st.st_mode & 07777);
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, (lua_Integer)st.st_uid);
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushstring(L, S_ISSOCK(st.st_mode)  ? "socket"
                    : S_ISDIR(st.st_mode) ? "directory"
                    : S_ISREG(st.st_mode) ? "file"
                                          : "other");
  lua_setfield(L, -2, "type");
  return 1;
}

static int l_chmod(lua_State *L) {
  lua_pushboolean(L, chmod(luaL_checkstring(L, 1), (mode_t)luaL_checkinteger(L, 2)) == 0);
  return 1;
}

/* ---- client connections ---------------------------------------------- */

#define CONN_MT "bt2c.test.conn"

struct conn {
  int fd;
};

static struct conn *checkconn(lua_State *L) {
  struct conn *c = luaL_checkudata(L, 1, CONN_MT);
  luaL_argcheck(L, c->fd >= 0, 1, "connection closed");
  return c;
}

static int push_conn(lua_State *L, int fd) {
  struct conn *c = lua_newuserdatauv(L, sizeof *c, 0);
  c->fd = fd;
  luaL_setmetatable(L, CONN_MT);
  return 1;
}

static int connect_fail(lua_State *L, int fd) {
  int e = errno;
  if (fd >= 0) close(fd);
  luaL_pushfail(L);
  lua_pushstring(L, strerror(e));
  return 2;
}

static int l_unix_connect(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  luaL_argcheck(L, strlen(path) < sizeof a.sun_path, 1, "path too long");
  strcpy(a.sun_path, path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) return connect_fail(L, fd);
  return push_conn(L, fd);
}

static int l_tcp_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) return luaL_error(L, "bad IPv4 address %s", host);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) return connect_fail(L, fd);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return push_conn(L, fd);
}

static int conn_send(lua_State *L) {
  struct conn *c = checkconn(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  size_t off = 0;
  while (off < len) {
    ssize_t n = send(c->fd, s + off, len - off, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      luaL_pushfail(L);
      lua_pushstring(L, strerror(errno));
      return 2;
    }
    off += (size_t)n;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* recv([timeout_s = 5[, max = 65536]]) -> data | nil, "timeout" | nil, "closed" */
static int conn_recv(lua_State *L) {
  struct conn *c = checkconn(L);
  double timeout = luaL_optnumber(L, 2, 5.0);
  lua_Integer max = luaL_optinteger(L, 3, 65536);
  struct pollfd p = {.fd = c->fd, .events = POLLIN};
  int r = poll(&p, 1, (int)(timeout * 1000));
  if (r == 0) {
    luaL_pushfail(L);
    lua_pushliteral(L, "timeout");
    return 2;
  }
  luaL_Buffer b;
  char *buf = luaL_buffinitsize(L, &b, (size_t)max);
  ssize_t n = recv(c->fd, buf, (size_t)max, 0);
  if (n <= 0) {
    luaL_pushfail(L);
    lua_pushstring(L, n == 0 ? "closed" : strerror(errno));
    return 2;
  }
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

static int conn_close(lua_State *L) {
  struct conn *c = luaL_checkudata(L, 1, CONN_MT);
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  return 0;
}

static int conn_shutdown_write(lua_State *L) {
  struct conn *c = checkconn(L);
  shutdown(c->fd, SHUT_WR);
  return 0;
}

/* unix_probe_as(uid, path, data) -> ok, reply_or_error
 * Connects as another user (in a forked child) and reports what happened. */
static int l_unix_probe_as(lua_State *L) {
  uid_t uid = (uid_t)luaL_checkinteger(L, 1);
  const char *path = luaL_checkstring(L, 2);
  size_t dlen;
  const char *data = luaL_checklstring(L, 3, &dlen);
  int pfd[2];
  if (pipe(pfd) != 0) return luaL_error(L, "pipe: %s", strerror(errno));
  pid_t pid = fork();
  if (pid == 0) {
    close(pfd[0]);
    char out[4096];
    int len;
    if (setgid((gid_t)uid) != 0 || setuid(uid) != 0) {
      len = snprintf(out, sizeof out, "Esetuid: %s", strerror(errno));
    } else {
      struct sockaddr_un a = {.sun_family = AF_UNIX};
      snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
      int fd = socket(AF_UNIX, SOCK_STREAM, 0);
      if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        len = snprintf(out, sizeof out, "Econnect: %s", strerror(errno));
      } else {
        (void)!send(fd, data, dlen, MSG_NOSIGNAL); /* a refusal may close it first */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        out[0] = 'R';
        len = 1;
        while (poll(&p, 1, 2000) > 0) {
          ssize_t n = read(fd, out + len, sizeof out - (size_t)len);
          if (n <= 0) break;
          len += (int)n;
        }
      }
    }
    (void)!write(pfd[1], out, (size_t)len);
    _exit(0);
  }
  close(pfd[1]);
  char buf[4096];
  size_t got = 0;
  ssize_t n;
  while ((n = read(pfd[0], buf + got, sizeof buf - got)) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    got += (size_t)n;
  }
  close(pfd[0]);
  waitpid(pid, NULL, 0);
  if (got == 0) return luaL_error(L, "probe child said nothing");
  lua_pushboolean(L, buf[0] == 'R');
  lua_pushlstring(L, buf + 1, got - 1);
  return 2;
}

void ltest_sys(lua_State *L) {
  static const luaL_Reg conn_methods[] = {{"send", conn_send},
                                          {"recv", conn_recv},
                                          {"close", conn_close},
                                          {"shutdown_write", conn_shutdown_write},
                                          {NULL, NULL}};
  if (luaL_newmetatable(L, CONN_MT)) {
    luaL_newlib(L, conn_methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, conn_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"now", l_now},
                                 {"sleep", l_sleep},
                                 {"getuid", l_getuid},
                                 {"spawn", l_spawn},
                                 {"kill", l_kill},
                                 {"wait", l_wait},
                                 {"alive", l_alive},
                                 {"free_port", l_free_port},
                                 {"stat", l_stat},
                                 {"chmod", l_chmod},
                                 {"unix_connect", l_unix_connect},
                                 {"tcp_connect", l_tcp_connect},
                                 {"unix_probe_as", l_unix_probe_as},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
