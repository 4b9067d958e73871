/* transport: see transport.h. */
#include "transport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <openssl/rand.h>

#include "log.h"
#include "netmgr.h"
#include "peer.h"
#include "transport_int.h"
#include "wsframe.h"

/* Packs stop growing past this; a single larger message goes alone. */
#define PACK_BYTES (64u << 10)
/* Accepted connections that have not upgraded yet, beyond which new TCP
 * connections are refused at accept (slow or idle clients hold them, for at
 * most connectionTimeout). */
#define MAX_PENDING_FLOOR 256

/* An accepted connection that has not upgraded yet (no peer). */
#define PENDING_MAGIC 0x70656e64u /* "pend" */
struct pending {
  uint32_t magic;
  char remote[64];
  double accepted;
  bool relayed; /* adopted from a TURN relay: remote is the peer, not getpeername() */
};

static struct pending *pending_of(void *opaque) {
  struct pending *q = opaque;
  return (q && q->magic == PENDING_MAGIC) ? q : NULL;
}

/* lws times connections in whole seconds: round connectionTimeout up. */
int transport_timeout_secs(const struct transport *t) {
  return (t->conf->connectionTimeout + 999) / 1000;
}

static struct transport *transport_of(struct lws *wsi) {
  return lws_get_vhost_user(lws_get_vhost(wsi));
}

static void format_addr(const struct sockaddr_storage *ss, char *out, size_t cap) {
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    port = ntohs(a->sin_port);
    snprintf(out, cap, "%s:%d", ip, port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
    port = ntohs(a->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr))
      snprintf(out, cap, "%s:%d", ip + 7, port); /* strip ::ffff: */
    else
      snprintf(out, cap, "[%s]:%d", ip, port);
  } else {
    snprintf(out, cap, "?");
  }
}

void transport_remote_of(struct lws *wsi, char *out, size_t cap) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  int fd = lws_get_socket_fd(wsi);
  if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
    snprintf(out, cap, "?");
  else
    format_addr(&ss, out, cap);
}

int transport_piece(struct transport *t, struct peer *p, const uint8_t *in, size_t len, bool first,
                    bool binary, uint64_t frame_left, bool last) {
  size_t limit = t->conf->maxMessageSize;
  if (first && !binary && p->rx.len == 0) {
    transport_close(p, 1003, "text messages are not used");
    return 0;
  }
  if (p->state == PEER_CLOSING) return 0;
  if (p->rx.len + len + frame_left > limit) {
    char reason[96];
    snprintf(reason, sizeof reason, "message larger than %zu bytes", limit);
    buf_free(&p->rx);
    transport_close(p, 1009, reason);
    return 0;
  }
  if (p->rx.len == 0 && last) { /* the common case: no copy */
    netmgr_on_message(t->nm, p, in, len);
    return 0;
  }
  buf_append(&p->rx, in, len);
  if (last) {
    /* netmgr may close p; it stays allocated until the close callback */
    struct buf msg = p->rx;
    memset(&p->rx, 0, sizeof p->rx);
    netmgr_on_message(t->nm, p, (const uint8_t *)msg.data, msg.len);
    buf_free(&msg);
  }
  return 0;
}

/* What lws's WebSocket server role delivers (accepted connections). */
static int on_receive(struct transport *t, struct peer *p, struct lws *wsi, const uint8_t *in,
                      size_t len) {
  size_t remaining = lws_remaining_packet_payload(wsi);
  return transport_piece(t, p, in, len, lws_is_first_fragment(wsi), lws_frame_is_binary(wsi),
                         remaining, lws_is_final_fragment(wsi) && remaining == 0);
}

/* A client frame: built and masked here (wsframe.c: a fresh key per frame,
 * as RFC 6455 5.3 requires, XOR 8 bytes at a time where lws masks byte by
 * byte) and sent on the dial's raw connection (wsdial.c), whose partial
 * writes lws keeps and sends before anything else. The LWS_PRE bytes
 * before payload hold the header. */
int transport_send_masked(struct peer *p, struct lws *wsi, unsigned opcode, uint8_t *payload,
                          size_t n) {
  _Static_assert(LWS_PRE >= WSFRAME_MAX_HEADER, "frame header must fit in LWS_PRE");
  uint8_t key[4];
  if (RAND_bytes(key, sizeof key) != 1) return -1;
  wsframe_mask(payload, n, key);
  size_t h = wsframe_header(payload, n, opcode, key);
  return wsdial_send(p, wsi, payload - h, n + h);
}

static int send_frame(struct lws *wsi, struct peer *p, uint8_t *payload, size_t n) {
  if (p->inbound) return lws_write(wsi, payload, n, LWS_WRITE_BINARY) < (int)n ? -1 : 0;
  return transport_send_masked(p, wsi, WSFRAME_OP_BINARY, payload, n);
}

int transport_send_output(struct transport *t, struct peer *p, struct lws *wsi) {
  if (!peer_has_output(p)) return 0;
  size_t want = peer_pack_size(p, PACK_BYTES);
  if (LWS_PRE + want > t->txcap) {
    uint8_t *nb = realloc(t->txbuf, LWS_PRE + want);
    if (nb == NULL) return -1;
    t->txbuf = nb;
    t->txcap = LWS_PRE + want;
  }
  size_t n = peer_pack(p, t->txbuf + LWS_PRE, want, log_monotonic());
  if (n && send_frame(wsi, p, t->txbuf + LWS_PRE, n) != 0) return -1;
  if (n) p->bytes_out += n;
  if (peer_has_output(p)) lws_callback_on_writable(wsi);
  return 0;
}

static int on_writable(struct transport *t, struct peer *p, struct lws *wsi) {
  if (p->close_code) {
    lws_close_reason(wsi, (enum lws_close_status)p->close_code,
                     (unsigned char *)p->close_reason, strlen(p->close_reason));
    return -1;
  }
  return transport_send_output(t, p, wsi);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
  struct transport *t = lws_get_vhost(wsi) ? transport_of(wsi) : NULL;
  void *opaque = lws_get_opaque_user_data(wsi);
  struct pending *pend = pending_of(opaque);
  struct peer *p = (opaque && ((struct peer *)opaque)->magic == PEER_MAGIC) ? opaque : NULL;
  char remote[64];

  switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION: {
      const struct lws_filter_network_conn_args *f = user;
      format_addr(&f->cli_addr, remote, sizeof remote);
      unsigned max_pending = (unsigned)t->conf->maxInbound * 2;
      if (max_pending < MAX_PENDING_FLOOR) max_pending = MAX_PENDING_FLOOR;
      if (t->pending >= max_pending) {
        log_limited(&t->refused_limit, LV_WARN, "inbound_refused", "remote=%s why=%s", remote,
                    "too many connections waiting for their WebSocket upgrade");
        return 1;
      }
      char ip[64];
      snprintf(ip, sizeof ip, "%s", remote);
      char *colon = strrchr(ip, ':');
      if (colon) *colon = '\0';
      return netmgr_allow_inbound(t->nm, ip) ? 0 : 1;
    }
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED:
      /* lws says this for our own dials too; those already carry their peer */
      if (t == NULL || opaque != NULL) return 0;
      pend = calloc(1, sizeof *pend);
      if (pend == NULL) return -1;
      pend->magic = PENDING_MAGIC;
      pend->accepted = log_monotonic();
      if (t->adopt_remote[0]) {
        snprintf(pend->remote, sizeof pend->remote, "%s", t->adopt_remote);
        pend->relayed = true;
      } else {
        transport_remote_of(wsi, pend->remote, sizeof pend->remote);
      }
      t->pending++;
      lws_set_opaque_user_data(wsi, pend);
      lws_set_timeout(wsi, PENDING_TIMEOUT_USER_REASON_BASE + 1, transport_timeout_secs(t));
      return 0;
    case LWS_CALLBACK_HTTP:
      /* Plain HTTP on the peer port: only WebSocket upgrades are served. */
      return -1;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
      char proto[128] = "";
      if (lws_hdr_copy(wsi, proto, sizeof proto, WSI_TOKEN_PROTOCOL) <= 0 ||
          strstr(proto, TRANSPORT_SUBPROTOCOL) == NULL) {
        transport_remote_of(wsi, remote, sizeof remote);
        log_at(LV_INFO, "inbound_refused", "remote=%s why=%s", remote,
               "upgrade without the bt2c.v1 subprotocol");
        return 1;
      }
      return 0;
    }
    case LWS_CALLBACK_ESTABLISHED:
      if (pend && pend->relayed) snprintf(remote, sizeof remote, "%s", pend->remote);
      else transport_remote_of(wsi, remote, sizeof remote);
      if (pend) {
        t->pending--;
        free(pend);
      }
      lws_set_opaque_user_data(wsi, NULL);
      lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
      p = netmgr_inbound_opened(t->nm, wsi, remote);
      if (p == NULL) return -1;
      lws_set_opaque_user_data(wsi, p);
      return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
      if (p) {
        lws_set_opaque_user_data(wsi, NULL);
        p->wsi = NULL;
        netmgr_dial_failed(t->nm, p, in ? (const char *)in : "connection failed");
      }
      return 0;
    case LWS_CALLBACK_RAW_CONNECTED: /* a dial: our own WebSocket client (wsdial.c) */
      if (p == NULL) return -1;
      return wsdial_connected(t, p, wsi);
    case LWS_CALLBACK_RAW_RX:
      if (p == NULL) return -1;
      return wsdial_rx(t, p, wsi, in, len);
    case LWS_CALLBACK_RAW_WRITEABLE:
      if (p == NULL) return -1;
      return wsdial_writable(t, p, wsi);
    case LWS_CALLBACK_RAW_CLOSE:
      if (p == NULL) return 0;
      lws_set_opaque_user_data(wsi, NULL);
      p->wsi = NULL;
      if (p->in_dial || !p->ws_upgraded)
        netmgr_dial_failed(t->nm, p,
                           p->in_dial ? "connection failed"
                                      : "connection closed before the WebSocket upgrade completed");
      else
        netmgr_on_closed(t->nm, p, p->close_code, p->close_reason);
      return 0;
    case LWS_CALLBACK_RECEIVE:
      if (p == NULL) return -1;
      return on_receive(t, p, wsi, in, len);
    case LWS_CALLBACK_SERVER_WRITEABLE:
      if (p == NULL) return 0;
      return on_writable(t, p, wsi);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
      if (p && len >= 2) {
        const unsigned char *c = in;
        p->close_code = c[0] << 8 | c[1];
        size_t rl = len - 2 < sizeof p->close_reason - 1 ? len - 2 : sizeof p->close_reason - 1;
        memcpy(p->close_reason, c + 2, rl);
        p->close_reason[rl] = '\0';
        p->remote_close = true;
        p->state = PEER_CLOSING;
      }
      return 0;
    case LWS_CALLBACK_CLOSED: /* accepted connections (dials close with RAW_CLOSE) */
      if (p) {
        lws_set_opaque_user_data(wsi, NULL);
        p->wsi = NULL;
        netmgr_on_closed(t->nm, p, p->close_code, p->close_reason);
      }
      return 0;
    case LWS_CALLBACK_WSI_DESTROY:
      if (pend) { /* never upgraded: garbage, plain HTTP, idle or too slow */
        if (t) {
          t->pending--;
          log_limited(&t->closed_limit, LV_INFO, "connection_closed",
                      "remote=%s stage=upgrade after_s=%.2f why=%s", pend->remote,
                      log_monotonic() - pend->accepted,
                      "no WebSocket upgrade to bt2c.v1 within connectionTimeout, or not HTTP");
        }
        lws_set_opaque_user_data(wsi, NULL);
        free(pend);
      }
      if (p && p->in_dial) { /* as above: p outlives this, transport_dial frees it */
        lws_set_opaque_user_data(wsi, NULL);
        p->wsi = NULL;
        netmgr_dial_failed(t->nm, p, "connection failed");
      } else if (p) { /* closed without a close callback (e.g. context teardown) */
        lws_set_opaque_user_data(wsi, NULL);
        p->wsi = NULL;
        netmgr_on_closed(t->nm, p, p->close_code ? p->close_code : 1006, "connection lost");
      }
      return 0;
    default:
      return 0;
  }
}

static const struct lws_protocols protocols[] = {
    /* A modest per-connection receive size (it also caps each read: 16 KiB
     * reads cost a fourth of the syscalls of 4 KiB for under 1 KiB more per
     * idle peer), large sends (packed batches go out in few writes). */
    {TRANSPORT_SUBPROTOCOL, callback, 0, 16384, 0, NULL, 65536},
    /* ws:// dials: lws's raw role under our own WebSocket client (wsdial.c) */
    {TRANSPORT_DIAL_PROTOCOL, callback, 0, 16384, 0, NULL, 65536},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int transport_start(struct transport *t, struct loop *l, const struct conf *c,
                    struct netmgr *nm) {
  memset(t, 0, sizeof *t);
  t->refused_limit.burst = t->closed_limit.burst = 20; /* they come in bursts */
  t->loop = l;
  t->conf = c;
  t->nm = nm;
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.vhost_name = "peers";
  info.port = c->port;
  info.iface = (c->host && strcmp(c->host, "0.0.0.0") != 0) ? c->host : NULL;
  info.protocols = protocols;
  info.user = t;
  /* lws times the wait for the upgrade request itself; make it ours */
  info.timeout_secs_ah_idle = (unsigned)transport_timeout_secs(t);
  if (c->host && strchr(c->host, ':') == NULL) info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
  if (c->tls.cert && c->tls.key) {
    info.ssl_cert_filepath = c->tls.cert;
    info.ssl_private_key_filepath = c->tls.key;
    t->tls = true;
  }
  /* The client side shares the vhost; it needs an SSL context for wss://. */
  info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  t->vh = lws_create_vhost(l->ctx, &info);
  if (t->vh == NULL) {
    log_at(LV_ERROR, "listen_failed", "host=%s port=%d err=%s", c->host, c->port,
           "cannot listen (address in use, or bad tls files?)");
    return -1;
  }
  t->listen_port = lws_get_vhost_listen_port(t->vh); /* port 0: the one the OS chose */
  return 0;
}

struct transport *transport_of_loop(struct loop *l) {
  struct lws_vhost *vh = l->ctx ? lws_get_vhost_by_name(l->ctx, "peers") : NULL;
  return vh ? lws_get_vhost_user(vh) : NULL;
}

int transport_adopt(struct transport *t, int fd, const char *remote, const uint8_t *pre,
                    size_t pre_len, char *why, size_t whycap) {
  unsigned max_pending = (unsigned)t->conf->maxInbound * 2;
  if (max_pending < MAX_PENDING_FLOOR) max_pending = MAX_PENDING_FLOOR;
  char ip[64];
  snprintf(ip, sizeof ip, "%s", remote);
  char *colon = strrchr(ip, ':');
  if (colon) *colon = '\0'; /* as at accept: an IPv6 address keeps its brackets */
  if (t->pending >= max_pending) {
    snprintf(why, whycap, "too many connections waiting for their WebSocket upgrade");
    close(fd);
    return -1;
  }
  if (!netmgr_allow_inbound(t->nm, ip)) {
    snprintf(why, whycap, "the address is banned or inbound connections are refused");
    close(fd);
    return -1;
  }
  /* lws reports a read buffer given with the socket at its error level
   * ("calling service"): nothing is wrong, so keep it out of the log. */
  int saved = 0;
  for (int bit = 0; bit < LLL_COUNT; bit++)
    if (lwsl_visible(1 << bit)) saved |= 1 << bit;
  if (pre_len) lws_set_log_level(saved & ~(LLL_ERR | LLL_NOTICE), NULL);
  snprintf(t->adopt_remote, sizeof t->adopt_remote, "%s", remote);
  struct lws *wsi = lws_adopt_socket_vhost_readbuf(t->vh, fd, (const char *)pre, pre_len);
  t->adopt_remote[0] = '\0';
  if (pre_len) lws_set_log_level(saved, NULL);
  if (wsi == NULL) { /* lws closed fd */
    snprintf(why, whycap, "libwebsockets refused the connection");
    return -1;
  }
  return 0;
}

void transport_stop(struct transport *t) {
  wstls_free_ctx(t);
  free(t->txbuf);
  t->txbuf = NULL;
  t->txcap = 0;
}

int transport_parse_url(const char *url, bool *tls, char *host, size_t hostcap, int *port) {
  const char *rest;
  if (strncmp(url, "ws://", 5) == 0) {
    *tls = false;
    rest = url + 5;
  } else if (strncmp(url, "wss://", 6) == 0) {
    *tls = true;
    rest = url + 6;
  } else {
    return -1;
  }
  const char *hend, *colon;
  if (*rest == '[') {
    hend = strchr(rest, ']');
    if (hend == NULL || hend[1] != ':') return -1;
    rest++;
    colon = hend + 1;
  } else {
    colon = strrchr(rest, ':');
    if (colon == NULL) return -1;
    hend = colon;
  }
  size_t hl = (size_t)(hend - rest);
  if (hl == 0 || hl >= hostcap) return -1;
  memcpy(host, rest, hl);
  host[hl] = '\0';
  char *end;
  long pv = strtol(colon + 1, &end, 10);
  if (end == colon + 1 || (*end != '\0' && *end != '/') || pv < 1 || pv > 65535) return -1;
  *port = (int)pv;
  return 0;
}

int transport_dial(struct transport *t, struct peer *p, const char *url, char *err,
                   size_t errcap) {
  bool tls;
  char host[256];
  int port;
  if (transport_parse_url(url, &tls, host, sizeof host, &port) != 0) {
    snprintf(err, errcap, "not a ws://host:port or wss://host:port URL");
    return -1;
  }
  struct lws_client_connect_info ci;
  memset(&ci, 0, sizeof ci);
  ci.context = t->loop->ctx;
  ci.vhost = t->vh;
  ci.address = host;
  ci.port = port;
  ci.opaque_user_data = p;
  ci.pwsi = &p->wsi;
  /* The WebSocket layer (wsdial.c) and, for wss://, TLS (wstls.c) are ours;
   * lws connects, polls and buffers partial writes. */
  ci.method = "RAW";
  ci.protocol = NULL;
  ci.local_protocol_name = TRANSPORT_DIAL_PROTOCOL;
  snprintf(p->url, sizeof p->url, "%s", url);
  p->in_dial = true;
  struct lws *wsi = lws_client_connect_via_info(&ci);
  p->in_dial = false;
  if (wsi == NULL || p->dial_failed) {
    snprintf(err, errcap, "cannot start the connection");
    p->wsi = NULL;
    return -1;
  }
  if (p->wsi)
    lws_set_timeout(p->wsi, PENDING_TIMEOUT_USER_REASON_BASE + 2, transport_timeout_secs(t));
  return 0;
}

void transport_want_write(struct peer *p) {
  if (p->wsi) lws_callback_on_writable(p->wsi);
}

void transport_close(struct peer *p, int code, const char *reason) {
  if (p->close_code == 0) {
    p->close_code = code;
    snprintf(p->close_reason, sizeof p->close_reason, "%s", reason);
  }
  p->state = PEER_CLOSING;
  if (p->wsi) lws_callback_on_writable(p->wsi);
}
