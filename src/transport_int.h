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

/* A frame of `opcode` with payload[0..n) masked as a client sends it,
 * written raw; the LWS_PRE bytes before payload must be writable. */
int transport_send_masked(struct lws *wsi, unsigned opcode, uint8_t *payload, size_t n);

void transport_remote_of(struct lws *wsi, char *out, size_t cap);
int transport_timeout_secs(const struct transport *t);

/* wsdial.c: plain ws:// dials through lws's raw role, with our own upgrade
 * and frame parser (wsclient.c) instead of lws's per-byte client parser. */
int wsdial_connected(struct transport *t, struct peer *p, struct lws *wsi);
int wsdial_rx(struct transport *t, struct peer *p, struct lws *wsi, const uint8_t *in, size_t len);
int wsdial_writable(struct transport *t, struct peer *p, struct lws *wsi);

#endif
