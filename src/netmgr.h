/* netmgr: the NetworkManager — which peers the node is connected to.
 *
 * Owns the set of connections: limits (maxPeers, maxInbound, maxOutbound),
 * dialling (anchors and the best known nodes from the peer store, bootstrap
 * and persistent peers with capped exponential backoff and jitter), the
 * handshake state machine on top of handshake.c, duplicate and self
 * connections, inbound eviction, pings and dead peers, peer exchange, message
 * counters, and the events the trusted Lua state listens to.
 *
 * Must not: run Lua per message (events go through the callbacks in
 * struct netmgr_events only when someone listens), or block the loop.
 */
#ifndef BT2C_NETMGR_H
#define BT2C_NETMGR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "log.h"
#include "identity.h"
#include "loop.h"
#include "peer.h"
#include "relay.h"
#include "scoring.h"
#include "transport.h"

struct peerstore;
struct policy_host;

/* What the node wants to hear about (lnetwork.c wires these to Lua). */
/* The node's own consumers of application messages (chain store, sync,
 * consensus): C callbacks, called before the Lua listeners, once per message
 * id. A consumer returns 0, or -1 when the message was bad (the sender is
 * then penalised with `behavior`). */
typedef int (*netmgr_consumer)(void *ud, struct peer *p, const struct envelope *e);

/* What the node knows beyond the network (set by the integration layer). */
struct netmgr_hooks {
  void *ud;
  netmgr_consumer consume[MSG_TYPE_COUNT];
  void *consume_ud[MSG_TYPE_COUNT]; /* a consumer's own context (NULL: ud) */
  /* The current chain height, announced in the handshake (NULL: 0). */
  long long (*height)(void *ud);
  /* Whether a node id is in the current validator set (NULL: the
   * configuration's `validators`). */
  bool (*is_validator)(void *ud, const char *id_hex);
  /* The node's connection candidates for its HELLO (NAT layer; NULL: none):
   * fills out, at most cap, returns how many. */
  int (*candidates)(void *ud, struct cand *out, int cap);
  void *candidates_ud;
  /* A peer finished its handshake (its HELLO height is known). */
  void (*peer_ready)(void *ud, struct peer *p);
};

struct netmgr_events {
  void *ud;
  void (*connected)(void *ud, struct peer *p);
  void (*disconnected)(void *ud, struct peer *p);
  /* An application message (types 4..13) from p; payload is valid JSON. */
  void (*message)(void *ud, struct peer *p, const struct envelope *e);
  /* Bit t set: someone listens to message type t. */
  uint32_t message_mask;
};

/* A URL the node dials on its own: persistent peers (redialled forever) and
 * bootstrap peers (dialled while outbound slots are free). */
struct dial_target {
  char url[128];
  bool persistent;
  double next_try; /* monotonic */
  double backoff;  /* seconds */
  int failures;
  struct peer *conn; /* current connection attempt or peer, or NULL */
};

/* A stored node dialled recently, not to be tried again before `until`. */
struct dial_recent {
  char id[ENV_NODE_ID_LEN * 2 + 1];
  double until;
};

struct netmgr_stats {
  uint64_t msgs_in[MSG_TYPE_COUNT], msgs_out[MSG_TYPE_COUNT];
  uint64_t bytes_in[MSG_TYPE_COUNT], bytes_out[MSG_TYPE_COUNT];
  uint64_t accepted, dialled, dial_failures, handshakes_ok, handshakes_failed;
  uint64_t refused[16]; /* by close code 4000..4015 */
  uint64_t invalid_messages, dropped_sends;
};

struct netmgr {
  struct conf *conf;
  struct loop *loop;
  struct identity me;
  struct transport tr;
  struct peerstore *store;
  struct policy_host *policy;
  struct scoring scoring;
  struct relay relay;
  struct netmgr_events ev;
  struct netmgr_hooks hooks;

  struct peer *peers; /* every connection, any state */
  struct peer **table; /* established peers by id */
  unsigned table_cap;
  int n_inbound, n_outbound; /* established */
  int n_dialing, n_handshaking;
  unsigned next_serial;

  struct dial_target *targets;
  int n_targets;
  struct dial_recent recent[256];
  unsigned recent_next;

  struct loop_timer tick;
  double next_discovery, next_flush, next_score;
  char listen_url[128];
  struct netmgr_stats stats;
  struct log_limit prehandshake_limit;
  double started; /* monotonic */
  bool stopping;
};

/* Loads or creates the node key, opens the peer store, starts listening and
 * the periodic work. Returns 0, or -1 after logging why. */
int netmgr_start(struct netmgr *nm, struct conf *c, struct loop *l, struct policy_host *policy);
/* Closes every connection (1001) and flushes the peer store. */
void netmgr_stop(struct netmgr *nm);

/* Dials url now (console `network.connect`). */
int netmgr_connect(struct netmgr *nm, const char *url, const char *source, char *err,
                   size_t errcap);
/* Closes the connection to the node with id_hex (1000). Returns 0 or -1. */
int netmgr_disconnect(struct netmgr *nm, const char *id_hex, int code, const char *reason);

struct peer *netmgr_find(const struct netmgr *nm, const uint8_t id[ENV_NODE_ID_LEN]);
struct peer *netmgr_find_hex(const struct netmgr *nm, const char *id_hex);

/* Encodes one envelope from this node (type, JSON payload) and queues it for
 * p, or for every established peer when p is NULL. Returns the number of
 * peers it was queued for, or -1 if the payload is not valid JSON or too big. */
int netmgr_send(struct netmgr *nm, struct peer *p, int type, const char *payload, size_t len);

/* Bans the node of s for `seconds`: by node id, and by address (its IP, or
 * ip:listenPort for loopback peers, which share one IP); drops its
 * connection with 4010. */
void netmgr_ban(struct netmgr *nm, struct score *s, double seconds, const char *reason);
/* Lifts the node's ban and its address bans; it is on probation after. */
void netmgr_unban(struct netmgr *nm, struct score *s);
/* Closes p for a protocol violation: logged, counted, penalised. */
void netmgr_reject(struct netmgr *nm, struct peer *p, int type, int code, const char *why);
/* Hands an application message to the node's consumers and listeners
 * (once per id). Returns -1 if a consumer refused it (not to be relayed). */
int netmgr_deliver(struct netmgr *nm, struct peer *p, const struct envelope *e);
/* Records a behaviour of an established peer found misbehaving by C. */
void netmgr_penalise(struct netmgr *nm, struct peer *p, enum behavior b);
/* The validator set changed (integration layer): peers are re-evaluated. */
void netmgr_validators_changed(struct netmgr *nm);
/* After a policy reload: every known peer is scored again at once. */
void netmgr_policies_reloaded(struct netmgr *nm);

/* Asks every connection to close (shutdown); netmgr_idle() tells when all
 * are gone. */
void netmgr_close_all(struct netmgr *nm, int code, const char *reason);
bool netmgr_idle(const struct netmgr *nm);

/* ---- within the netmgr family (netmgr_dial.c, control.c) --------------- */
double netmgr_wallclock_ms(void);
struct peer *netmgr_new_peer(struct netmgr *nm, bool inbound);
void netmgr_release(struct netmgr *nm, struct peer *p);
struct msgbuf *netmgr_encode(struct netmgr *nm, int type, const char *payload, size_t len);
void netmgr_queue(struct netmgr *nm, struct peer *p, struct msgbuf *m);
void netmgr_send_json(struct netmgr *nm, struct peer *p, int type, const struct buf *b);
void netmgr_unestablish(struct netmgr *nm, struct peer *p);
/* Counts an established peer in and puts it in the id table. */
void netmgr_table_insert(struct netmgr *nm, struct peer *p);
bool netmgr_is_validator(const struct netmgr *nm, const struct peer *p);
/* The URL other nodes can dial p at ("" if unknown): the dialled URL, or for
 * an inbound peer its TCP address with the listenPort of its hello. */
void netmgr_peer_url(const struct peer *p, char *out, size_t cap);
/* The address-ban keys of a connected peer (its IP unless loopback, and
 * ip:port of where it listens); returns how many. */
int netmgr_ban_keys(const struct peer *p, char out[2][80]);

/* ---- called by transport -------------------------------------------- */
bool netmgr_allow_inbound(struct netmgr *nm, const char *ip);
struct peer *netmgr_inbound_opened(struct netmgr *nm, struct lws *wsi, const char *remote);
void netmgr_outbound_opened(struct netmgr *nm, struct peer *p);
void netmgr_dial_failed(struct netmgr *nm, struct peer *p, const char *why);
void netmgr_on_message(struct netmgr *nm, struct peer *p, const uint8_t *data, size_t len);
void netmgr_on_closed(struct netmgr *nm, struct peer *p, int code, const char *reason);

#endif
