/* nat: see nat.h.
 *
 * One datagram path: on_readable -> handle_datagram, which drops what is not
 * well-formed STUN, hands requests to the server (serve), datagrams from the
 * TURN servers to turn.c, and responses to the STUN client (nat_client.c).
 */
#include "nat.h"

#include <errno.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nat_client.h"
#include "turn.h"

#define SOFTWARE "bt2cd"
#define SERVE_PER_SECOND 2000 /* caps what a spoofed-source flood can reflect */
#define RECV_BATCH 64         /* datagrams per readiness callback */

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

/* ---- the socket ---------------------------------------------------------- */

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
    natclient_on_response(nt, &m, &from);
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

/* ---- start and stop ------------------------------------------------------ */

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
    if (natclient_parse_url(c->natTraversal.stunServers[i], s, why, sizeof why) != 0) {
      log_at(LV_WARN, "stun_server_skipped", "server=%s err=%s", c->natTraversal.stunServers[i],
             why);
      continue;
    }
    nt->n_servers++;
  }
  char at[STUN_ADDR_STRLEN];
  log_at(LV_INFO, "nat_started", "udp=%s stunServers=%d rto_ms=%.0f rc=%d", 
         stun_addr_str(&nt->local, at, sizeof at), nt->n_servers, nt->t.rto_ms, nt->t.rc);
  natclient_round_start(nt);
  nt->refresh_timer.user = nt;
  loop_timer_start(l, &nt->refresh_timer, nt->t.refresh_ms, natclient_refresh_fired);
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
    if (nt->servers[i].res) natclient_resolve_abandon(&nt->servers[i]);
  /* The loop closes the descriptor on its next pass (or when destroyed);
   * on_close only touches this struct, which outlives the loop. */
  if (nt->io_open) loop_close(&nt->io);
  nt->running = false;
  nt->round_active = false;
}

int nat_discover(struct nat *nt) {
  if (!nt->running) return -1;
  if (nt->round_active) return 0;
  natclient_round_start(nt);
  nt->refresh_timer.user = nt;
  loop_timer_start(nt->loop, &nt->refresh_timer, nt->t.refresh_ms, natclient_refresh_fired);
  return 1;
}
