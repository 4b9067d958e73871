/* turn_tcp: see turn_tcp.h. */
#include "turn_tcp.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netmgr.h"
#include "transport.h"
#include "turn_alloc.h"
#include "turn_txn.h"

#define CONNECT_TIMEOUT_MS 10000
#define DC_TIMEOUT_MS 10000  /* the server itself waits 30 s for ConnectionBind */

static double now_s(void) { return log_monotonic(); }

static void dc_start(struct turn_alloc *a, const struct stun_msg *m);

/* ---- the TCP control connection ------------------------------------------------ */

static void ctl_lost(struct turn_alloc *a, const char *why) {
  if (a->state == TURN_ALLOCATED) turnalloc_lost(a, why);
  else turnalloc_fail(a, 0, "%s", why);
}

static void ctl_flush(struct turn_ctl *c) {
  while (c->tx_len > 0) {
    ssize_t n = send(c->io.fd, c->tx, c->tx_len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) loop_want_write(&c->io);
      return; /* a hard error shows up on the read side */
    }
    memmove(c->tx, c->tx + n, c->tx_len - (size_t)n);
    c->tx_len -= (size_t)n;
  }
}

int turntcp_queue(struct turn_alloc *a, const uint8_t *msg, size_t len) {
  struct turn_ctl *c = a->ctl;
  if (c == NULL || c->tx_len + len > sizeof c->tx) return -1; /* bounded: the request times out */
  memcpy(c->tx + c->tx_len, msg, len);
  c->tx_len += len;
  if (c->connected) ctl_flush(c);
  return 0;
}

static void handle_frame(struct turn_alloc *a, const uint8_t *buf, size_t len) {
  struct turn *t = a->t;
  if (stun_demux(buf, len) != STUN_KIND_STUN) {
    turntxn_dropped(t, a->url, "ChannelData on a TCP allocation's control connection");
    return;
  }
  struct stun_msg m;
  enum stun_status st = stun_parse(&m, buf, len);
  if (st != STUN_OK) {
    turntxn_dropped(t, a->url, stun_strerror(st));
    return;
  }
  if (m.cls == STUN_SUCCESS || m.cls == STUN_ERROR) {
    struct turn_txn *x = turntxn_find(a, m.txid);
    if (x == NULL) {
      t->stats.stray++;
      return;
    }
    turntxn_answer(x, &m);
    return;
  }
  if (m.cls == STUN_INDICATION && m.method == STUN_CONNECTION_ATTEMPT) dc_start(a, &m);
}

/* Cuts the stream into frames. Returns -1 once the connection is gone. */
static int ctl_frames(struct turn_alloc *a, struct turn_ctl *c) {
  size_t off = 0;
  while (off < c->rx_len) {
    long fl = stun_frame_len(c->rx + off, c->rx_len - off);
    if (fl == 0) break;
    if (fl < 0 || (size_t)fl > sizeof c->rx) {
      turntxn_dropped(a->t, a->url,
                      "bytes that are neither STUN nor ChannelData on the control connection");
      ctl_lost(a, "the TURN server sent bytes that are not STUN; the connection was closed");
      return -1;
    }
    if ((size_t)fl > c->rx_len - off) break;
    handle_frame(a, c->rx + off, (size_t)fl);
    off += (size_t)fl;
    if (a->ctl != c) return -1; /* the allocation moved on */
  }
  memmove(c->rx, c->rx + off, c->rx_len - off);
  c->rx_len -= off;
  return 0;
}

static void ctl_on_readable(struct loop_io *io) {
  struct turn_ctl *c = io->user;
  struct turn_alloc *a = c->a;
  if (a == NULL) return;
  for (;;) {
    ssize_t n = recv(io->fd, c->rx + c->rx_len, sizeof c->rx - c->rx_len, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      char why[128];
      snprintf(why, sizeof why, "the control connection failed: %s", strerror(errno));
      ctl_lost(a, why);
      return;
    }
    if (n == 0) {
      ctl_lost(a, "the TURN server closed the control connection");
      return;
    }
    c->rx_len += (size_t)n;
    if (ctl_frames(a, c) != 0) return;
  }
}

static void ctl_on_writable(struct loop_io *io) {
  struct turn_ctl *c = io->user;
  struct turn_alloc *a = c->a;
  if (a == NULL) return;
  if (!c->connected) {
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0) err = errno;
    if (err == EINPROGRESS) {
      loop_want_write(io);
      return;
    }
    if (err) {
      turnalloc_fail(a, 0, "cannot connect to the TURN server: %s", strerror(err));
      return;
    }
    c->connected = true;
    loop_timer_stop(&a->timer); /* the connect timeout */
    a->state = TURN_ALLOCATING;
    if (turntxn_start(a, TP_ALLOCATE, NULL, 0, 0) != 0) {
      turnalloc_fail(a, 0, "cannot build the Allocate");
      return;
    }
  }
  ctl_flush(c);
}

static void ctl_on_close(struct loop_io *io) {
  struct turn_ctl *c = io->user;
  struct turn_alloc *a = c->a;
  bool current = a && a->ctl == c;
  if (current) a->ctl = NULL;
  free(c);
  if (current) ctl_lost(a, "the control connection to the TURN server closed");
}

static void connect_timeout(struct loop_timer *tm) {
  struct turn_alloc *a = tm->user;
  if (a->state == TURN_CONNECTING)
    turnalloc_fail(a, 0, "cannot connect to the TURN server: timed out");
}

static int tcp_socket_to(const struct stun_addr *to, int *fd_out, char *why, size_t whycap) {
  struct sockaddr_storage ss;
  int af = to->family == STUN_FAMILY_IPV6 ? AF_INET6 : AF_INET;
  socklen_t sl = stun_addr_to_sockaddr(to, af, &ss);
  int fd = socket(af, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || sl == 0) {
    snprintf(why, whycap, "socket: %s", strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  if (connect(fd, (struct sockaddr *)&ss, sl) != 0 && errno != EINPROGRESS) {
    snprintf(why, whycap, "cannot connect to the TURN server: %s", strerror(errno));
    close(fd);
    return -1;
  }
  *fd_out = fd;
  return 0;
}

void turntcp_open(struct turn_alloc *a) {
  char why[160];
  int fd;
  if (tcp_socket_to(&a->server, &fd, why, sizeof why) != 0) {
    turnalloc_fail(a, 0, "%s", why);
    return;
  }
  struct turn_ctl *c = calloc(1, sizeof *c);
  if (c == NULL) {
    close(fd);
    turnalloc_fail(a, 0, "out of memory");
    return;
  }
  c->a = a;
  c->io.fd = fd;
  c->io.user = c;
  c->io.on_readable = ctl_on_readable;
  c->io.on_writable = ctl_on_writable;
  c->io.on_close = ctl_on_close;
  if (loop_watch(a->t->loop, &c->io) != 0) {
    close(fd);
    free(c);
    turnalloc_fail(a, 0, "the event loop cannot watch the control connection");
    return;
  }
  a->ctl = c;
  a->state = TURN_CONNECTING;
  loop_want_write(&c->io);
  a->timer.user = a;
  loop_timer_start(a->t->loop, &a->timer, CONNECT_TIMEOUT_MS, connect_timeout);
}

/* Leaves the connection to the loop, which closes it and frees c later. */
void turntcp_detach(struct turn_alloc *a) {
  struct turn_ctl *c = a->ctl;
  if (c == NULL) return;
  a->ctl = NULL;
  c->a = NULL;
  loop_close(&c->io);
}

/* ---- RFC 6062 data connections ------------------------------------------------ */

static void attempts_kick(struct turn_alloc *a);

static void dc_free(struct turn_dc *dc) {
  struct turn_alloc *a = dc->a;
  if (a)
    for (int i = 0; i < TURN_MAX_DATACONN; i++)
      if (a->dc[i] == dc) a->dc[i] = NULL;
  loop_timer_stop(&dc->timer);
  if (dc->adopt_fd >= 0) close(dc->adopt_fd);
  free(dc);
}

/* Queues a connection attempt; false when the queue is full. */
static bool attempt_add(struct turn_alloc *a, uint32_t conn_id, const struct stun_addr *peer,
                        int tries, double since) {
  if (a->n_attempts >= TURN_MAX_DATACONN) return false;
  a->attempt[a->n_attempts++] =
      (struct turn_attempt){.conn_id = conn_id, .peer = *peer, .tries = tries, .since = since};
  return true;
}

/* retry: the server may have refused a stale nonce (and closed the data
 * connection): once more, on a new one, after the nonce is renewed. */
static void dc_fail(struct turn_dc *dc, const char *why, bool retry) {
  struct turn_alloc *a = dc->a;
  char peer[STUN_ADDR_STRLEN];
  if (a) {
    stun_addr_str(&dc->peer, peer, sizeof peer);
    if (retry && dc->tries < 2 && a->state == TURN_ALLOCATED &&
        now_s() - dc->started < 20 && attempt_add(a, dc->conn_id, &dc->peer, dc->tries, dc->started)) {
      log_at(LV_DEBUG, "turn_connection_retry", "server=%s peer=%s connection_id=%u err=%s",
             a->url, peer, (unsigned)dc->conn_id, why);
      attempts_kick(a);
    } else {
      a->connections_failed++;
      log_at(LV_INFO, "turn_connection_failed", "server=%s peer=%s connection_id=%u err=%s",
             a->url, peer, (unsigned)dc->conn_id, why);
    }
    for (int i = 0; i < TURN_MAX_DATACONN; i++)
      if (a->dc[i] == dc) a->dc[i] = NULL;
    dc->a = NULL; /* detached: only the loop's close is left */
  }
  loop_timer_stop(&dc->timer);
  if (dc->io_open) loop_close(&dc->io); /* dc_on_close frees */
  else dc_free(dc);
}

static void dc_timeout(struct loop_timer *tm) {
  dc_fail(tm->user, "no ConnectionBind answer in time", true);
}

static void dc_send_bind(struct turn_dc *dc) {
  struct turn_alloc *a = dc->a;
  struct turn_req r = {.method = STUN_CONNECTION_BIND, .cls = STUN_REQUEST,
                       .has_conn_id = true, .conn_id = dc->conn_id};
  struct turn_auth au;
  const struct turn_auth *ap = turntxn_auth(a, &au);
  uint8_t msg[TURN_MSG_MAX];
  size_t len = turnmsg_encode(msg, sizeof msg, NULL, &r, ap);
  dc->sent_auth = ap != NULL;
  memcpy(dc->txid, msg + 8, STUN_TXID_LEN);
  a->t->stats.requests++;
  /* A fresh connection takes a hundred bytes at once. */
  if (len == 0 || send(dc->io.fd, msg, len, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)len)
    dc_fail(dc, "cannot send ConnectionBind", false);
}

static void dc_adopt_fire(struct loop_timer *tm) {
  struct turn_dc *dc = tm->user;
  struct turn_alloc *a = dc->a;
  dc->adopt_pending = false;
  int fd = dc->adopt_fd;
  dc->adopt_fd = -1;
  if (a && a->t->nm) {
    char peer[STUN_ADDR_STRLEN], rel[STUN_ADDR_STRLEN], why[128];
    stun_addr_str(&dc->peer, peer, sizeof peer);
    if (transport_adopt(&a->t->nm->tr, fd, peer, dc->rx, dc->rx_len, why, sizeof why) == 0) {
      a->connections++;
      log_at(LV_INFO, "turn_connection", "server=%s relayed=%s peer=%s buffered=%zu", a->url,
             stun_addr_str(&a->relayed, rel, sizeof rel), peer, dc->rx_len);
    } else {
      a->connections_failed++;
      log_at(LV_INFO, "turn_connection_failed", "server=%s peer=%s err=%s", a->url, peer, why);
    }
  } else {
    close(fd);
  }
  if (a)
    for (int i = 0; i < TURN_MAX_DATACONN; i++)
      if (a->dc[i] == dc) a->dc[i] = NULL;
  dc->a = NULL;
  if (!dc->io_open) dc_free(dc);
}

/* ConnectionBind succeeded: from here on the connection carries the peer's
 * bytes. The socket goes to the WebSocket listener (a duplicate, since the
 * loop closes this one), with the bytes already read after the response. */
static void dc_bound(struct turn_dc *dc, size_t frame_len) {
  size_t left = dc->rx_len - frame_len;
  memmove(dc->rx, dc->rx + frame_len, left);
  dc->rx_len = left;
  dc->adopt_fd = fcntl(dc->io.fd, F_DUPFD_CLOEXEC, 0);
  if (dc->adopt_fd < 0) {
    dc_fail(dc, strerror(errno), false);
    return;
  }
  dc->bound = true;
  loop_timer_stop(&dc->timer);
  dc->adopt_pending = true;
  loop_close(&dc->io);
  dc->timer.user = dc;
  loop_timer_start(dc->a->t->loop, &dc->timer, 0, dc_adopt_fire); /* outside this callback */
}

static void dc_on_readable(struct loop_io *io) {
  struct turn_dc *dc = io->user;
  struct turn_alloc *a = dc->a;
  if (a == NULL || dc->adopt_pending) return;
  ssize_t n = recv(io->fd, dc->rx + dc->rx_len, sizeof dc->rx - dc->rx_len, MSG_DONTWAIT);
  if (n < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
      dc_fail(dc, strerror(errno), dc->sent_auth);
    return;
  }
  if (n == 0) {
    dc_fail(dc, "the TURN server closed the data connection", dc->sent_auth);
    return;
  }
  dc->rx_len += (size_t)n;
  long fl = stun_frame_len(dc->rx, dc->rx_len);
  if (fl == 0 && dc->rx_len < sizeof dc->rx) return; /* more to come */
  if (fl <= 0 || (size_t)fl > sizeof dc->rx) {
    turntxn_dropped(a->t, a->url, "a data connection answer that is not STUN");
    dc_fail(dc, "the answer to ConnectionBind is not STUN", false);
    return;
  }
  if ((size_t)fl > dc->rx_len) return;
  struct stun_msg m;
  if (stun_parse(&m, dc->rx, (size_t)fl) != STUN_OK || m.method != STUN_CONNECTION_BIND ||
      memcmp(m.txid, dc->txid, STUN_TXID_LEN) != 0) {
    turntxn_dropped(a->t, a->url, "a data connection answer that is not ours");
    dc_fail(dc, "unexpected answer to ConnectionBind", false);
    return;
  }
  struct turn_answer ans;
  enum turn_verdict v = turnmsg_classify(&m, dc->sent_auth ? a->key : NULL, &ans);
  a->t->stats.responses++;
  if (v == TV_SUCCESS) {
    dc_bound(dc, (size_t)fl);
    return;
  }
  char why[160];
  snprintf(why, sizeof why, "ConnectionBind refused: %d %s", ans.code,
           ans.reason[0] ? ans.reason : turnmsg_verdict_name(v));
  /* For the server this is a new session: it may challenge it, or find the
   * nonce stale; it closes the connection either way. */
  bool auth = v == TV_CHALLENGE || v == TV_STALE_NONCE || v == TV_WRONG_CREDENTIALS;
  if (auth && ans.nonce_len) {
    if (v == TV_STALE_NONCE) a->t->stats.stale_nonces++;
    else a->t->stats.challenges++;
    turntxn_set_credentials(a, &ans);
  }
  if (v == TV_INTEGRITY || v == TV_MALFORMED) turntxn_dropped(a->t, a->url, why);
  dc_fail(dc, why, auth);
}

static void dc_on_writable(struct loop_io *io) {
  struct turn_dc *dc = io->user;
  if (dc->a == NULL || dc->connected) return;
  int err = 0;
  socklen_t el = sizeof err;
  if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0) err = errno;
  if (err == EINPROGRESS) {
    loop_want_write(io);
    return;
  }
  if (err) {
    dc_fail(dc, strerror(err), false);
    return;
  }
  dc->connected = true;
  dc_send_bind(dc);
}

static void dc_on_close(struct loop_io *io) {
  struct turn_dc *dc = io->user;
  dc->io_open = false;
  if (!dc->adopt_pending) dc_free(dc); /* else the hand-over frees it */
}

static void dc_open(struct turn_alloc *a, const struct turn_attempt *at) {
  struct turn *t = a->t;
  char ps[STUN_ADDR_STRLEN], why[160];
  stun_addr_str(&at->peer, ps, sizeof ps);
  int slot = -1;
  for (int i = 0; i < TURN_MAX_DATACONN && slot < 0; i++)
    if (a->dc[i] == NULL) slot = i;
  int fd;
  if (slot < 0 || tcp_socket_to(&a->server, &fd, why, sizeof why) != 0) {
    a->connections_failed++;
    log_limited(&t->drop_limit, LV_INFO, "turn_connection_failed", "server=%s peer=%s err=%s",
                a->url, ps, slot < 0 ? "too many connections being set up at once" : why);
    return;
  }
  struct turn_dc *dc = calloc(1, sizeof *dc);
  if (dc == NULL) {
    close(fd);
    return;
  }
  dc->a = a;
  dc->conn_id = at->conn_id;
  dc->peer = at->peer;
  dc->tries = at->tries + 1;
  dc->started = at->since;
  dc->adopt_fd = -1;
  dc->io.fd = fd;
  dc->io.user = dc;
  dc->io.on_readable = dc_on_readable;
  dc->io.on_writable = dc_on_writable;
  dc->io.on_close = dc_on_close;
  if (loop_watch(t->loop, &dc->io) != 0) {
    close(fd);
    free(dc);
    return;
  }
  dc->io_open = true;
  a->dc[slot] = dc;
  loop_want_write(&dc->io);
  dc->timer.user = dc;
  loop_timer_start(t->loop, &dc->timer, DC_TIMEOUT_MS, dc_timeout);
}

/* Opens the data connections of the queued attempts (the nonce is fresh). */
void turntcp_attempts_open(struct turn_alloc *a) {
  struct turn_attempt q[TURN_MAX_DATACONN];
  int n = a->n_attempts;
  memcpy(q, a->attempt, (size_t)n * sizeof q[0]);
  a->n_attempts = 0;
  for (int i = 0; i < n && a->state == TURN_ALLOCATED; i++) dc_open(a, &q[i]);
}

/* A Refresh renews the nonce (a 438 answer brings a new one); the data
 * connections open when it is answered. */
static void attempts_kick(struct turn_alloc *a) {
  if (turntxn_has(a, TP_REFRESH)) return;
  if (turntxn_start(a, TP_REFRESH, NULL, 0, 600) != 0) turntcp_attempts_open(a);
}

static void dc_start(struct turn_alloc *a, const struct stun_msg *m) {
  struct stun_attr at;
  uint32_t cid;
  struct stun_addr peer;
  if (!stun_find(m, STUN_A_CONNECTION_ID, &at) || stun_attr_u32(&at, &cid) != 0 ||
      stun_get_addr(m, STUN_A_XOR_PEER_ADDRESS, &peer) != 0) {
    turntxn_dropped(a->t, a->url, "a ConnectionAttempt without CONNECTION-ID or XOR-PEER-ADDRESS");
    return;
  }
  char ps[STUN_ADDR_STRLEN];
  stun_addr_str(&peer, ps, sizeof ps);
  log_at(LV_DEBUG, "turn_connection_attempt", "server=%s peer=%s connection_id=%u", a->url, ps,
         (unsigned)cid);
  if (a->state != TURN_ALLOCATED || !attempt_add(a, cid, &peer, 0, now_s())) {
    a->connections_failed++;
    log_limited(&a->t->drop_limit, LV_WARN, "turn_connection_failed", "server=%s peer=%s err=%s",
                a->url, ps, "too many connections being set up at once");
    return;
  }
  attempts_kick(a);
}

void turntcp_stop(struct turn_alloc *a) {
  turntcp_detach(a);
  for (int k = 0; k < TURN_MAX_DATACONN; k++) {
    struct turn_dc *dc = a->dc[k];
    if (dc == NULL) continue;
    a->dc[k] = NULL;
    dc->a = NULL;
    loop_timer_stop(&dc->timer);
    if (dc->adopt_fd >= 0) close(dc->adopt_fd);
    dc->adopt_fd = -1;
    dc->adopt_pending = false;
    if (dc->io_open) loop_close(&dc->io); /* dc_on_close frees */
    else free(dc);
  }
}
