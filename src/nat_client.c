/* nat_client: see nat_client.h.
 *
 * Transactions live in a fixed array; each has its own retransmission
 * timer. A round sends one Binding per server and ends when every server
 * has answered, timed out or failed and the behaviour discovery it started
 * (if any) has finished.
 */
#include "nat_client.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nat_cand.h"
#include "nat_disc.h"
#include "resolve.h"

#define RESOLVE_POLL_MS 20
#define DEFAULT_STUN_PORT 3478

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
int natclient_parse_url(const char *url, struct nat_server *s, char *why, size_t cap) {
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

/* ---- transactions -------------------------------------------------------- */

static void round_check_end(struct nat *nt);
static void dispatch(struct nat *nt, enum nat_purpose p, int server, int sends, double rtt,
                     const struct nat_outcome *o);

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
  struct nat_outcome o = {.kind = NAT_OUT_TIMEOUT};
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
int natclient_txn_start(struct nat *nt, enum nat_purpose p, int server, const struct stun_addr *to,
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

void natclient_on_response(struct nat *nt, const struct stun_msg *m, const struct stun_addr *from) {
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
  struct nat_outcome o = {.kind = NAT_OUT_OK};
  struct stun_attr a;
  if (m->cls == STUN_ERROR) {
    nt->stats.error_responses++;
    o.kind = NAT_OUT_ERROR;
    const uint8_t *r;
    size_t rl;
    if (stun_find(m, STUN_A_ERROR_CODE, &a) && stun_attr_error(&a, &o.code, &r, &rl) == 0)
      copy_text(o.reason, sizeof o.reason, r, rl);
    else
      snprintf(o.reason, sizeof o.reason, "error response without a valid ERROR-CODE");
  } else if (m->n_unknown) { /* RFC 8489 §7.3.3: the transaction failed */
    o.kind = NAT_OUT_ERROR;
    snprintf(o.reason, sizeof o.reason,
             "the response carries unknown comprehension-required attribute 0x%04x",
             m->unknown[0]);
  } else if (stun_get_addr(m, STUN_A_XOR_MAPPED_ADDRESS, &o.mapped) != 0 &&
             stun_get_addr(m, STUN_A_MAPPED_ADDRESS, &o.mapped) != 0) {
    o.kind = NAT_OUT_ERROR;
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

/* ---- rounds -------------------------------------------------------------- */

static void server_send(struct nat *nt, int i) {
  struct nat_server *s = &nt->servers[i];
  if (s->addr.family == STUN_FAMILY_IPV6 && nt->af == AF_INET) {
    s->state = NAT_SRV_ERROR;
    snprintf(s->error, sizeof s->error, "an IPv6 server needs the node's host to be IPv6 (\"::\")");
    log_at(LV_WARN, "stun_error", "server=%s err=%s", s->url, s->error);
    return;
  }
  if (natclient_txn_start(nt, NAT_TX_BIND, i, &s->addr, 0) != 0) {
    s->state = NAT_SRV_ERROR;
    snprintf(s->error, sizeof s->error, "cannot start a transaction");
    return;
  }
  s->state = NAT_SRV_WAITING;
}

static void bind_done(struct nat *nt, int i, int sends, double ms, const struct nat_outcome *o) {
  struct nat_server *s = &nt->servers[i];
  char at[STUN_ADDR_STRLEN], got[STUN_ADDR_STRLEN];
  s->tries = sends;
  stun_addr_str(&s->addr, at, sizeof at);
  if (o->kind == NAT_OUT_TIMEOUT) {
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
  if (o->kind == NAT_OUT_ERROR) {
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
  natcand_add(nt, NAT_CAND_SRFLX, &o->mapped, i, STUN_TRANSPORT_UDP);
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
    natdisc_start(nt, i);
}

static void dispatch(struct nat *nt, enum nat_purpose p, int server, int sends, double ms,
                     const struct nat_outcome *o) {
  if (p == NAT_TX_BIND)
    bind_done(nt, server, sends, ms, o);
  else
    natdisc_step(nt, p, o);
  round_check_end(nt);
}

static void lookup_start(struct nat *nt, int i);

void natclient_round_start(struct nat *nt) {
  nt->round++;
  nt->stats.rounds++;
  nt->round_active = true;
  nt->round_ok = false;
  nt->disc_started = false;
  natcand_gather_host(nt);
  for (int i = 0; i < nt->n_servers; i++) {
    struct nat_server *s = &nt->servers[i];
    s->tries = 0;
    s->error_code = 0;
    s->error[0] = '\0';
    s->have_mapped = s->have_other = false;
    if (s->numeric) server_send(nt, i);
    else lookup_start(nt, i);
  }
  round_check_end(nt);
}

static void round_check_end(struct nat *nt) {
  if (!nt->round_active || nt->beh.state == NAT_DISC_RUNNING) return;
  for (int i = 0; i < nt->n_servers; i++)
    if (nt->servers[i].state == NAT_SRV_RESOLVING || nt->servers[i].state == NAT_SRV_WAITING)
      return;
  nt->round_active = false;
  natcand_drop_stale_srflx(nt);
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

void natclient_refresh_fired(struct loop_timer *t) {
  struct nat *nt = t->user;
  if (!nt->round_active) natclient_round_start(nt);
  nt->refresh_timer.user = nt;
  loop_timer_start(nt->loop, &nt->refresh_timer, nt->t.refresh_ms, natclient_refresh_fired);
}

/* ---- host name lookups --------------------------------------------------- */

static void lookup_failed(struct nat *nt, int i, const char *why) {
  struct nat_server *s = &nt->servers[i];
  s->state = NAT_SRV_UNRESOLVED;
  snprintf(s->error, sizeof s->error, "%s", why);
  log_at(LV_WARN, "stun_unresolved", "server=%s err=%s", s->url, why);
}

static void lookup_got(struct nat *nt, int i, const struct addrinfo *ai) {
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
  lookup_failed(nt, i, "no address of a usable family");
}

static void lookup_poll(struct loop_timer *t) {
  struct nat *nt = t->user;
  bool pending = false;
  double now = now_ms();
  for (int i = 0; i < nt->n_servers; i++) {
    struct nat_server *s = &nt->servers[i];
    if (s->res == NULL) continue;
    const struct addrinfo *list = NULL;
    const char *err = NULL;
    enum resolve_status st = resolve_poll(s->res, &list, &err);
    if (st == RESOLVE_PENDING) {
      pending = true;
      if (s->state == NAT_SRV_RESOLVING && now > s->resolve_deadline)
        lookup_failed(nt, i, "the host name lookup timed out");
      continue;
    }
    if (s->state == NAT_SRV_RESOLVING) {
      if (st == RESOLVE_DONE) lookup_got(nt, i, list);
      else lookup_failed(nt, i, err);
    }
    resolve_free(s->res);
    s->res = NULL;
  }
  nt->resolve_timer_on = pending;
  if (pending) loop_timer_start(nt->loop, &nt->resolve_timer, RESOLVE_POLL_MS, lookup_poll);
  round_check_end(nt);
}

static void lookup_start(struct nat *nt, int i) {
  struct nat_server *s = &nt->servers[i];
  s->state = NAT_SRV_RESOLVING;
  s->resolve_deadline = now_ms() + nt->t.resolve_timeout_ms;
  if (s->res == NULL) { /* else an older lookup is still running: its answer will do */
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = nt->af == AF_INET ? AF_INET : AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV;
    const char *err = NULL;
    s->res = resolve_start(s->host, s->port, &hints, &err);
    if (s->res == NULL) {
      lookup_failed(nt, i, err);
      return;
    }
  }
  if (!nt->resolve_timer_on) {
    nt->resolve_timer_on = true;
    nt->resolve_timer.user = nt;
    loop_timer_start(nt->loop, &nt->resolve_timer, RESOLVE_POLL_MS, lookup_poll);
  }
}

/* Cancels a lookup at stop (resolve_abandon waits up to 2 s for one a glibc
 * thread is working on, then leaves it and its memory to that thread). */
void natclient_resolve_abandon(struct nat_server *s) {
  struct resolve *r = s->res;
  s->res = NULL;
  if (resolve_abandon(r, 2)) log_at(LV_WARN, "stun_lookup_abandoned", "server=%s", s->url);
}
