/* cli_console: see cli_console.h. Exit status: 0 success, 1 the chunk raised
 * an error, 2 no console to talk to (or a broken conversation). */
#include "cli_console.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <editline/readline.h>

#include "buf.h"
#include "conf.h"

#define REPLY_TIMEOUT_MS 120000

struct client {
  int fd;
  struct buf in;
  bool json;
};

static int send_frame(struct client *c, const char *kind, const char *data, size_t len) {
  char head[48];
  int n = snprintf(head, sizeof head, "%s %zu\n", kind, len);
  struct part {
    const char *p;
    size_t n;
  } parts[2] = {{head, (size_t)n}, {data, len}};
  for (int i = 0; i < 2; i++) {
    size_t off = 0;
    while (off < parts[i].n) {
      ssize_t w = send(c->fd, parts[i].p + off, parts[i].n - off, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return -1;
      off += (size_t)w;
    }
  }
  return 0;
}

/* Reads one frame; kind gets its name and *payload/len its body (in c->in,
 * valid until the next call). Returns 0, or -1 if the node went away. */
static int read_frame(struct client *c, char kind[16], const char **payload, size_t *len,
                      size_t *consumed) {
  buf_consume(&c->in, *consumed);
  *consumed = 0;
  for (;;) {
    char *nl = c->in.len ? memchr(c->in.data, '\n', c->in.len) : NULL;
    if (nl) {
      char tail;
      if (sscanf(c->in.data, "%15s %zu%c", kind, len, &tail) != 3 || tail != '\n') return -1;
      size_t head = (size_t)(nl - c->in.data) + 1;
      if (c->in.len >= head + *len) {
        *payload = c->in.data + head;
        *consumed = head + *len;
        return 0;
      }
    }
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    int r = poll(&p, 1, REPLY_TIMEOUT_MS);
    if (r == 0) {
      fprintf(stderr, "bt2cd console: no reply from the node within %d s\n",
              REPLY_TIMEOUT_MS / 1000);
      return -1;
    }
    char tmp[65536];
    ssize_t n = read(c->fd, tmp, sizeof tmp);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    buf_append(&c->in, tmp, (size_t)n);
  }
}

/* Sends one request and prints the reply. Returns 0 ok, 1 Lua error,
 * 2 connection lost, 3 "more" (the chunk is incomplete). */
static int exchange(struct client *c, const char *kind, const char *chunk) {
  if (send_frame(c, kind, chunk, strlen(chunk)) != 0) {
    fprintf(stderr, "bt2cd console: the node closed the connection\n");
    return 2;
  }
  size_t consumed = 0;
  for (;;) {
    char fk[16];
    const char *p;
    size_t len;
    if (read_frame(c, fk, &p, &len, &consumed) != 0) {
      fprintf(stderr, "bt2cd console: the node closed the connection\n");
      return 2;
    }
    if (strcmp(fk, "out") == 0) {
      /* In --json mode stdout carries only the JSON document. */
      fwrite(p, 1, len, c->json ? stderr : stdout);
      continue;
    }
    int rc;
    if (strcmp(fk, "ok") == 0) {
      fwrite(p, 1, len, stdout);
      if (len || c->json) fputc('\n', stdout);
      rc = 0;
    } else if (strcmp(fk, "err") == 0) {
      fwrite(p, 1, len, stderr);
      fputc('\n', stderr);
      rc = 1;
    } else if (strcmp(fk, "more") == 0) {
      rc = 3;
    } else {
      fprintf(stderr, "bt2cd console: unexpected reply '%s'\n", fk);
      rc = 2;
    }
    fflush(stdout);
    buf_consume(&c->in, consumed);
    return rc;
  }
}

static char *history_path(void) {
  const char *home = getenv("HOME");
  if (home == NULL || *home == '\0') return NULL;
  size_t n = strlen(home) + 32;
  char *p = malloc(n);
  if (p) snprintf(p, n, "%s/.bt2cd_history", home);
  return p;
}

static int interactive(struct client *c) {
  const char *kind = c->json ? "jline" : "line";
  bool tty = isatty(STDIN_FILENO);
  char *hist = tty ? history_path() : NULL;
  if (hist) read_history(hist);
  bool more = false;
  int last = 0;
  for (;;) {
    char *line = NULL;
    if (tty) {
      line = readline(more ? ">> " : "bt2c> ");
    } else {
      size_t cap = 0;
      ssize_t n = getline(&line, &cap, stdin);
      if (n < 0) {
        free(line);
        line = NULL;
      } else if (n > 0 && line[n - 1] == '\n') {
        line[n - 1] = '\0';
      }
    }
    if (line == NULL) break;
    if (tty && *line) add_history(line);
    int rc = exchange(c, kind, line);
    free(line);
    if (rc == 2) {
      last = 2;
      break;
    }
    more = rc == 3;
    last = rc == 3 ? 0 : rc;
  }
  if (tty) fputc('\n', stdout);
  if (hist) {
    write_history(hist);
    free(hist);
  }
  return tty ? 0 : last;
}

static void usage(FILE *f) {
  fputs("usage: bt2cd console [--socket PATH | --config FILE] [-e CHUNK] [--json]\n"
        "  -e CHUNK   evaluate one chunk, print its results and exit\n"
        "             (status 0, or 1 with the error on stderr)\n"
        "  --json     print results as one JSON document\n",
        f);
}

int cli_console_main(int argc, char **argv) {
  const char *socket_path = NULL, *config = NULL, *chunk = NULL;
  bool json = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool has_value = i + 1 < argc;
    if (strcmp(a, "--socket") == 0 && has_value) {
      socket_path = argv[++i];
    } else if ((strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) && has_value) {
      config = argv[++i];
    } else if (strcmp(a, "-e") == 0 && has_value) {
      chunk = argv[++i];
    } else if (strcmp(a, "--json") == 0) {
      json = true;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "bt2cd console: bad argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
  }

  struct conf conf;
  memset(&conf, 0, sizeof conf);
  if (socket_path == NULL) {
    struct conf_errors errs = {0};
    const char *path = config ? config : "conf/bt2cd.lua";
    if (conf_load(&conf, path, config == NULL, &errs) != 0) {
      for (size_t i = 0; i < errs.n; i++) fprintf(stderr, "%s\n", errs.msg[i]);
      conf_errors_free(&errs);
      return 2;
    }
    socket_path = conf.consoleSocket;
  }

  struct client c = {.fd = -1, .json = json};
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  if (strlen(socket_path) >= sizeof a.sun_path) {
    fprintf(stderr, "bt2cd console: socket path too long: %s\n", socket_path);
    conf_free(&conf);
    return 2;
  }
  strcpy(a.sun_path, socket_path);
  c.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (c.fd < 0 || connect(c.fd, (struct sockaddr *)&a, sizeof a) != 0) {
    fprintf(stderr, "bt2cd console: cannot connect to %s: %s (is the node running?)\n",
            socket_path, strerror(errno));
    if (c.fd >= 0) close(c.fd);
    conf_free(&conf);
    return 2;
  }
  conf_free(&conf);

  int rc;
  if (chunk) {
    rc = exchange(&c, json ? "json" : "eval", chunk);
    if (rc == 3) rc = 1;
  } else {
    rc = interactive(&c);
  }
  close(c.fd);
  buf_free(&c.in);
  return rc;
}
