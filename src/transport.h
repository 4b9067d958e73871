/* transport: WebSocket connections to other nodes over libwebsockets.
 *
 * The listening vhost (ws://host:port, or wss:// with tls configured), dials,
 * subprotocol and upgrade checks, reassembly of WebSocket messages with the
 * size limit applied as frames arrive, packed writes, close codes, and the
 * connection timeout before the upgrade. Whole messages and connection
 * events go to netmgr; transport keeps no peer table of its own.
 *
 * Accepted connections use lws's WebSocket server role. Dials (ws:// and
 * wss://) use lws's raw role under bt2cd's own client: wsdial.c (upgrade,
 * events, close handshake), wsclient.c (a bulk frame parser, where lws's
 * client parses byte by byte), wsframe.c (masked frames out) and, for
 * wss://, wstls.c (the TLS session).
 *
 * Must not: parse envelopes or know about the handshake or peer limits.
 */
#ifndef BT2C_TRANSPORT_H
#define BT2C_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "log.h"
#include "loop.h"

struct peer;
struct netmgr;

#define TRANSPORT_SUBPROTOCOL "bt2c.v1"

struct transport {
  struct loop *loop;
  struct lws_vhost *vh;
  struct netmgr *nm;
  const struct conf *conf;
  int listen_port; /* the port actually bound (0: not listening) */
  unsigned pending; /* accepted connections not yet upgraded */
  struct log_limit refused_limit, closed_limit;
  uint8_t *txbuf;   /* LWS_PRE + one packed message */
  size_t txcap;
  bool tls;
  char adopt_remote[64]; /* set only during transport_adopt() */
  struct ssl_ctx_st *tls_client; /* for wss:// dials (wstls.c), made at the first */
};

int transport_start(struct transport *t, struct loop *l, const struct conf *c,
                    struct netmgr *nm);
void transport_stop(struct transport *t);

/* Starts a dial to url (ws://host:port or wss://host:port) for p, which
 * netmgr created. Returns 0, or -1 with a reason (p is then not attached). */
int transport_dial(struct transport *t, struct peer *p, const char *url, char *err,
                   size_t errcap);

/* Asks for a writable callback for p (to send queued output or to close). */
void transport_want_write(struct peer *p);

/* Closes p's connection with a WebSocket close code and reason (soon, from
 * the loop). */
void transport_close(struct peer *p, int code, const char *reason);

/* The transport of the "peers" vhost of l's context, or NULL. */
struct transport *transport_of_loop(struct loop *l);

/* Hands a connected TCP socket to the listener as if it had been accepted
 * from `remote` ("ip:port", "[v6]:port"): a TURN relay's data connection
 * (RFC 6062), whose getpeername() is the TURN server, not the peer. `pre`
 * holds bytes already read from it (at most 2048), which lws reads first.
 * The WebSocket upgrade and the bt2c handshake follow as for any inbound
 * connection; bans and the limit of connections waiting for their upgrade
 * apply. Returns 0, or -1 with why (fd is closed either way on failure). */
int transport_adopt(struct transport *t, int fd, const char *remote, const uint8_t *pre,
                    size_t pre_len, char *why, size_t whycap);

/* Splits "ws://host:port" into its parts; returns 0 or -1. host gets the
 * name without brackets. */
int transport_parse_url(const char *url, bool *tls, char *host, size_t hostcap, int *port);

#endif
