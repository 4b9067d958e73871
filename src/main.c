/* main: the command line of bt2cd, signals, and the run loop.
 * Signal handlers only set a flag and wake the loop through a pipe; the loop
 * acts on the flags between service passes. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_console.h"
#include "conf.h"
#include "log.h"
#include "node.h"
#include "policy.h"

#define DEFAULT_CONFIG "conf/bt2cd.lua"

static volatile sig_atomic_t want_stop, want_reload;
static int wake_fd = -1; /* write end of the self-pipe */

static void on_signal(int sig) {
  int saved = errno;
  if (sig == SIGHUP)
    want_reload = 1;
  else
    want_stop = 1;
  if (wake_fd >= 0) (void)!write(wake_fd, "x", 1);
  errno = saved;
}

static void usage(FILE *f) {
  fputs("usage: bt2cd [--config FILE] [--log-level LEVEL]     run a node in the foreground\n"
        "       bt2cd --check-config [--config FILE]          check the configuration\n"
        "       bt2cd --check-policies [DIR]                  check a policy directory\n"
        "       bt2cd console [--socket PATH | --config FILE] [-e CHUNK] [--json]\n"
        "       bt2cd --version | --help\n"
        "\n"
        "The default configuration file is " DEFAULT_CONFIG " (defaults apply if it is absent).\n"
        "SIGHUP reloads the policies; SIGTERM or SIGINT stops the node.\n",
        f);
}

static void print_errors(const struct conf_errors *errs) {
  for (size_t i = 0; i < errs->n; i++) fprintf(stderr, "%s\n", errs->msg[i]);
}

/* Loads the config given with --config, or the default one if present. */
static int load_conf(struct conf *c, const char *path, bool report) {
  struct conf_errors errs = {0};
  int rc = conf_load(c, path ? path : DEFAULT_CONFIG, path == NULL, &errs);
  if (rc != 0 && report) print_errors(&errs);
  conf_errors_free(&errs);
  return rc;
}

static void drain_wake(struct loop_io *io) {
  char tmp[64];
  while (read(io->fd, tmp, sizeof tmp) > 0) {
  }
}

static void after_service(void *arg) {
  struct node *n = arg;
  if (want_reload) {
    want_reload = 0;
    log_at(LV_INFO, "signal", "sig=HUP action=reload");
    struct conf_errors errs = {0};
    node_reload_policies(n, &errs);
    conf_errors_free(&errs);
  }
  if (want_stop) {
    log_at(LV_INFO, "signal", "action=stop");
    n->loop.stop = true;
  }
}

static int run_node(const char *config, const char *log_level) {
  struct conf c;
  if (load_conf(&c, config, true) != 0) return 1;
  log_set_level(c.logLevel);
  if (log_level) log_set_level(log_level_parse(log_level));

  int pfd[2];
  if (pipe2(pfd, O_NONBLOCK | O_CLOEXEC) != 0) {
    log_at(LV_ERROR, "start_failed", "err=%s", strerror(errno));
    conf_free(&c);
    return 1;
  }
  wake_fd = pfd[1];
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGHUP, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);

  struct node n;
  if (node_start(&n, &c) != 0) {
    close(pfd[0]);
    close(pfd[1]);
    return 1;
  }
  struct loop_io wake = {.fd = pfd[0], .on_readable = drain_wake};
  if (loop_watch(&n.loop, &wake) != 0) {
    log_at(LV_ERROR, "start_failed", "err=%s", "cannot watch the signal pipe");
    node_stop(&n);
    return 1;
  }
  loop_run(&n.loop, after_service, &n);
  loop_detach(&wake);
  node_stop(&n);
  wake_fd = -1;
  close(pfd[1]);
  log_at(LV_INFO, "node_stopped", "exit=%d", 0);
  return 0;
}

static int check_config(const char *config) {
  struct conf c;
  struct conf_errors errs = {0};
  int rc = conf_load(&c, config ? config : DEFAULT_CONFIG, config == NULL, &errs);
  if (rc != 0) {
    print_errors(&errs);
    conf_errors_free(&errs);
    return 1;
  }
  printf("%s: ok\n", c.path ? c.path : "(defaults)");
  conf_free(&c);
  return 0;
}

static int check_policies(const char *dir, const char *config) {
  struct conf c;
  if (load_conf(&c, config, true) != 0) return 1;
  struct policy_limits lim = {c.policyLimits.instructions, c.policyLimits.time,
                              c.policyLimits.memory, c.policyLimits.failures};
  struct conf_errors errs = {0};
  const char *d = dir ? dir : c.policyDir;
  int rc = policy_check_dir(&lim, c.normalized, d, &errs);
  if (rc != 0)
    print_errors(&errs);
  else
    printf("%s: ok\n", d);
  conf_errors_free(&errs);
  conf_free(&c);
  return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "console") == 0) return cli_console_main(argc - 1, argv + 1);

  const char *config = NULL, *log_level = NULL, *policy_dir = NULL;
  enum { RUN, CHECK_CONFIG, CHECK_POLICIES } mode = RUN;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--config") == 0 || strcmp(a, "-c") == 0) {
      if (++i >= argc) goto missing;
      config = argv[i];
    } else if (strcmp(a, "--log-level") == 0) {
      if (++i >= argc) goto missing;
      log_level = argv[i];
      if (log_level_parse(log_level) < 0) {
        fprintf(stderr, "bt2cd: unknown log level '%s' (debug, info, warn, error)\n", log_level);
        return 2;
      }
    } else if (strcmp(a, "--check-config") == 0) {
      mode = CHECK_CONFIG;
    } else if (strcmp(a, "--check-policies") == 0) {
      mode = CHECK_POLICIES;
      if (i + 1 < argc && argv[i + 1][0] != '-') policy_dir = argv[++i];
    } else if (strcmp(a, "--version") == 0) {
      printf("bt2cd %s\n", BT2C_VERSION);
      return 0;
    } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "bt2cd: unknown argument '%s'\n", a);
      usage(stderr);
      return 2;
    }
    continue;
  missing:
    fprintf(stderr, "bt2cd: %s needs a value\n", a);
    return 2;
  }
  switch (mode) {
    case CHECK_CONFIG: return check_config(config);
    case CHECK_POLICIES: return check_policies(policy_dir, config);
    default: return run_node(config, log_level);
  }
}
