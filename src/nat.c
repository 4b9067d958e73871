/* nat: see nat.h.
 *
 * One datagram path: on_readable -> handle_datagram, which drops what is not
 * well-formed STUN, hands requests to the server (serve) and responses to the
 * transaction they answer (on_response). Transactions live in a fixed array;
 * each has its own retransmission timer. A round sends one Binding per
 * server and ends when every server has answered, timed out or failed and
 * the behaviour discovery it started (if any) has finished.
 */
#include "nat.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "turn.h"

#define SOFTWARE "bt2cd"
#define SERVE_PER_SECOND 2000 /* caps what a spoofed-source flood can reflect */
#define RECV_BATCH 64         /* datagrams per readiness callback */
#define RESOLVE_POLL_MS 20
#define DEFAULT_STUN_PORT 3478

/* A pending getaddrinfo_a request. glibc's worker thread writes into it, so
 * it is on the heap and, if it cannot be cancelled at stop, left there. */
struct nat_resolve {
  struct gaicb cb;
  struct addrinfo hints;
  char host[256];
  char service[8];
};

void nat_timing_default(struct nat_timing *t) {
  t->rto_ms = 500;
  t->rc = 7;
  t->rm = 16;
  t->probe_rto_ms = 200;
  t->probe_rc = 4;
  t->probe_rm = 4;
  t->refresh_ms = 300000;
  t->resolve_timeout_ms = 10000;
}

/* ---- names --------------------------------------------------------------- */

const char *nat_cand_type_name(enum nat_cand_type t) {
  return t == NAT_CAND_HOST ? "host" : t == NAT_CAND_SRFLX ? "srflx" : "relay";
}

const char *nat_mapping_name(enum nat_mapping m) {
  switch (m) {
    case NAT_MAP_EIM: return "endpoint_independent";
    case NAT_MAP_ADM: return "address_dependent";
    case NAT_MAP_APDM: return "address_and_port_dependent";
    default: return NULL;
  }
}

const char *nat_filtering_name(enum nat_filtering f) {
  switch (f) {
    case NAT_FILT_EIF: return "endpoint_independent";
    case NAT_FILT_ADF: return "address_dependent";
    case NAT_FILT_APDF: return "address_and_port_dependent";
    default: return NULL;
  }
}

const char *nat_disc_state_name(enum nat_disc_state s) {
  static const char *const names[] = {"none", "running", "done", "unsupported", "failed"};
  return names[s];
}

const char *nat_server_state_name(enum nat_server_state s) {
  static const char *const names[] = {"idle", "resolving", "waiting", "ok",
                                      "timeout", "error", "unresolved"};
  return names[s];
}

uint32_t nat_priority(enum nat_cand_type t, uint16_t local_pref) {
  uint32_t type_pref = t == NAT_CAND_HOST ? 126 : t == NAT_CAND_SRFLX ? 100 : 0;
  return (type_pref << 24) + ((uint32_t)local_pref << 8) + (256 - 1); /* component 1 */
}

static double now_ms(void) { return log_monotonic() * 1000.0; }

/* Printable copy of an untrusted reason phrase. */
static void copy_text(char *dst, size_t cap, const uint8_t *src, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n && k + 1 < cap; i++)
    dst[k++] = (src[i] < 0x20 || src[i] == 0x7f) ? '?' : (char)src[i];
  dst[k] = '\0';
}

/* ---- configuration ------------------------------------------------------- */

/* "stun:host[:port]" (IPv6 in brackets). Returns 0, or -1 with why. */
static int parse_url(const char *url, struct nat_server *s, char *why, size_t cap) {
  if (strncmp(url, "stun:", 5) != 0) {
    snprintf(why, cap, "it must start with stun:");
    return -1;
  }
  const char *rest = url + 5, *port = NULL;
  size_t hl;
  if (rest[0] == '[') {
    const char *close = strchr(rest, ']');
    if (close == NULL) {
      snprintf(why, cap, "an IPv6 address must end with ']'");
      return -1;
    }
    rest++;
    hl = (size_t)(close - rest);
    if (close[1] == ':') port = close + 2;
    else if (close[1] != '\0') {
      snprintf(why, cap, "unexpected text after ']'");
      return -1;
    }
  } else {
    const char *colon = strchr(rest, ':');
    hl = colon ? (size_t)(colon - rest) : strlen(rest);
    if (colon) port = colon + 1;
  }
  if (hl == 0 || hl >= sizeof s->host) {
    snprintf(why, cap, "the host is empty or too long");
    return -1;
  }
  memcpy(s->host, rest, hl);
  s->host[hl] = '\0';
  long p = DEFAULT_STUN_PORT;
  if (port) {
    char *end;
    p = strtol(port, &end, 10);
    if (*port == '\0' || *end != '\0' || p < 1 || p > 65535) {
      snprintf(why, cap, "the port must be 1..65535");
      return -1;
    }
  }
  s->port = (uint16_t)p;
  snprintf(s->url, sizeof s->url, "%s", url);
  s->numeric = stun_addr_set(&s->addr, s->host, s->port) == 0;
  s->have_addr = s->numeric;
  return 0;
}

/* The address to bind: a numeric address, an interface name, or a host
 * name (resolved here, blocking, once at start). */
static int bind_address(const char *host, uint16_t port, struct stun_addr *a, char *why,
                        size_t cap) {
  char h[256];
  if (host == NULL || host[0] == '\0') host = "0.0.0.0";
  size_t n = strlen(host);
  if (host[0] == '[' && n > 2 && host[n - 1] == ']' && n - 2 < sizeof h) {
    memcpy(h, host + 1, n - 2);
    h[n - 2] = '\0';
  } else {
    snprintf(h, sizeof h, "%s", host);
  }
  if (stun_addr_set(a, h, port) == 0) return 0;
  struct ifaddrs *ifs = NULL;
  if (getifaddrs(&ifs) == 0) {
    for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
      if (i->ifa_addr == NULL || strcmp(i->ifa_name, h) != 0 || i->ifa_addr->sa_family != AF_INET)
        continue;
      stun_addr_from_sockaddr(a, i->ifa_addr, sizeof(struct sockaddr_in));
      a->port = port;
      freeifaddrs(ifs);
      return 0;
    }
    freeifaddrs(ifs);
  }
  struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM}, *res = NULL;
  int e = getaddrinfo(h, NULL, &hints, &res);
  if (e != 0 || res == NULL) {
    snprintf(why, cap, "host %.64s does not resolve: %s", h, e ? gai_strerror(e) : "no address");
    return -1;
  }
  int rc = stun_addr_from_sockaddr(a, res->ai_addr, res->ai_addrlen);
  a->port = port;
  freeaddrinfo(res);
  return rc;
}

static bool is_zero(const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i]) return false;
  return true;
}

static int open_socket(struct nat *nt, const struct conf *c, int udp_port) {
  char why[128];
  if (udp_port < 0 || udp_port > 65535) {
    snprintf(nt->disabled, sizeof nt->disabled, "UDP port %d is not in 0..65535", udp_port);
    return -1;
  }
  if (bind_address(c->host, (uint16_t)udp_port, &nt->local, why, sizeof why) != 0) {
    snprintf(nt->disabled, sizeof nt->disabled, "%s", why);
    return -1;
  }
  nt->af = nt->local.family == STUN_FAMILY_IPV6 ? AF_INET6 : AF_INET;
  nt->wildcard = is_zero(nt->local.ip, nt->af == AF_INET6 ? 16 : 4);
  int fd = socket(nt->af, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    snprintf(nt->disabled, sizeof nt->disabled, "socket: %s", strerror(errno));
    return -1;
  }
  if (nt->af == AF_INET6) { /* "::" serves IPv4 too, like the TCP listener */
    int off = 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  }
  struct sockaddr_storage ss;
  socklen_t sl = stun_addr_to_sockaddr(&nt->local, nt->af, &ss);
  char at[STUN_ADDR_STRLEN];
  if (bind(fd, (struct sockaddr *)&ss, sl) != 0) {
    snprintf(nt->disabled, sizeof nt->disabled,
             "cannot bind UDP %s: %s (another program holds that UDP port)",
             stun_addr_str(&nt->local, at, sizeof at), strerror(errno));
    close(fd);
    return -1;
  }
  sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
    struct stun_addr bound;
    if (stun_addr_from_sockaddr(&bound, (struct sockaddr *)&ss, sl) == 0)
      nt->local.port = bound.port;
  }
  nt->port = nt->local.port;
  nt->io.fd = fd;
  return 0;
}

/* ---- candidates ---------------------------------------------------------- */

/* Priorities from each candidate's rank within its type (local preference
 * 65535, 65534, ...), so they stay unique as candidates come and go. */
static void renumber(struct nat *nt) {
  int rank[3] = {0, 0, 0};
  for (int i = 0; i < nt->n_cand; i++) {
    struct nat_candidate *c = &nt->cand[i];
    c->priority = nat_priority(c->type, (uint16_t)(65535 - rank[c->type]++));
  }
}

static void drop_candidates(struct nat *nt,
                            bool (*gone)(const struct nat *, const struct nat_candidate *)) {
  int k = 0;
  for (int i = 0; i < nt->n_cand; i++)
    if (!gone(nt, &nt->cand[i])) nt->cand[k++] = nt->cand[i];
  nt->n_cand = k;
  renumber(nt);
}

static bool is_host(const struct nat *nt, const struct nat_candidate *c) {
  (void)nt;
  return c->type == NAT_CAND_HOST;
}

static bool is_stale_srflx(const struct nat *nt, const struct nat_candidate *c) {
  return c->type == NAT_CAND_SRFLX && c->round != nt->round;
}

static bool is_relay(const struct nat *nt, const struct nat_candidate *c) {
  (void)nt;
  return c->type == NAT_CAND_RELAY;
}

static void add_candidate(struct nat *nt, enum nat_cand_type t, const struct stun_addr *a,
                          int server, uint8_t transport) {
  for (int i = 0; i < nt->n_cand; i++) {
    struct nat_candidate *c = &nt->cand[i];
    if (c->type == t && c->transport == transport && stun_addr_equal(&c->addr, a)) {
      c->round = nt->round;
      return;
    }
  }
  if (nt->n_cand >= NAT_MAX_CANDIDATES) return;
  /* Host candidates first in the array: the first is the "host" address. */
  int at = nt->n_cand;
  if (t == NAT_CAND_HOST)
    while (at > 0 && nt->cand[at - 1].type != NAT_CAND_HOST) at--;
  memmove(&nt->cand[at + 1], &nt->cand[at], (size_t)(nt->n_cand - at) * sizeof nt->cand[0]);
  nt->cand[at] = (struct nat_candidate){
      .type = t, .addr = *a, .server = server, .round = nt->round, .transport = transport};
  nt->n_cand++;
  renumber(nt);
}

static bool link_local_v6(const struct stun_addr *a) {
  return a->family == STUN_FAMILY_IPV6 && a->ip[0] == 0xfe && (a->ip[1] & 0xc0) == 0x80;
}

/* Host candidates: the bound address, or every usable interface address
 * when bound to the wildcard. Loopback counts only when bound to it. */
static void gather_host(struct nat *nt) {
  drop_candidates(nt, is_host);
  if (!nt->wildcard) {
    add_candidate(nt, NAT_CAND_HOST, &nt->local, -1, STUN_TRANSPORT_UDP);
    return;
  }
  struct ifaddrs *ifs = NULL;
  if (getifaddrs(&ifs) != 0) return;
  int n = 0;
  for (struct ifaddrs *i = ifs; i && n < NAT_MAX_HOST; i = i->ifa_next) {
    if (i->ifa_addr == NULL || !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK)) continue;
    int fam = i->ifa_addr->sa_family;
    if (fam != AF_INET && !(fam == AF_INET6 && nt->af == AF_INET6)) continue;
    struct stun_addr a;
    socklen_t len = fam == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    if (stun_addr_from_sockaddr(&a, i->ifa_addr, len) != 0 || link_local_v6(&a)) continue;
    a.port = nt->port;
    add_candidate(nt, NAT_CAND_HOST, &a, -1, STUN_TRANSPORT_UDP);
    n++;
  }
  freeifaddrs(ifs);
}

static bool is_host_addr(const struct nat *nt, const struct stun_addr *a) {
  for (int i = 0; i < nt->n_cand; i++)
    if (nt->cand[i].type == NAT_CAND_HOST && stun_addr_equal(&nt->cand[i].addr, a)) return true;
  return false;
}

/* ---- transactions -------------------------------------------------------- */

struct outcome {
  enum { OUT_OK, OUT_TIMEOUT, OUT_ERROR } kind;
  struct stun_addr mapped, other;
  bool have_other;
  int code;
  char reason[96];
};

static void round_check_end(struct nat *nt);
static void dispatch(struct nat *nt, enum nat_purpose p, int server, int sends, double rtt,
                     const struct outcome *o);

static void txn_send(struct nat_txn *x);

static void txn_timer_fired(struct loop_timer *t) {
  struct nat_txn *x = t->user;
  if (!x->active) return;
  if (x->sends < x->rc) {
    txn_send(x);
    return;
  }
  struct nat *nt = x->nat;
  nt->stats.timeouts++;
  struct outcome o = {.kind = OUT_TIMEOUT};
  if (x->last_errno) snprintf(o.reason, sizeof o.reason, "%s", strerror(x->last_errno));
  enum nat_purpose p = x->purpose;
  int server = x->server, sends = x->sends;
  double waited = now_ms() - x->first_sent;
  x->active = false;
  dispatch(nt, p, server, sends, waited, &o);
}

static void txn_send(struct nat_txn *x) {
  struct nat *nt = x->nat;
  struct sockaddr_storage ss;
  socklen_t sl = stun_addr_to_sockaddr(&x->to, nt->af, &ss);
  if (sl == 0 || sendto(nt->io.fd, x->msg, x->msg_len, 0, (struct sockaddr *)&ss, sl) < 0) {
    x->last_errno = sl == 0 ? EAFNOSUPPORT : errno;
    nt->stats.send_errors++;
  }
  x->sends++;
  if (x->sends == 1) nt->stats.requests++;
  else nt->stats.retransmits++;
  double wait = x->sends < x->rc ? x->rto_ms * (double)(1u << (x->sends - 1)) : x->rm * x->rto_ms;
  x->timer.user = x;
  loop_timer_start(nt->loop, &x->timer, wait, txn_timer_fired);
}

/* Sends a Binding request (with CHANGE-REQUEST flags when change != 0).
 * Returns 0, or -1 when no slot is free or the CSPRNG failed. */
static int txn_start(struct nat *nt, enum nat_purpose p, int server, const struct stun_addr *to,
                     uint32_t change) {
  struct nat_txn *x = NULL;
  for (int i = 0; i < NAT_MAX_TXN && x == NULL; i++)
    if (!nt->txn[i].active) x = &nt->txn[i];
  if (x == NULL) return -1;
  memset(x, 0, sizeof *x);
  x->nat = nt;
  x->purpose = p;
  x->server = server;
  x->to = *to;
  struct stun_writer w;
  stun_begin(&w, x->msg, sizeof x->msg, STUN_BINDING, STUN_REQUEST, NULL);
  if (change) stun_put_u32(&w, STUN_A_CHANGE_REQUEST, change);
  stun_put_fingerprint(&w);
  x->msg_len = stun_finish(&w);
  if (x->msg_len == 0) return -1;
  bool probe = p != NAT_TX_BIND;
  x->rto_ms = probe ? nt->t.probe_rto_ms : nt->t.rto_ms;
  x->rc = probe ? nt->t.probe_rc : nt->t.rc;
  x->rm = probe ? nt->t.probe_rm : nt->t.rm;
  x->active = true;
  x->first_sent = now_ms();
  txn_send(x);
  return 0;
}

static void on_response(struct nat *nt, const struct stun_msg *m, const struct stun_addr *from) {
  struct nat_txn *x = NULL;
  for (int i = 0; i < NAT_MAX_TXN && x == NULL; i++)
    if (nt->txn[i].active && memcmp(nt->txn[i].msg + 8, m->txid, STUN_TXID_LEN) == 0)
      x = &nt->txn[i];
  /* CHANGE-REQUEST answers come from the server's other address by design;
   * everything else must come from where the request went. */
  bool changed_origin = x && (x->purpose == NAT_TX_FILT_BOTH || x->purpose == NAT_TX_FILT_PORT);
  if (x == NULL || m->method != STUN_BINDING ||
      (!changed_origin && !stun_addr_equal(from, &x->to))) {
    nt->stats.stray++;
    return;
  }
  nt->stats.responses++;
  struct outcome o = {.kind = OUT_OK};
  struct stun_attr a;
  if (m->cls == STUN_ERROR) {
    nt->stats.error_responses++;
    o.kind = OUT_ERROR;
    const uint8_t *r;
    size_t rl;
    if (stun_find(m, STUN_A_ERROR_CODE, &a) && stun_attr_error(&a, &o.code, &r, &rl) == 0)
      copy_text(o.reason, sizeof o.reason, r, rl);
    else
      snprintf(o.reason, sizeof o.reason, "error response without a valid ERROR-CODE");
  } else if (m->n_unknown) { /* RFC 8489 §7.3.3: the transaction failed */
    o.kind = OUT_ERROR;
    snprintf(o.reason, sizeof o.reason,
             "the response carries unknown comprehension-required attribute 0x%04x",
             m->unknown[0]);
  } else if (stun_get_addr(m, STUN_A_XOR_MAPPED_ADDRESS, &o.mapped) != 0 &&
             stun_get_addr(m, STUN_A_MAPPED_ADDRESS, &o.mapped) != 0) {
    o.kind = OUT_ERROR;
    snprintf(o.reason, sizeof o.reason, "the response has no usable XOR-MAPPED-ADDRESS");
  } else {
    o.have_other = stun_get_addr(m, STUN_A_OTHER_ADDRESS, &o.other) == 0;
  }
  enum nat_purpose p = x->purpose;
  int server = x->server, sends = x->sends;
  double rtt = now_ms() - x->first_sent;
  loop_timer_stop(&x->timer);
  x->active = false;
  dispatch(nt, p, server, sends, rtt, &o);
}

/* ---- behaviour discovery (RFC 5780 §4.3, §4.4) --------------------------- */

static void disc_finish(struct nat *nt) {
  struct nat_behaviour *b = &nt->beh;
  b->state = NAT_DISC_DONE;
  b->finished = log_monotonic();
  const char *map = nat_mapping_name(b->mapping), *filt = nat_filtering_name(b->filtering);
  log_at(LV_INFO, "nat_behaviour", "mapping=%s filtering=%s behind_nat=%s server=%s",
         map ? map : "unknown", filt ? filt : "unknown", b->behind_nat ? "yes" : "no",
         nt->servers[b->server].url);
}

static void disc_mapping(struct nat *nt) {
  struct stun_addr to = nt->beh.other;
  to.port = nt->beh.primary.port; /* test II: the other IP, the primary port */
  if (txn_start(nt, NAT_TX_MAP2, nt->beh.server, &to, 0) != 0) disc_finish(nt);
}

static void disc_start(struct nat *nt, int server) {
  struct nat_server *s = &nt->servers[server];
  struct nat_behaviour *b = &nt->beh;
  nt->disc_started = true;
  memset(b, 0, sizeof *b);
  b->state = NAT_DISC_RUNNING;
  b->server = server;
  b->primary = s->addr;
  b->other = s->other;
  b->map1 = s->mapped;
  b->behind_nat = !is_host_addr(nt, &s->mapped);
  /* Filtering first: the mapping test sends to the other address, which
   * would open the NAT's filter to it and make filtering look looser. */
  if (txn_start(nt, NAT_TX_FILT_BOTH, server, &s->addr, STUN_CHANGE_IP | STUN_CHANGE_PORT) != 0)
    disc_mapping(nt);
}

static void disc_step(struct nat *nt, enum nat_purpose p, const struct outcome *o) {
  struct nat_behaviour *b = &nt->beh;
  switch (p) {
    case NAT_TX_FILT_BOTH:
      if (o->kind == OUT_OK) b->filtering = NAT_FILT_EIF;
      if (o->kind == OUT_TIMEOUT &&
          txn_start(nt, NAT_TX_FILT_PORT, b->server, &b->primary, STUN_CHANGE_PORT) == 0)
        return;
      disc_mapping(nt); /* an error (420: no CHANGE-REQUEST) leaves filtering unknown */
      return;
    case NAT_TX_FILT_PORT:
      if (o->kind == OUT_OK) b->filtering = NAT_FILT_ADF;
      if (o->kind == OUT_TIMEOUT) b->filtering = NAT_FILT_APDF;
      disc_mapping(nt);
      return;
    case NAT_TX_MAP2:
      if (o->kind != OUT_OK) break;
      b->map2 = o->mapped;
      if (stun_addr_equal(&b->map2, &b->map1)) {
        b->mapping = NAT_MAP_EIM;
        break;
      }
      if (txn_start(nt, NAT_TX_MAP3, b->server, &b->other, 0) == 0) return;
      break;
    case NAT_TX_MAP3:
      if (o->kind != OUT_OK) break;
      b->map3 = o->mapped;
      b->mapping = stun_addr_equal(&b->map3, &b->map2) ? NAT_MAP_ADM : NAT_MAP_APDM;
      break;
    default:
      return;
  }
  disc_finish(nt);
}

/* ---- rounds -------------------------------------------------------------- */

static void server_send(struct nat *nt, int i) {
  struct nat_server *s = &nt->servers[i];
  if (s->addr.family == STUN_FAMILY_IPV6 && nt->af == AF_INET) {
    s->state = NAT_SRV_ERROR;
    snprintf(s->error, sizeof s->error, "an IPv6 server needs the node's host to be IPv6 (\"::\")");
    log_at(LV_WARN, "stun_error", "server=%s err=%s", s->url, s->error);
    return;
  }
  if (txn_start(nt, NAT_TX_BIND, i, &s->addr, 0) != 0) {
    s->state = NAT_SRV_ERROR;
    snprintf(s->error, sizeof s->error, "cannot start a transaction");
    return;
  }
  s->state = NAT_SRV_WAITING;
}

static void bind_done(struct nat *nt, int i, int sends, double ms, const struct outcome *o) {
  struct nat_server *s = &nt->servers[i];
  char at[STUN_ADDR_STRLEN], got[STUN_ADDR_STRLEN];
  s->tries = sends;
  stun_addr_str(&s->addr, at, sizeof at);
  if (o->kind == OUT_TIMEOUT) {
    s->state = NAT_SRV_TIMEOUT;
    snprintf(s->error, sizeof s->error, "no answer after %d requests", sends);
    static const char fix[] = "no answer to any Binding request; check that the server is up "
                              "and that UDP to it is not blocked";
    if (o->reason[0])
      log_at(LV_WARN, "stun_timeout", "server=%s address=%s tries=%d waited_ms=%.0f "
             "last_send_error=%s msg=%s", s->url, at, sends, ms, o->reason, fix);
    else
      log_at(LV_WARN, "stun_timeout", "server=%s address=%s tries=%d waited_ms=%.0f msg=%s",
             s->url, at, sends, ms, fix);
    return;
  }
  if (o->kind == OUT_ERROR) {
    s->state = NAT_SRV_ERROR;
    s->error_code = o->code;
    snprintf(s->error, sizeof s->error, "%s", o->reason);
    log_at(LV_WARN, "stun_error", "server=%s address=%s code=%d reason=%s", s->url, at, o->code,
           o->reason);
    return;
  }
  s->state = NAT_SRV_OK;
  s->rtt_ms = ms;
  s->mapped = o->mapped;
  s->have_mapped = true;
  s->other = o->other;
  s->have_other = o->have_other;
  add_candidate(nt, NAT_CAND_SRFLX, &o->mapped, i, STUN_TRANSPORT_UDP);
  if (!nt->round_ok) {
    nt->round_ok = true;
    bool changed = !nt->have_external || !stun_addr_equal(&nt->external, &o->mapped);
    nt->external = o->mapped;
    nt->have_external = true;
    nt->external_server = i;
    if (changed)
      log_at(LV_INFO, "stun_external_address", "address=%s server=%s rtt_ms=%.0f",
             stun_addr_str(&o->mapped, got, sizeof got), s->url, ms);
  }
  if (!nt->disc_started && s->have_other && !stun_addr_same_ip(&s->other, &s->addr))
    disc_start(nt, i);
}

static void dispatch(struct nat *nt, enum nat_purpose p, int server, int sends, double ms,
                     const struct outcome *o) {
  if (p == NAT_TX_BIND)
    bind_done(nt, server, sends, ms, o);
  else
    disc_step(nt, p, o);
  round_check_end(nt);
}

static void resolve_start(struct nat *nt, int i);

static void round_start(struct nat *nt) {
  nt->round++;
  nt->stats.rounds++;
  nt->round_active = true;
  nt->round_ok = false;
  nt->disc_started = false;
  gather_host(nt);
  for (int i = 0; i < nt->n_servers; i++) {
    struct nat_server *s = &nt->servers[i];
    s->tries = 0;
    s->error_code = 0;
    s->error[0] = '\0';
    s->have_mapped = s->have_other = false;
    if (s->numeric) server_send(nt, i);
    else resolve_start(nt, i);
  }
  round_check_end(nt);
}

static void round_check_end(struct nat *nt) {
  if (!nt->round_active || nt->beh.state == NAT_DISC_RUNNING) return;
  for (int i = 0; i < nt->n_servers; i++)
    if (nt->servers[i].state == NAT_SRV_RESOLVING || nt->servers[i].state == NAT_SRV_WAITING)
      return;
  nt->round_active = false;
  drop_candidates(nt, is_stale_srflx);
  if (nt->n_servers == 0) return;
  if (!nt->round_ok) {
    if (nt->have_external)
      log_at(LV_WARN, "stun_failed", "servers=%d msg=%s", nt->n_servers,
             "no STUN server answered this round; the external address is now unknown");
    else
      log_at(LV_WARN, "stun_failed", "servers=%d msg=%s", nt->n_servers,
             "no STUN server answered; peers get host candidates only");
    nt->have_external = false;
  }
  /* A finished discovery stays until a new one replaces it. */
  if (!nt->disc_started && nt->beh.state != NAT_DISC_DONE) {
    nt->beh.state = nt->round_ok ? NAT_DISC_UNSUPPORTED : NAT_DISC_FAILED;
    nt->beh.server = -1;
  }
}

static void refresh_fired(struct loop_timer *t) {
  struct nat *nt = t->user;
  if (!nt->round_active) round_start(nt);
  nt->refresh_timer.user = nt;
  loop_timer_start(nt->loop, &nt->refresh_timer, nt->t.refresh_ms, refresh_fired);
}

/* ---- host name lookups --------------------------------------------------- */

static void resolve_failed(struct nat *nt, int i, const char *why) {
  struct nat_server *s = &nt->servers[i];
  s->state = NAT_SRV_UNRESOLVED;
  snprintf(s->error, sizeof s->error, "%s", why);
  log_at(LV_WARN, "stun_unresolved", "server=%s err=%s", s->url, why);
}

static void resolve_got(struct nat *nt, int i, const struct addrinfo *ai) {
  struct nat_server *s = &nt->servers[i];
  for (; ai; ai = ai->ai_next) {
    struct stun_addr a;
    if (stun_addr_from_sockaddr(&a, ai->ai_addr, ai->ai_addrlen) != 0) continue;
    if (a.family == STUN_FAMILY_IPV6 && nt->af == AF_INET) continue;
    a.port = s->port;
    s->addr = a;
    s->have_addr = true;
    server_send(nt, i);
    return;
  }
  resolve_failed(nt, i, "no address of a usable family");
}

static void resolve_poll(struct loop_timer *t) {
  struct nat *nt = t->user;
  bool pending = false;
  double now = now_ms();
  for (int i = 0; i < nt->n_servers; i++) {
    struct nat_server *s = &nt->servers[i];
    if (s->res == NULL) continue;
    int e = gai_error(&s->res->cb);
    if (e == EAI_INPROGRESS) {
      pending = true;
      if (s->state == NAT_SRV_RESOLVING && now > s->resolve_deadline)
        resolve_failed(nt, i, "the host name lookup timed out");
      continue;
    }
    if (s->state == NAT_SRV_RESOLVING) {
      if (e == 0) resolve_got(nt, i, s->res->cb.ar_result);
      else resolve_failed(nt, i, gai_strerror(e));
    }
    if (e == 0 && s->res->cb.ar_result) freeaddrinfo(s->res->cb.ar_result);
    free(s->res);
    s->res = NULL;
  }
  nt->resolve_timer_on = pending;
  if (pending) loop_timer_start(nt->loop, &nt->resolve_timer, RESOLVE_POLL_MS, resolve_poll);
  round_check_end(nt);
}

static void resolve_start(struct nat *nt, int i) {
  struct nat_server *s = &nt->servers[i];
  s->state = NAT_SRV_RESOLVING;
  s->resolve_deadline = now_ms() + nt->t.resolve_timeout_ms;
  if (s->res == NULL) { /* else an older lookup is still running: its answer will do */
    struct nat_resolve *r = calloc(1, sizeof *r);
    if (r == NULL) {
      resolve_failed(nt, i, "out of memory");
      return;
    }
    snprintf(r->host, sizeof r->host, "%s", s->host);
    snprintf(r->service, sizeof r->service, "%u", (unsigned)s->port);
    r->hints.ai_family = nt->af == AF_INET ? AF_INET : AF_UNSPEC;
    r->hints.ai_socktype = SOCK_DGRAM;
    r->hints.ai_flags = AI_NUMERICSERV;
    r->cb.ar_name = r->host;
    r->cb.ar_service = r->service;
    r->cb.ar_request = &r->hints;
    struct gaicb *list[1] = {&r->cb};
    int e = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
    if (e != 0) {
      free(r);
      resolve_failed(nt, i, gai_strerror(e));
      return;
    }
    s->res = r;
  }
  if (!nt->resolve_timer_on) {
    nt->resolve_timer_on = true;
    nt->resolve_timer.user = nt;
    loop_timer_start(nt->loop, &nt->resolve_timer, RESOLVE_POLL_MS, resolve_poll);
  }
}

/* Cancels a lookup at stop. One that a glibc thread is working on cannot be
 * cancelled: wait a little, and if it is still running leave its memory to
 * it rather than free what it will write to. */
static void resolve_abandon(struct nat_server *s) {
  struct nat_resolve *r = s->res;
  s->res = NULL;
  if (gai_cancel(&r->cb) == EAI_NOTCANCELED) {
    const struct gaicb *list[1] = {&r->cb};
    struct timespec ts = {2, 0};
    gai_suspend(list, 1, &ts);
  }
  int e = gai_error(&r->cb);
  if (e == EAI_INPROGRESS) {
    log_at(LV_WARN, "stun_lookup_abandoned", "server=%s", s->url);
    return;
  }
  if (e == 0 && r->cb.ar_result) freeaddrinfo(r->cb.ar_result);
  free(r);
}

/* ---- the server and the receive path ------------------------------------- */

static bool serve_budget(struct nat *nt) {
  double now = log_monotonic();
  if (now - nt->serve_window >= 1.0) {
    nt->serve_window = now;
    nt->serve_count = 0;
  }
  return nt->serve_count++ < SERVE_PER_SECOND;
}

/* Answers a Binding request: XOR-MAPPED-ADDRESS = where it came from. A
 * request with attributes the server must understand but does not (or
 * CHANGE-REQUEST / RESPONSE-PORT, which one address cannot honour) gets 420
 * naming them (RFC 8489 §6.3.1, RFC 5780 §6.1). */
static void serve(struct nat *nt, const struct stun_msg *m, const struct stun_addr *from,
                  const struct sockaddr *sa, socklen_t salen) {
  if (m->cls != STUN_REQUEST || m->method != STUN_BINDING) {
    nt->stats.ignored++;
    return;
  }
  if (!serve_budget(nt)) {
    nt->stats.rate_limited++;
    return;
  }
  uint16_t unknown[STUN_MAX_UNKNOWN];
  size_t nu = m->n_unknown;
  memcpy(unknown, m->unknown, nu * sizeof unknown[0]);
  struct stun_attr a;
  uint32_t flags;
  if (stun_find(m, STUN_A_CHANGE_REQUEST, &a) && (stun_attr_u32(&a, &flags) != 0 || flags != 0) &&
      nu < STUN_MAX_UNKNOWN)
    unknown[nu++] = STUN_A_CHANGE_REQUEST;
  if (stun_find(m, STUN_A_RESPONSE_PORT, &a) && nu < STUN_MAX_UNKNOWN)
    unknown[nu++] = STUN_A_RESPONSE_PORT;
  uint8_t out[160];
  struct stun_writer w;
  stun_begin(&w, out, sizeof out, STUN_BINDING, nu ? STUN_ERROR : STUN_SUCCESS, m->txid);
  if (nu) {
    stun_put_error(&w, 420, "Unknown Attribute");
    stun_put_unknown(&w, unknown, nu);
  } else {
    stun_put_addr(&w, STUN_A_XOR_MAPPED_ADDRESS, from);
  }
  stun_put_str(&w, STUN_A_SOFTWARE, SOFTWARE);
  stun_put_fingerprint(&w);
  size_t len = stun_finish(&w);
  if (len && sendto(nt->io.fd, out, len, 0, sa, salen) == (ssize_t)len)
    nt->stats.served++;
  else
    nt->stats.send_errors++;
}

static void drop(struct nat *nt, const struct stun_addr *from, size_t n, const char *why) {
  char at[STUN_ADDR_STRLEN];
  nt->stats.malformed++;
  log_limited(&nt->drop_limit, LV_INFO, "stun_dropped", "from=%s bytes=%zu reason=%s",
              stun_addr_str(from, at, sizeof at), n, why);
}

static void handle_datagram(struct nat *nt, const uint8_t *buf, size_t n, size_t cap,
                            const struct sockaddr *sa, socklen_t salen) {
  struct stun_addr from;
  if (stun_addr_from_sockaddr(&from, sa, salen) != 0) return;
  if (n > cap) {
    drop(nt, &from, n, "datagram too big for STUN here");
    return;
  }
  switch (stun_demux(buf, n)) {
    case STUN_KIND_STUN: break;
    case STUN_KIND_CHANNEL_DATA: {
      const char *why = nt->turn ? turn_on_channel_data(nt->turn, buf, n, &from)
                                 : "ChannelData, but this node has no TURN relay";
      if (why) drop(nt, &from, n, why);
      return;
    }
    default: drop(nt, &from, n, "not STUN"); return;
  }
  struct stun_msg m;
  enum stun_status st = stun_parse(&m, buf, n);
  if (st != STUN_OK) {
    drop(nt, &from, n, stun_strerror(st));
    return;
  }
  /* Answers to the TURN client's requests and Data indications from its
   * servers go to it; everything else is the STUN server's or client's. */
  if (m.cls != STUN_REQUEST && nt->turn && turn_on_stun(nt->turn, &m, &from)) return;
  if (m.cls == STUN_REQUEST || m.cls == STUN_INDICATION)
    serve(nt, &m, &from, sa, salen);
  else
    on_response(nt, &m, &from);
}

static void on_readable(struct loop_io *io) {
  struct nat *nt = io->user;
  uint8_t buf[2048];
  for (int i = 0; i < RECV_BATCH; i++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    ssize_t n =
        recvfrom(io->fd, buf, sizeof buf, MSG_TRUNC | MSG_DONTWAIT, (struct sockaddr *)&ss, &sl);
    if (n < 0) {
      if (errno == EINTR || errno == ECONNREFUSED) continue;
      return; /* EAGAIN: drained */
    }
    handle_datagram(nt, buf, (size_t)n, sizeof buf, (struct sockaddr *)&ss, sl);
  }
}

static void on_close(struct loop_io *io) {
  struct nat *nt = io->user;
  nt->io_open = false;
}

/* ---- public -------------------------------------------------------------- */

int nat_start(struct nat *nt, struct loop *l, const struct conf *c, int udp_port,
              const struct nat_timing *timing) {
  memset(nt, 0, sizeof *nt);
  nt->loop = l;
  nt->external_server = -1;
  nt->beh.server = -1;
  nt->io.fd = -1;
  nat_timing_default(&nt->t);
  if (timing) nt->t = *timing;
  if (nt->t.rto_ms < 1) nt->t.rto_ms = 1;
  if (nt->t.rc < 1) nt->t.rc = 1;
  if (nt->t.rc > 16) nt->t.rc = 16; /* the doubling stays in range */
  if (nt->t.rm < 1) nt->t.rm = 1;
  if (nt->t.probe_rc < 1) nt->t.probe_rc = 1;
  if (nt->t.probe_rc > 16) nt->t.probe_rc = 16;
  if (nt->t.probe_rm < 1) nt->t.probe_rm = 1;
  if (nt->t.refresh_ms < 1000) nt->t.refresh_ms = 1000;
  const char *pm = c->natTraversal.preferredMethod, *cp = c->natTraversal.candidatePreference;
  nt->prefer_host = pm && strcmp(pm, "host") == 0;
  nt->prefer_turn = pm && strcmp(pm, "turn") == 0;
  snprintf(nt->cand_pref, sizeof nt->cand_pref, "%s", cp ? cp : "srflx");

  if (open_socket(nt, c, udp_port) != 0) {
    log_at(LV_ERROR, "nat_disabled", "err=%s msg=%s", nt->disabled,
           "no STUN server or client on UDP; the node still works over TCP");
    return -1;
  }
  nt->io.user = nt;
  nt->io.on_readable = on_readable;
  nt->io.on_close = on_close;
  if (loop_watch(l, &nt->io) != 0) {
    close(nt->io.fd);
    nt->io.fd = -1;
    snprintf(nt->disabled, sizeof nt->disabled, "the event loop cannot watch the UDP socket");
    log_at(LV_ERROR, "nat_disabled", "err=%s", nt->disabled);
    return -1;
  }
  nt->io_open = true;
  nt->running = true;

  for (size_t i = 0; i < c->natTraversal.n_stunServers; i++) {
    char why[96];
    if (nt->n_servers == NAT_MAX_SERVERS) break;
    struct nat_server *s = &nt->servers[nt->n_servers];
    memset(s, 0, sizeof *s);
    if (parse_url(c->natTraversal.stunServers[i], s, why, sizeof why) != 0) {
      log_at(LV_WARN, "stun_server_skipped", "server=%s err=%s", c->natTraversal.stunServers[i],
             why);
      continue;
    }
    nt->n_servers++;
  }
  char at[STUN_ADDR_STRLEN];
  log_at(LV_INFO, "nat_started", "udp=%s stunServers=%d rto_ms=%.0f rc=%d", 
         stun_addr_str(&nt->local, at, sizeof at), nt->n_servers, nt->t.rto_ms, nt->t.rc);
  round_start(nt);
  nt->refresh_timer.user = nt;
  loop_timer_start(l, &nt->refresh_timer, nt->t.refresh_ms, refresh_fired);
  nt->turn = turn_start(nt, l, c);
  return 0;
}

void nat_stop(struct nat *nt) {
  if (nt->loop == NULL) return;
  turn_stop(nt->turn); /* first: it deletes its allocations over this socket */
  nt->turn = NULL;
  for (int i = 0; i < NAT_MAX_TXN; i++) {
    loop_timer_stop(&nt->txn[i].timer);
    nt->txn[i].active = false;
  }
  loop_timer_stop(&nt->refresh_timer);
  loop_timer_stop(&nt->resolve_timer);
  for (int i = 0; i < nt->n_servers; i++)
    if (nt->servers[i].res) resolve_abandon(&nt->servers[i]);
  /* The loop closes the descriptor on its next pass (or when destroyed);
   * on_close only touches this struct, which outlives the loop. */
  if (nt->io_open) loop_close(&nt->io);
  nt->running = false;
  nt->round_active = false;
}

int nat_discover(struct nat *nt) {
  if (!nt->running) return -1;
  if (nt->round_active) return 0;
  round_start(nt);
  nt->refresh_timer.user = nt;
  loop_timer_start(nt->loop, &nt->refresh_timer, nt->t.refresh_ms, refresh_fired);
  return 1;
}

/* The relay to tell peers about: a TCP one (bt2c can use it) before UDP. */
static const struct nat_candidate *best_relay(const struct nat *nt) {
  const struct nat_candidate *best = NULL;
  for (int i = 0; i < nt->n_cand; i++) {
    const struct nat_candidate *c = &nt->cand[i];
    if (c->type != NAT_CAND_RELAY) continue;
    if (best == NULL || (c->transport == STUN_TRANSPORT_TCP && best->transport != c->transport))
      best = c;
  }
  return best;
}

int nat_external(const struct nat *nt, struct stun_addr *out, const char **method, int *server) {
  if (!nt->running) return -1;
  const struct nat_candidate *relay = nt->prefer_host ? NULL : best_relay(nt);
  if (relay && nt->prefer_turn) {
    *out = relay->addr;
    *method = "turn";
    *server = relay->server;
    return 0;
  }
  if (!nt->prefer_host && nt->have_external) {
    *out = nt->external;
    *method = "stun";
    *server = nt->external_server;
    return 0;
  }
  if (relay) { /* STUN failed: TURN is next */
    *out = relay->addr;
    *method = "turn";
    *server = relay->server;
    return 0;
  }
  for (int i = 0; i < nt->n_cand; i++) {
    if (nt->cand[i].type != NAT_CAND_HOST) continue;
    *out = nt->cand[i].addr;
    *method = "host";
    *server = -1;
    return 0;
  }
  return -1;
}

static int pref_type(const char *pref) {
  if (strcmp(pref, "host") == 0) return NAT_CAND_HOST;
  if (strcmp(pref, "srflx") == 0) return NAT_CAND_SRFLX;
  if (strcmp(pref, "relay") == 0) return NAT_CAND_RELAY;
  return -1; /* "priority" */
}

size_t nat_candidates(const struct nat *nt, struct nat_candidate *out, size_t cap) {
  int first = pref_type(nt->cand_pref);
  size_t n = 0;
  for (int i = 0; i < nt->n_cand && n < cap; i++) { /* insertion sort: a handful of entries */
    struct nat_candidate c = nt->cand[i];
    size_t j = n++;
    for (; j > 0; j--) {
      const struct nat_candidate *p = &out[j - 1];
      bool c_first = (int)c.type == first, p_first = (int)p->type == first;
      if (p_first && !c_first) break;
      if (p_first == c_first && p->priority >= c.priority) break;
      out[j] = out[j - 1];
    }
    out[j] = c;
  }
  return n;
}

void nat_set_relays(struct nat *nt, const struct nat_candidate *relays, int n) {
  drop_candidates(nt, is_relay);
  for (int i = 0; i < n; i++)
    add_candidate(nt, NAT_CAND_RELAY, &relays[i].addr, relays[i].server, relays[i].transport);
}
