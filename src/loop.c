/* loop: see loop.h. */
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static int raw_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len) {
  struct loop_io *io = lws_get_opaque_user_data(wsi);
  switch (reason) {
    case LWS_CALLBACK_RAW_ADOPT_FILE:
      return 0;
    case LWS_CALLBACK_RAW_RX_FILE:
      if (io && !io->closing && io->on_readable) io->on_readable(io);
      return (io && io->closing) ? -1 : 0;
    case LWS_CALLBACK_RAW_WRITEABLE_FILE:
      if (io && io->closing) return -1;
      if (io && io->on_writable) io->on_writable(io);
      return (io && io->closing) ? -1 : 0;
    case LWS_CALLBACK_RAW_CLOSE_FILE:
      if (io) {
        lws_set_opaque_user_data(wsi, NULL);
        io->wsi = NULL;
        io->fd = -1; /* lws closes the descriptor after this callback */
        if (io->on_close) io->on_close(io);
      }
      return 0;
    default:
      return 0;
  }
}

static void lws_log_emit(int level, const char *line) {
  size_t n = strlen(line);
  while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
  /* lws lines start with their own timestamp; keep just the text. */
  const char *msg = line;
  const char *close_bracket = memchr(line, ']', n);
  if (line[0] == '[' && close_bracket) msg = close_bracket + 1;
  while (*msg == ' ') msg++;
  int ours = (level & LLL_ERR) ? LV_WARN : (level & LLL_WARN) ? LV_INFO : LV_DEBUG;
  log_at(ours, "lws", "msg=%.*s", (int)(n - (size_t)(msg - line)), msg);
}

static const struct lws_protocols internal_protocols[] = {
    {"bt2c-raw", raw_callback, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int loop_init(struct loop *l) {
  memset(l, 0, sizeof *l);
  int lws_levels = LLL_ERR | LLL_WARN | (log_enabled(LV_DEBUG) ? LLL_NOTICE : 0);
  if (getenv("BT2C_LWS_DEBUG")) lws_levels |= LLL_INFO | LLL_DEBUG | LLL_CLIENT | LLL_HEADER;
  lws_set_log_level(lws_levels, lws_log_emit);
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.pt_serv_buf_size = 65536; /* read up to 64 KiB per poll, not 4 KiB */
  info.gid = (gid_t)-1;
  info.uid = (uid_t)-1;
  l->ctx = lws_create_context(&info);
  if (l->ctx == NULL) {
    log_at(LV_ERROR, "loop_init_failed", "what=lws_create_context");
    return -1;
  }
  struct lws_context_creation_info vinfo;
  memset(&vinfo, 0, sizeof vinfo);
  vinfo.port = CONTEXT_PORT_NO_LISTEN;
  vinfo.vhost_name = "internal";
  vinfo.protocols = internal_protocols;
  l->internal = lws_create_vhost(l->ctx, &vinfo);
  if (l->internal == NULL) {
    log_at(LV_ERROR, "loop_init_failed", "what=internal_vhost");
    lws_context_destroy(l->ctx);
    l->ctx = NULL;
    return -1;
  }
  return 0;
}

void loop_free(struct loop *l) {
  if (l->ctx) lws_context_destroy(l->ctx);
  l->ctx = NULL;
}

void loop_run(struct loop *l, void (*after_each)(void *), void *arg) {
  while (!l->stop) {
    if (lws_service(l->ctx, 0) < 0) {
      log_at(LV_ERROR, "loop_failed", "errno=%d", errno);
      break;
    }
    if (after_each) after_each(arg);
  }
}

int loop_watch(struct loop *l, struct loop_io *io) {
  lws_adopt_desc_t ad;
  memset(&ad, 0, sizeof ad);
  ad.vh = l->internal;
  ad.type = LWS_ADOPT_RAW_FILE_DESC;
  ad.fd.filefd = io->fd;
  ad.vh_prot_name = "bt2c-raw";
  ad.opaque = io;
  io->closing = false;
  io->wsi = lws_adopt_descriptor_vhost_via_info(&ad);
  return io->wsi ? 0 : -1;
}

void loop_want_write(struct loop_io *io) {
  if (io->wsi) lws_callback_on_writable(io->wsi);
}

void loop_close(struct loop_io *io) {
  io->closing = true;
  if (io->wsi) lws_callback_on_writable(io->wsi);
}

void loop_detach(struct loop_io *io) {
  if (io->wsi) lws_set_opaque_user_data(io->wsi, NULL);
  io->wsi = NULL;
}

static void timer_fire(lws_sorted_usec_list_t *sul) {
  struct loop_timer *t = lws_container_of(sul, struct loop_timer, sul);
  t->fn(t);
}

void loop_timer_start(struct loop *l, struct loop_timer *t, double ms,
                      void (*fn)(struct loop_timer *t)) {
  t->l = l;
  t->fn = fn;
  lws_sul_schedule(l->ctx, 0, &t->sul, timer_fire, (lws_usec_t)(ms * 1000.0));
}

void loop_timer_stop(struct loop_timer *t) {
  if (t->l) lws_sul_cancel(&t->sul);
}
