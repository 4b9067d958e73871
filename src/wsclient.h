/* wsclient: the client side of RFC 6455 for the connections bt2cd dials —
 * the opening handshake (the GET request, and the check of the server's 101
 * response) and a bulk parser for the frames a server sends.
 *
 * libwebsockets 4.1.6 parses what a client receives one byte per call
 * (lws_ws_client_rx_sm: ~3.5 us more per KiB than its server side).
 * transport.c dials with lws's raw role instead and wsdial.c uses this
 * module; the frames it sends are built by wsframe.c.
 *
 * Must not: know about lws, sockets, peers or envelopes. No allocation.
 */
#ifndef BT2C_WSCLIENT_H
#define BT2C_WSCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- opening handshake (RFC 6455 section 4.1) ---------------------------- */

#define WSC_KEY_LEN 24          /* base64 of 16 random bytes */
#define WSC_RESPONSE_MAX 4096   /* a longer response head is refused */

struct wsc_upgrade {
  char key[WSC_KEY_LEN + 1];    /* Sec-WebSocket-Key sent */
  char head[WSC_RESPONSE_MAX];  /* the response head received so far */
  size_t len;
};

/* Starts a handshake: makes a fresh key (RAND_bytes) and writes the request
 * "GET path HTTP/1.1" with Host: host, Upgrade, Connection, the key,
 * Sec-WebSocket-Version: 13 and Sec-WebSocket-Protocol: subprotocol into
 * out. Returns its length, or -1 if it does not fit in cap (or no random). */
int wsc_request(struct wsc_upgrade *u, const char *host, const char *path,
                const char *subprotocol, char *out, size_t cap);

/* Feeds bytes of the server's response. Returns 0 while the head (up to the
 * blank line) is incomplete; when it is complete and valid, the number of
 * bytes of `in` it used (the rest are the first frames); -1 with a reason in
 * *why if it is not a valid upgrade: status other than 101, no "Upgrade:
 * websocket", no "upgrade" token in Connection, a wrong
 * Sec-WebSocket-Accept, a subprotocol other than `subprotocol` (or none), an
 * extension we did not offer, or a head longer than WSC_RESPONSE_MAX.
 * Header names and the Upgrade/Connection values are case-insensitive. */
long wsc_response(struct wsc_upgrade *u, const uint8_t *in, size_t len, const char *subprotocol,
                  const char **why);

/* ---- frames from the server (RFC 6455 section 5) ------------------------- */

#define WSC_CONTROL_MAX 125

struct wsc_handlers {
  /* A piece of a data frame's payload, as it arrives (a frame may come in
   * many pieces, a read may hold many frames). `first`: the first piece of
   * a message (its opcode said text or binary); `binary`: that opcode was
   * binary; `frame_left`: payload bytes of this frame still to come;
   * `last`: the message ends with this piece (FIN frame, frame_left 0).
   * Return nonzero to stop parsing. */
  int (*data)(void *ud, const uint8_t *p, size_t n, bool first, bool binary, uint64_t frame_left,
              bool last);
  /* A whole control frame: opcode 0x8 close, 0x9 ping, 0xA pong. Return
   * nonzero to stop parsing. */
  int (*control)(void *ud, unsigned opcode, const uint8_t *p, size_t n);
};

struct wsc_parser {
  uint8_t head[14];  /* the frame header being read */
  uint8_t head_len;  /* bytes of it read so far */
  uint8_t opcode;    /* of the current frame */
  bool fin;
  bool in_message;   /* a fragmented data message is open */
  bool binary;       /* its first frame's opcode was binary */
  bool first_piece;  /* the next data piece is the first of its message */
  uint64_t left;     /* payload bytes of the current frame still to come */
  bool in_payload;   /* header done, payload (left > 0) being read */
  uint8_t ctrl[WSC_CONTROL_MAX];
  uint8_t ctrl_len;
};

void wsc_parser_init(struct wsc_parser *ps);

/* Parses in[0..len). Returns 0 when all of it was used, 1 if a handler
 * stopped it, or -1 with a reason in *why for a protocol error (the caller
 * closes with 1002): a reserved bit set, a masked frame, an unknown opcode,
 * a control frame longer than 125 bytes or fragmented, a continuation
 * without a message, a new data frame inside a message, a 64-bit length
 * with its top bit set. State carries over between calls. */
int wsc_parse(struct wsc_parser *ps, const uint8_t *in, size_t len, const struct wsc_handlers *h,
              void *ud, const char **why);

#endif
