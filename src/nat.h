/* nat: NAT traversal for the node — one UDP socket, a STUN server on it,
 * a STUN client to natTraversal.stunServers (nat_client.c), NAT behaviour
 * discovery (RFC 5780, nat_disc.c) and the list of candidates (nat_cand.h:
 * host, srflx, and relay from the TURN client in turn.c, which shares the
 * socket: datagrams from its servers go to it).
 *
 * The socket is bound to host:udpPort (udpPort: the TCP port the node
 * listens on). Every node answers STUN Binding requests there, so bootstrap
 * nodes serve STUN to the network. The client sends a Binding request to
 * every configured server each round (at start, every refresh interval and
 * on nat_discover()), retransmitting per RFC 8489 §6.2.1; the first server
 * to answer gives the external address. When a server offers OTHER-ADDRESS
 * the node then runs the filtering test and the mapping test against it.
 *
 * Must not: block the loop (numeric addresses are used as they are; host
 * names go to getaddrinfo_a and are polled; only a non-numeric `host` to bind
 * is resolved synchronously, once at start), answer anything but Binding
 * requests, or touch peers and the network manager (turn.c does, for the
 * relay's permissions and the candidates peers are told about).
 */
#ifndef BT2C_NAT_H
#define BT2C_NAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf.h"
#include "log.h"
#include "loop.h"
#include "stun.h"

#define NAT_MAX_SERVERS 16
#define NAT_MAX_HOST 8
#define NAT_MAX_RELAY 8 /* TURN_MAX_ALLOCS */
#define NAT_MAX_CANDIDATES (NAT_MAX_HOST + NAT_MAX_SERVERS + NAT_MAX_RELAY)
#define NAT_MAX_TXN (NAT_MAX_SERVERS + 2) /* one Binding per server + a discovery probe */

/* Transaction timing. The node fills it from the configuration; tests
 * shorten it. Requests go out at 0, rto, 3 rto, 7 rto, ... (each wait
 * doubles); after the rc-th the client waits rm * rto more, then gives up.
 * RFC 8489 §6.2.1: 500 ms, 7, 16, which is 39.5 s in all. */
struct nat_timing {
  double rto_ms;       /* first retransmission timeout */
  int rc;              /* requests sent per transaction */
  int rm;              /* final wait, in multiples of rto_ms */
  double probe_rto_ms; /* RFC 5780 probes: no answer is an answer there, */
  int probe_rc;        /* so they give up sooner */
  int probe_rm;
  double refresh_ms; /* a new round this often */
  double resolve_timeout_ms; /* host name lookups give up after this */
};
void nat_timing_default(struct nat_timing *t);

enum nat_server_state {
  NAT_SRV_IDLE,      /* no round yet */
  NAT_SRV_RESOLVING, /* host name lookup under way */
  NAT_SRV_WAITING,   /* Binding sent, no answer yet */
  NAT_SRV_OK,
  NAT_SRV_TIMEOUT,
  NAT_SRV_ERROR,      /* error response, or an unusable success */
  NAT_SRV_UNRESOLVED, /* the host name did not resolve */
};

struct resolve; /* a pending getaddrinfo_a (resolve.h; heap: it may outlive the node) */
struct turn;

struct nat_server {
  char url[272];  /* as configured: "stun:host[:port]" */
  char host[256]; /* without brackets */
  uint16_t port;
  bool numeric;
  struct stun_addr addr; /* valid once resolved */
  bool have_addr;
  enum nat_server_state state;
  struct stun_addr mapped, other; /* XOR-MAPPED-ADDRESS, OTHER-ADDRESS */
  bool have_mapped, have_other;
  int tries;     /* requests sent in the last transaction */
  double rtt_ms; /* first send to the answer */
  int error_code;
  char error[96]; /* the error reason or why it failed, for the console */
  struct resolve *res;
  double resolve_deadline;
};

enum nat_cand_type { NAT_CAND_HOST, NAT_CAND_SRFLX, NAT_CAND_RELAY };

struct nat_candidate {
  enum nat_cand_type type;
  struct stun_addr addr;
  uint32_t priority; /* RFC 8445 §5.1.2.1 */
  int server;        /* srflx: the STUN server that reported it; relay: the allocation */
  unsigned round;    /* srflx: last round that confirmed it */
  uint8_t transport; /* STUN_TRANSPORT_UDP; a TCP relay: STUN_TRANSPORT_TCP */
};

enum nat_mapping { NAT_MAP_UNKNOWN, NAT_MAP_EIM, NAT_MAP_ADM, NAT_MAP_APDM };
enum nat_filtering { NAT_FILT_UNKNOWN, NAT_FILT_EIF, NAT_FILT_ADF, NAT_FILT_APDF };
enum nat_disc_state {
  NAT_DISC_NONE,        /* not run yet */
  NAT_DISC_RUNNING,
  NAT_DISC_DONE,
  NAT_DISC_UNSUPPORTED, /* the servers that answered offer no OTHER-ADDRESS */
  NAT_DISC_FAILED,      /* no server answered */
};

struct nat_behaviour {
  enum nat_disc_state state;
  enum nat_mapping mapping;
  enum nat_filtering filtering;
  bool behind_nat; /* the mapped address is none of the host candidates */
  int server;      /* index of the server used, or -1 */
  struct stun_addr map1, map2, map3, primary, other;
  double finished; /* monotonic seconds */
};

enum nat_purpose {
  NAT_TX_BIND,      /* a round's Binding to one server */
  NAT_TX_FILT_BOTH, /* CHANGE-REQUEST ip+port: an answer means EIF */
  NAT_TX_FILT_PORT, /* CHANGE-REQUEST port: an answer means ADF */
  NAT_TX_MAP2,      /* to OTHER-ADDRESS's IP, primary port */
  NAT_TX_MAP3,      /* to OTHER-ADDRESS */
};

struct nat;

struct nat_txn {
  bool active;
  enum nat_purpose purpose;
  int server;
  struct stun_addr to;
  uint8_t msg[48]; /* a Binding request: header, CHANGE-REQUEST, FINGERPRINT */
  size_t msg_len;
  int sends, rc, rm;
  double rto_ms, first_sent;
  int last_errno; /* of the last failed send, for the timeout line */
  struct loop_timer timer;
  struct nat *nat;
};

struct nat_stats {
  uint64_t requests;    /* Binding requests sent (first transmissions) */
  uint64_t retransmits;
  uint64_t responses;   /* answers matched to one of our transactions */
  uint64_t error_responses;
  uint64_t timeouts;    /* transactions given up after the last wait */
  uint64_t malformed;   /* datagrams dropped: not STUN, or failed the checks */
  uint64_t served;      /* Binding responses sent by the server */
  uint64_t rate_limited; /* Binding requests not answered: over the server's budget */
  uint64_t stray;       /* well-formed responses to no transaction of ours */
  uint64_t ignored;     /* well-formed STUN the server does not answer */
  uint64_t send_errors;
  uint64_t rounds;
};

struct nat {
  struct loop *loop;
  bool running;
  char disabled[160]; /* why NAT traversal is off, when it is */
  struct loop_io io;
  bool io_open;
  int af;                 /* AF_INET, or AF_INET6 (dual-stack when bound to ::) */
  struct stun_addr local; /* the bound address; the IP may be the wildcard */
  bool wildcard;
  uint16_t port;
  struct nat_timing t;
  bool prefer_host;          /* preferredMethod = "host" */
  bool prefer_turn;          /* preferredMethod = "turn" */
  char cand_pref[12];        /* candidatePreference */

  struct nat_server servers[NAT_MAX_SERVERS];
  int n_servers;
  struct nat_txn txn[NAT_MAX_TXN];
  struct nat_candidate cand[NAT_MAX_CANDIDATES];
  int n_cand;

  bool have_external;
  struct stun_addr external;
  int external_server;

  unsigned round;
  bool round_active, round_ok, disc_started;
  struct nat_behaviour beh;

  struct loop_timer refresh_timer, resolve_timer;
  bool resolve_timer_on;
  double serve_window; /* the server's budget: responses per second */
  unsigned serve_count;
  struct nat_stats stats;
  struct log_limit drop_limit, send_limit;
  struct turn *turn; /* the TURN client (turn.h); NULL when not running */
};

/* Binds the UDP socket to c->host:udp_port and starts the first round.
 * timing NULL: the RFC 8489 defaults. Returns 0, or -1 when NAT traversal is
 * off (the socket could not be bound; logged, with the reason kept in
 * nt->disabled): the node still works over TCP. */
int nat_start(struct nat *nt, struct loop *l, const struct conf *c, int udp_port,
              const struct nat_timing *timing);
void nat_stop(struct nat *nt);

/* Starts a round now (nat.discover()). Returns 1 when one started, 0 when
 * one is already under way, -1 when NAT traversal is off. */
int nat_discover(struct nat *nt);

/* The candidates and the address peers should use: nat_cand.h. */

const char *nat_cand_type_name(enum nat_cand_type t);
const char *nat_mapping_name(enum nat_mapping m);     /* NULL when unknown */
const char *nat_filtering_name(enum nat_filtering f); /* NULL when unknown */
const char *nat_disc_state_name(enum nat_disc_state s);
const char *nat_server_state_name(enum nat_server_state s);

#endif
