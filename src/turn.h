/* turn: the TURN client (RFC 8656, with RFC 6062 TCP allocations) and the
 * relay's side of the node.
 *
 * For every natTraversal.turnServers entry the node keeps an allocation:
 * "turn:host[:port]?transport=udp" a UDP one on the node's own UDP socket
 * (nat.c hands it the datagrams from the server), "?transport=tcp" a TCP one
 * over its own control connection, and without "?transport" both. Each
 * allocation authenticates with the long-term credentials (401 challenge,
 * MESSAGE-INTEGRITY on every later request and checked on every answer, 438
 * Stale Nonce answered with the new nonce; a 401 to a request that carried
 * credentials means they are wrong: reported, not retried in a loop),
 * refreshes itself before its lifetime ends, and keeps permissions for the
 * IPs of the nodes that may connect to it (re-issued before they lapse after
 * 300 s). A TCP allocation answers CONNECTION-ATTEMPT with a data
 * connection and ConnectionBind, then hands that connection to the
 * WebSocket listener as an inbound peer whose address is the peer's
 * (XOR-PEER-ADDRESS), not the server's. A UDP allocation binds channels for
 * the peers it sends to and counts what arrives (nothing in bt2c rides it;
 * it is a relay candidate and a diagnostic).
 *
 * Also part of the client, because they run on its tick: which IPs get
 * permissions (every connected node's address and advertised candidates,
 * then the most recently seen nodes of the peer store), telling peers about
 * candidate changes (nat_traversal), and storing the candidates peers
 * advertise (turn_cand.h).
 *
 * The files: turn.c (start, stop, the tick, the entry points below),
 * turn_msg.c (messages), turn_txn.c (requests and credentials),
 * turn_alloc.c (the allocation's life), turn_tcp.c (RFC 6062 connections),
 * turn_perm.c (permissions and channels), turn_cand.c (candidates).
 *
 * Must not: block the loop (host names are looked up with getaddrinfo_a),
 * read a byte of a server's message outside the frame it came in, keep a
 * TCP frame it cannot parse (the control connection is closed instead), or
 * grow a queue without bound.
 */
#ifndef BT2C_TURN_H
#define BT2C_TURN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "log.h"
#include "loop.h"
#include "stun.h"

#define TURN_MAX_ALLOCS 8
#define TURN_MAX_TXN 12
#define TURN_MAX_PERMS 64
#define TURN_MAX_CHANNELS 16
#define TURN_MAX_DATACONN 16
#define TURN_MSG_MAX 1200 /* an outgoing request or indication */
#define TURN_PERMISSION_REFRESH 240.0 /* s; permissions last 300 s */
#define TURN_CHANNEL_REFRESH 300.0    /* s; channel bindings last 600 s */

struct conf;
struct nat;
struct netmgr;

enum turn_state {
  TURN_IDLE,
  TURN_RESOLVING,
  TURN_CONNECTING, /* TCP control connection */
  TURN_ALLOCATING,
  TURN_ALLOCATED,
  TURN_FAILED,      /* retried after a backoff */
  TURN_AUTH_FAILED, /* wrong credentials: retried only after 5 minutes */
};

enum turn_purpose { TP_ALLOCATE, TP_REFRESH, TP_PERMISSION, TP_CHANNEL_BIND, TP_DEALLOCATE };

/* Encoding and judging the messages: turn_msg.h. */

/* ---- the client --------------------------------------------------------- */

struct turn_alloc;

struct turn_txn {
  bool active;
  enum turn_purpose purpose;
  uint8_t msg[TURN_MSG_MAX];
  size_t len;
  int sends, auth_tries;
  bool sent_auth;
  double rto_ms, first_sent;
  struct stun_addr peer; /* CreatePermission / ChannelBind */
  uint16_t channel;
  uint32_t lifetime; /* Refresh */
  struct loop_timer timer;
  struct turn_alloc *a;
};

struct turn_perm {
  struct stun_addr ip; /* port 0 */
  double installed;    /* monotonic s of the last success; 0: never */
  double refused_until;
  double wanted;       /* last tick that wanted it */
  bool pending;
};

struct turn_chan {
  uint16_t number;
  struct stun_addr peer;
  double bound; /* 0: not yet */
  bool pending;
};

/* A CONNECTION-ATTEMPT waiting for its data connection: the control
 * connection's nonce is renewed first (a Refresh), because a server closes
 * a data connection whose ConnectionBind it refuses. */
struct turn_attempt {
  uint32_t conn_id;
  struct stun_addr peer;
  int tries; /* data connections opened for it so far */
  double since;
};

/* An RFC 6062 data connection, from CONNECTION-ATTEMPT to the hand-over. */
struct turn_dc {
  struct turn_alloc *a;
  struct loop_io io;
  bool io_open, connected, sent_auth, adopt_pending, bound;
  int adopt_fd;
  uint32_t conn_id;
  struct stun_addr peer;
  uint8_t txid[STUN_TXID_LEN];
  int tries;
  uint8_t rx[2048];
  size_t rx_len, frame_len;
  double started;
  struct loop_timer timer;
};

struct resolve; /* a pending getaddrinfo_a (resolve.h) */

/* A TCP control connection. On the heap: the loop may report its close
 * after the allocation has moved on to a new one (a == NULL then). */
struct turn_ctl {
  struct turn_alloc *a;
  struct loop_io io;
  bool connected;
  uint8_t rx[4096];
  size_t rx_len;
  uint8_t tx[8192];
  size_t tx_len;
};

struct turn_alloc {
  struct turn *t;
  int index;      /* in t->allocs */
  int conf_index; /* natTraversal.turnServers[conf_index + 1] in Lua terms */
  char url[280];
  char host[256];
  uint16_t port;
  bool numeric;
  uint8_t transport; /* STUN_TRANSPORT_UDP or STUN_TRANSPORT_TCP */
  char username[257], credential[257];
  struct stun_addr server;
  bool have_server;
  enum turn_state state;

  /* long-term credentials */
  char realm[128];
  uint8_t nonce[128];
  size_t nonce_len;
  uint8_t key[STUN_LONGTERM_KEY_LEN];
  bool have_key;

  /* the allocation */
  struct stun_addr relayed, mapped;
  bool have_mapped;
  uint32_t lifetime;         /* granted, seconds */
  double expires, allocated; /* monotonic seconds */
  unsigned refreshes, allocations;
  bool clearing;     /* deleting a stale allocation on our 5-tuple (437) */
  double backoff;    /* seconds before the next try after a failure */
  struct loop_timer timer; /* refresh, or the next try */

  struct turn_ctl *ctl; /* the TCP control connection, or NULL */

  struct turn_txn txn[TURN_MAX_TXN];
  struct turn_perm perm[TURN_MAX_PERMS];
  int n_perm;
  struct turn_chan chan[TURN_MAX_CHANNELS];
  int n_chan;
  uint16_t next_channel;
  struct turn_dc *dc[TURN_MAX_DATACONN];
  struct turn_attempt attempt[TURN_MAX_DATACONN];
  int n_attempts;

  struct resolve *res;
  double resolve_deadline;

  /* the last failure, for the console */
  int error_code;
  char error[320];

  uint64_t connections, connections_failed; /* RFC 6062 data connections */
  uint64_t data_in, data_bytes_in, channel_data_in, sent;
  struct stun_addr last_from;
  bool have_last_from;
  uint8_t last_data[64];
  size_t last_data_len;
};

struct turn_stats {
  uint64_t requests, retransmits, responses, error_responses, timeouts;
  uint64_t challenges, stale_nonces, auth_failures;
  uint64_t malformed; /* dropped: failed integrity, missing attributes, bad frames */
  uint64_t stray;     /* answers from a server to no transaction of ours */
  uint64_t permissions, channel_binds, send_errors;
  uint64_t nat_traversal_sent, nat_traversal_received;
};

struct turn {
  struct nat *nat;
  struct loop *loop;
  const struct conf *conf;
  struct netmgr *nm; /* through the "peers" vhost; NULL in a bare loop */
  int listen_port;
  struct turn_alloc *allocs[TURN_MAX_ALLOCS];
  int n_allocs;
  struct turn_stats stats;
  struct loop_timer tick, resolve_timer;
  bool resolve_timer_on, tick_on;
  struct buf advertised; /* the candidates JSON peers were last told */
  struct log_limit drop_limit;
};

const char *turn_state_name(enum turn_state s);

/* Starts the allocations of c->natTraversal.turnServers on nt's loop (nt is
 * running) and the tick. Returns NULL only when out of memory. */
struct turn *turn_start(struct nat *nt, struct loop *l, const struct conf *c);
/* Deletes the allocations (a Refresh with LIFETIME 0, not waited for),
 * closes the control connections and frees. */
void turn_stop(struct turn *t);

/* From nat.c's receive path, for datagrams from a UDP allocation's server:
 * takes responses to our transactions and Data indications (true), leaves
 * the rest to nat.c (false). */
bool turn_on_stun(struct turn *t, const struct stun_msg *m, const struct stun_addr *from);
/* ChannelData from a server: NULL when taken, else why it is dropped. */
const char *turn_on_channel_data(struct turn *t, const uint8_t *buf, size_t n,
                                 const struct stun_addr *from);

/* Sends data to peer through the first UDP allocation (a permission and a
 * channel are set up for it). 0, or -1 with why. */
int turn_send(struct turn *t, const struct stun_addr *peer, const void *data, size_t len,
              char *why, size_t whycap);

/* The candidates peers are told and tell: turn_cand.h. */

#endif
