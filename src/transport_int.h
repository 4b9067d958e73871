/* transport_int: what transport.c shares with wsdial.c, its own WebSocket
 * client for plain ws:// dials. Not for other files. */
#ifndef BT2C_TRANSPORT_INT_H
#define BT2C_TRANSPORT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "peer.h"
#include "transport.h"

/* The lws protocol (on the "peers" vhost) of raw-role dials. */
#define TRANSPORT_DIAL_PROTOCOL "bt2c.v1-dial"

/* A piece of a received WebSocket message: `first` piece of a message
 * (whose opcode said `binary` or text), `frame_left` bytes of its frame
 * still to come, `last` piece of the message. Reassembles into p->rx with
 * maxMessageSize applied as frames arrive, and hands whole messages to
 * netmgr. Returns 0 (p may be closing afterwards: check p->state). */
int transport_piece(struct transport *t, struct peer *p, const uint8_t *in, size_t len, bool first,
                    bool binary, uint64_t frame_left, bool last);

/* Packs p's queued output into one binary message and sends it as a masked
 * client frame (dialled connections) or through lws (accepted ones). Asks
 * for another writable callback while output remains. Returns -1 to close. */
int transport_send_output(struct transport *t, struct peer *p, struct lws *wsi);

/* A frame of `opcode` with payload[0..n) masked as a client sends it, sent
 * on p's dialled connection; the LWS_PRE bytes before payload must be
 * writable. */
int transport_send_masked(struct peer *p, struct lws *wsi, unsigned opcode, uint8_t *payload,
                          size_t n);

void transport_remote_of(struct lws *wsi, char *out, size_t cap);
int transport_timeout_secs(const struct transport *t);

/* wsdial.c: plain ws:// dials through lws's raw role, with our own upgrade
 * and frame parser (wsclient.c) instead of lws's per-byte client parser. */
int wsdial_connected(struct transport *t, struct peer *p, struct lws *wsi);
int wsdial_rx(struct transport *t, struct peer *p, struct lws *wsi, const uint8_t *in, size_t len);
int wsdial_writable(struct transport *t, struct peer *p, struct lws *wsi);
/* Sends buf[0..n) on p's dialled connection as it is (through TLS on a
 * wss:// dial); buf must have LWS_PRE writable bytes before it. */
int wsdial_send(struct peer *p, struct lws *wsi, uint8_t *buf, size_t n);

/* wstls.c: the TLS session of a wss:// dial, over memory BIOs. */
int wstls_start(struct transport *t, struct peer *p, struct lws *wsi, const char *host);
int wstls_write(struct peer *p, struct lws *wsi, const uint8_t *buf, size_t n);
/* Feeds ciphertext; hands the plaintext that results to plain() (stopping
 * at a nonzero return, which it returns; p may be gone then). *ready: the
 * handshake completed in this call. -1 with *why on a TLS failure. */
int wstls_read(struct peer *p, struct lws *wsi, const uint8_t *in, size_t len,
               int (*plain)(void *ud, const uint8_t *buf, size_t n), void *ud, bool *ready,
               const char **why);
void wstls_free_ctx(struct transport *t);

#endif
