/* peer: one connection to another node — its handshake state, identity,
 * bounded priority send queues, counters and timers.
 *
 * Outgoing messages are encoded once into a shared, reference-counted
 * msgbuf; a peer queues pointers to them in one of five priority classes
 * (control > consensus > blocks > transactions > other) and, when the socket
 * is writable, packs as many as fit into one WebSocket message. The queue is
 * bounded in bytes: to make room, queued messages of lower classes are shed;
 * if that is not enough the peer is closed with 4009.
 *
 * Must not: decide which peers exist (netmgr) or talk to lws directly
 * (transport); it is the per-connection state between them.
 */
#ifndef BT2C_PEER_H
#define BT2C_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "envelope.h"
#include "handshake.h"
#include "identity.h"
#include "loop.h"
#include "wsclient.h"

struct lws;
struct netmgr;
struct score;

/* An encoded envelope shared by every queue it is in. */
struct msgbuf {
  unsigned refs;
  uint8_t type;
  uint32_t len;
  double expires; /* monotonic seconds; 0 = never */
  uint8_t data[];
};

struct msgbuf *msgbuf_new(size_t len);
void msgbuf_ref(struct msgbuf *m);
void msgbuf_unref(struct msgbuf *m);

enum peer_class { PC_CONTROL, PC_CONSENSUS, PC_BLOCKS, PC_TRANSACTIONS, PC_OTHER, PC_COUNT };
enum peer_class peer_class_of(int msg_type);

struct sendq {
  struct msgbuf **items;
  unsigned head, count, cap;
};

enum peer_state {
  PEER_DIALING,     /* outbound, waiting for the WebSocket upgrade */
  PEER_HANDSHAKING, /* upgraded, bt2c handshake running */
  PEER_ESTABLISHED,
  PEER_CLOSING
};

struct rate {
  double tokens, last; /* token bucket */
};

#define PEER_MAGIC 0x70656572u /* "peer": tells a peer from other lws user data */

struct peer {
  uint32_t magic;
  struct netmgr *nm;
  struct lws *wsi;
  struct peer *next, *prev; /* netmgr's list of connections */
  struct peer *hnext;       /* netmgr's id hash chain (established only) */
  unsigned serial;          /* for logs before the id is known */
  bool inbound;
  bool persistent; /* dialled from persistentPeers */
  bool counted;    /* established and counted in netmgr's table and totals */
  struct score *score; /* its scoring record while established */
  bool validator;      /* its proven key is in the validator set */
  uint8_t (*have)[ENV_MSG_ID_LEN]; /* ids to announce to it (pull.c), lazily allocated */
  uint16_t n_have;
  enum peer_state state;
  char remote[64];      /* "ip:port" of the TCP connection */
  char url[128];        /* outbound: the dialled URL; inbound: advertised ws://ip:listenPort */
  char dial_source[16]; /* "bootstrap", "persistent", "store", "anchor", "console", "inbound" */
  char expect_id[ENV_NODE_ID_LEN * 2 + 1]; /* the stored node this dial is for, or "" */

  /* handshake */
  uint8_t my_nonce[HS_NONCE_LEN];
  bool hello_received, auth_sent;
  struct hs_hello hello; /* the peer's, once received */
  uint8_t id[ENV_NODE_ID_LEN];
  char id_hex[ENV_NODE_ID_LEN * 2 + 1];
  double clock_skew_ms;

  /* traffic */
  struct buf rx; /* reassembly of a fragmented WebSocket message */
  bool rx_discard; /* the current message is being dropped */
  struct sendq q[PC_COUNT];
  size_t q_bytes;
  uint64_t msgs_in, msgs_out, bytes_in, bytes_out, dropped;
  uint64_t type_in[MSG_TYPE_COUNT], type_out[MSG_TYPE_COUNT];
  double created, established_at, last_rx; /* monotonic seconds */

  /* liveness and rates */
  uint64_t ping_nonce;
  double ping_sent_at; /* 0: no ping outstanding */
  double rtt_ms, rtt_avg_ms;
  double next_ping;
  struct rate ping_rate, exchange_rate;
  unsigned ping_excess;
  bool exchange_requested; /* we asked; a response is welcome */
  double next_exchange;
  /* NETWORK_STATUS: ours to it, and its last one to us */
  double next_status;
  struct rate status_rate;
  double status_at; /* monotonic; 0: none yet */
  long long status_peers, status_height;
  double status_uptime;
  char status_version[32];

  /* plain ws:// dials: our own WebSocket client (wsdial.c, wsclient.c) */
  bool ws_upgraded;               /* the server's 101 checked out */
  struct wsc_upgrade *ws_upgrade; /* until then */
  struct wsc_parser ws_rx;
  bool ws_close_sent, ws_close_done; /* our close frame went / its answer came */
  struct ssl_st *ws_tls;             /* wss:// dials: the TLS session (wstls.c) */

  /* close */
  bool in_dial;      /* inside transport_dial: failures are reported, not freed */
  bool dial_failed;  /* the dial failed while in_dial */
  bool remote_close; /* the peer sent the close frame */
  int close_code;
  char close_reason[100];
  struct loop_timer timer; /* connection/handshake deadline */
};

struct peer *peer_new(struct netmgr *nm, bool inbound);
/* Releases queues and buffers (not the lws connection). */
void peer_free(struct peer *p);

/* Queues m (taking a reference) for p. Returns 0, 1 if the message was shed
 * for lack of room, or -1 if the peer had to be closed (4009). */
int peer_enqueue(struct peer *p, struct msgbuf *m);
bool peer_has_output(const struct peer *p);

/* Packs queued envelopes into out (at most `max` bytes) and releases them.
 * Returns the number of bytes written; a single envelope larger than max is
 * written alone. Expired messages are dropped, never sent late. */
size_t peer_pack(struct peer *p, uint8_t *out, size_t max, double now);
/* Size of the next packed message (for sizing the write buffer). */
size_t peer_pack_size(const struct peer *p, size_t max);

/* Token bucket: true if an event may pass (rate per second, burst). */
bool rate_allow(struct rate *r, double rate, double burst, double now);

/* "inbound 203.0.113.7:51234 id=ab12…" for logs. */
const char *peer_label(const struct peer *p, char *buf, size_t cap);

#endif
