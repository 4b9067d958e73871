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
 * Also here, because it runs on the same tick: which IPs get permissions
 * (every connected node's address and advertised candidates, then the most
 * recently seen nodes of the peer store), telling peers about candidate
 * changes (nat_traversal), and storing the candidates peers advertise.
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
struct peer;
struct envelope;

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

/* ---- the pure part: encoding and judging messages ----------------------- */

/* What a request or indication carries besides the credentials. */
struct turn_req {
  uint16_t method;
  enum stun_class cls;       /* STUN_REQUEST or STUN_INDICATION */
  uint8_t transport;         /* Allocate: REQUESTED-TRANSPORT (0: none) */
  bool has_lifetime;
  uint32_t lifetime;
  const struct stun_addr *peer; /* XOR-PEER-ADDRESS, or NULL */
  uint16_t channel;             /* ChannelBind: CHANNEL-NUMBER (0: none) */
  bool has_conn_id;             /* ConnectionBind: CONNECTION-ID */
  uint32_t conn_id;
  const void *data; /* Send indication: DATA */
  size_t data_len;
};

/* Long-term credentials; a request without them passes NULL. */
struct turn_auth {
  const char *username;
  const char *realm;
  const uint8_t *nonce;
  size_t nonce_len;
  const uint8_t *key; /* STUN_LONGTERM_KEY_LEN bytes */
};

/* Writes the message: the attributes of r, then USERNAME, REALM, NONCE and
 * MESSAGE-INTEGRITY when auth is given, then FINGERPRINT. txid NULL: fresh
 * random. Returns the length, or 0 when it does not fit. */
size_t turn_encode(uint8_t *buf, size_t cap, const uint8_t *txid, const struct turn_req *r,
                   const struct turn_auth *auth);

enum turn_verdict {
  TV_SUCCESS,
  TV_ERROR,             /* an error response other than the ones below */
  TV_CHALLENGE,         /* 401 to a request without credentials: realm and nonce given */
  TV_STALE_NONCE,       /* 438 with a new nonce */
  TV_WRONG_CREDENTIALS, /* 401 to a request that carried credentials */
  TV_INTEGRITY,         /* MESSAGE-INTEGRITY missing (on a success) or wrong */
  TV_MALFORMED,         /* an error without ERROR-CODE, a 401/438 without nonce... */
  TV_TIMEOUT,           /* no answer at all (not from turn_classify) */
};

struct turn_answer {
  int code;
  char reason[96];      /* printable, trailing NULs stripped */
  char realm[128];
  uint8_t nonce[128];
  size_t nonce_len;
};

/* Judges a response to a request sent with (key != NULL) or without
 * credentials. */
enum turn_verdict turn_classify(const struct stun_msg *m, const uint8_t *key,
                                struct turn_answer *out);
const char *turn_verdict_name(enum turn_verdict v);
const char *turn_state_name(enum turn_state s);

/* "turn:host[:port][?transport=udp|tcp]": host (no brackets), port (3478),
 * transports (bit 0 UDP, bit 1 TCP: both without "?transport"). 0, or -1
 * with why ("turns:" is refused: TLS to the server is not supported). */
int turn_parse_url(const char *url, char *host, size_t hostcap, uint16_t *port,
                   unsigned *transports, char *why, size_t whycap);

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

struct turn_resolve;

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

  struct turn_resolve *res;
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

struct cand;

/* This node's candidates as it advertises them (CAND_* of candidates.h):
 * host and srflx addresses with the TCP listen port, relayed addresses as
 * allocated. Returns how many (at most cap). */
int turn_local_candidates(const struct nat *nt, int listen_port, struct cand *out, int cap);
/* Files what a node advertises: without candidates entry_url goes to the
 * peer store as before; with them, entry_url and the TCP candidates are
 * merged into its addresses in this node's dial order (cand_merge_urls: an
 * address that worked stays first). */
void turn_learn_candidates(struct netmgr *nm, const char *node_id_hex, const char *entry_url,
                           const struct cand *c, int n, const char *source);

/* The nat_traversal consumer (netmgr hooks): the sender's new candidates. */
int turn_on_nat_traversal(void *ud, struct peer *p, const struct envelope *e);

#endif
