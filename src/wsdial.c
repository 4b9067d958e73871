/* wsdial: bt2cd's own WebSocket client for its dials (ws:// and wss://).
 *
 * libwebsockets 4.1.6 parses what its client role receives one byte per
 * call (lws_ws_client_rx_sm), ~3.5 us more per KiB than its server side: a
 * node that dialled half of its peers paid it on half of its traffic. So
 * dials go through lws's raw role (lws still connects, polls, buffers
 * partial writes and times out), and the WebSocket layer is ours: the
 * upgrade request and the check of the 101 (wsclient.c), a bulk frame
 * parser (wsclient.c), masked frames out (wsframe.c), and the close
 * handshake; on wss:// dials through a TLS session of its own (wstls.c).
 *
 * Events go where lws's client events went: the checked upgrade to
 * netmgr_outbound_opened, a refused one to netmgr_dial_failed, messages to
 * transport_piece, a close frame to the peer's close code and reason.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "netmgr.h"
#include "transport_int.h"
#include "wsframe.h"

#define OP_CLOSE 0x8
#define OP_PING 0x9
#define OP_PONG 0xA

struct rx_ctx {
  struct transport *t;
  struct peer *p;
  struct lws *wsi;
};

/* The dial failed before the WebSocket was up (p is gone afterwards). */
static int dial_fail(struct transport *t, struct peer *p, struct lws *wsi, const char *reason) {
  lws_set_opaque_user_data(wsi, NULL);
  p->wsi = NULL;
  netmgr_dial_failed(t->nm, p, reason);
  return -1;
}

/* The upgrade was refused: a dial failure, as when lws's client refused it. */
static int refuse(struct transport *t, struct peer *p, struct lws *wsi, const char *why) {
  char reason[160];
  snprintf(reason, sizeof reason, "WebSocket upgrade refused: %s", why);
  return dial_fail(t, p, wsi, reason);
}

int wsdial_send(struct peer *p, struct lws *wsi, uint8_t *buf, size_t n) {
  if (p->ws_tls) return wstls_write(p, wsi, buf, n);
  return lws_write(wsi, buf, n, LWS_WRITE_RAW) < (int)n ? -1 : 0;
}

/* The GET that asks for the upgrade (once TLS is up on a wss:// dial). */
static int send_request(struct transport *t, struct peer *p, struct lws *wsi) {
  bool tls;
  char host[256], hosthdr[300];
  int port;
  if (transport_parse_url(p->url, &tls, host, sizeof host, &port) != 0)
    return refuse(t, p, wsi, "bad URL");
  if (strchr(host, ':')) snprintf(hosthdr, sizeof hosthdr, "[%s]:%d", host, port);
  else snprintf(hosthdr, sizeof hosthdr, "%s:%d", host, port);
  free(p->ws_upgrade);
  p->ws_upgrade = calloc(1, sizeof *p->ws_upgrade);
  if (p->ws_upgrade == NULL) return refuse(t, p, wsi, "out of memory");
  uint8_t req[LWS_PRE + 512];
  int n = wsc_request(p->ws_upgrade, hosthdr, "/", TRANSPORT_SUBPROTOCOL, (char *)req + LWS_PRE,
                      sizeof req - LWS_PRE);
  if (n < 0) return refuse(t, p, wsi, "request too long");
  if (wsdial_send(p, wsi, req + LWS_PRE, (size_t)n) != 0)
    return refuse(t, p, wsi, "cannot send the request");
  return 0;
}

int wsdial_connected(struct transport *t, struct peer *p, struct lws *wsi) {
  bool tls;
  char host[256];
  int port;
  if (transport_parse_url(p->url, &tls, host, sizeof host, &port) != 0)
    return refuse(t, p, wsi, "bad URL");
  /* lws cleared its connect timeout: the upgrade (and TLS) get connectionTimeout */
  lws_set_timeout(wsi, PENDING_TIMEOUT_USER_REASON_BASE + 2, transport_timeout_secs(t));
  if (!tls) return send_request(t, p, wsi);
  if (wstls_start(t, p, wsi, host) != 0) return dial_fail(t, p, wsi, "cannot start TLS");
  return 0; /* the request goes once the TLS handshake is done */
}

static int on_data(void *ud, const uint8_t *in, size_t n, bool first, bool binary,
                   uint64_t frame_left, bool last) {
  struct rx_ctx *x = ud;
  /* once p is closing this drops the data, but parsing goes on: the answer
   * to our close frame may follow */
  transport_piece(x->t, x->p, in, n, first, binary, frame_left, last);
  return 0;
}

/* Close codes a peer may send (RFC 6455 7.4.1-7.4.2, IANA registry). */
static bool sendable_code(int code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

static int on_control(void *ud, unsigned opcode, const uint8_t *in, size_t n) {
  struct rx_ctx *x = ud;
  struct peer *p = x->p;
  if (opcode == OP_PING) { /* answered at once: a pong is a whole frame, never split */
    uint8_t f[LWS_PRE + WSC_CONTROL_MAX];
    memcpy(f + LWS_PRE, in, n);
    if (transport_send_masked(p, x->wsi, OP_PONG, f + LWS_PRE, n) != 0)
      transport_close(p, 1011, "cannot answer a ping");
    return 0;
  }
  if (opcode != OP_CLOSE) return 0; /* a pong: nothing asked for it */
  if (p->ws_close_sent) { /* the answer to our close */
    p->ws_close_done = true;
    return 1;
  }
  int code = 1005; /* none given (RFC 6455 7.1.5) */
  const char *reason = "";
  size_t rl = 0;
  if (n >= 2) {
    code = in[0] << 8 | in[1];
    reason = (const char *)in + 2;
    rl = n - 2;
  }
  if (n >= 2 && !sendable_code(code)) { /* RFC 6455 7.4: ours is then a protocol error */
    code = 1002;
    reason = "close frame with a code that is never sent";
    rl = strlen(reason);
  }
  if (rl > sizeof p->close_reason - 1) rl = sizeof p->close_reason - 1;
  p->close_code = code;
  memcpy(p->close_reason, reason, rl);
  p->close_reason[rl] = '\0';
  p->remote_close = true;
  p->state = PEER_CLOSING;
  lws_callback_on_writable(x->wsi); /* our close frame answers it */
  return 1;
}

static const struct wsc_handlers handlers = {on_data, on_control};

/* Plaintext from the server: the 101 response, then frames. Returns -1 to
 * close the connection (p may be gone then). */
static int on_plain(void *ud, const uint8_t *in, size_t len) {
  struct rx_ctx *x = ud;
  struct transport *t = x->t;
  struct peer *p = x->p;
  struct lws *wsi = x->wsi;
  if (!p->ws_upgraded) {
    const char *why = "no upgrade under way";
    long used = p->ws_upgrade ? wsc_response(p->ws_upgrade, in, len, TRANSPORT_SUBPROTOCOL, &why)
                              : -1;
    if (used == 0) return 0;
    if (used < 0) return refuse(t, p, wsi, why);
    free(p->ws_upgrade);
    p->ws_upgrade = NULL;
    p->ws_upgraded = true;
    wsc_parser_init(&p->ws_rx);
    lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
    transport_remote_of(wsi, p->remote, sizeof p->remote);
    netmgr_outbound_opened(t->nm, p);
    in += used;
    len -= (size_t)used;
    if (p->state == PEER_CLOSING) return 0;
  }
  if (len == 0) return 0;
  if (p->ws_close_done) return -1;
  const char *why = NULL;
  if (wsc_parse(&p->ws_rx, in, len, &handlers, x, &why) < 0) {
    char reason[100];
    snprintf(reason, sizeof reason, "bad frame: %s", why);
    log_at(LV_INFO, "invalid_frame", "remote=%s why=%s", p->remote, why);
    transport_close(p, 1002, reason);
  }
  return p->ws_close_done ? -1 : 0;
}

int wsdial_rx(struct transport *t, struct peer *p, struct lws *wsi, const uint8_t *in,
              size_t len) {
  struct rx_ctx x = {t, p, wsi};
  if (p->ws_tls == NULL) return on_plain(&x, in, len);
  bool ready = false;
  const char *why = NULL;
  int rc = wstls_read(p, wsi, in, len, on_plain, &x, &ready, &why);
  if (rc > 0 || (rc < 0 && why == NULL)) return -1; /* on_plain stopped: p may be gone */
  if (rc < 0) {
    if (!p->ws_upgraded) {
      char reason[96];
      snprintf(reason, sizeof reason, "TLS: %s", why);
      return dial_fail(t, p, wsi, reason);
    }
    log_at(LV_INFO, "tls_failed", "remote=%s why=%s", p->remote, why);
    return -1;
  }
  if (ready) return send_request(t, p, wsi);
  return 0;
}

int wsdial_writable(struct transport *t, struct peer *p, struct lws *wsi) {
  if (!p->ws_upgraded) return p->close_code ? -1 : 0; /* no WebSocket yet: just drop it */
  if (p->close_code) {
    if (p->ws_close_sent) return 0; /* waiting for the answer, or the timeout */
    /* a close frame: the code and as much of the reason as fits in 125 bytes */
    uint8_t f[LWS_PRE + WSC_CONTROL_MAX];
    int code = p->close_code == 1005 ? 1000 : p->close_code; /* 1005 is never sent */
    size_t rl = strlen(p->close_reason);
    if (rl > WSC_CONTROL_MAX - 2) rl = WSC_CONTROL_MAX - 2;
    f[LWS_PRE] = (uint8_t)(code >> 8);
    f[LWS_PRE + 1] = (uint8_t)code;
    memcpy(f + LWS_PRE + 2, p->close_reason, rl);
    if (transport_send_masked(p, wsi, OP_CLOSE, f + LWS_PRE, rl + 2) != 0) return -1;
    p->ws_close_sent = true;
    if (p->remote_close) return -1; /* we answered theirs: done (lws sends what is buffered) */
    /* ours: the server answers and closes the TCP connection (RFC 6455 7.1.1) */
    lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_ACK, 3);
    return 0;
  }
  return transport_send_output(t, p, wsi);
}
