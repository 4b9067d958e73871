/* turn: see turn.h.
 *
 * The client is split by what each part looks after: turn_msg.c encodes and
 * judges messages; turn_txn.c runs the requests (retransmissions, the 401
 * challenge and 438 Stale Nonce answered in one place); turn_alloc.c is the
 * allocation's state machine; turn_tcp.c the RFC 6062 connections;
 * turn_perm.c the permissions and channels; turn_cand.c the candidates
 * peers are told and tell. This file starts and stops it all, runs the
 * once-a-second tick and takes what nat.c and the console hand over.
 */
#include "turn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "conf.h"
#include "nat.h"
#include "netmgr.h"
#include "transport.h"
#include "turn_alloc.h"
#include "turn_cand.h"
#include "turn_msg.h"
#include "turn_perm.h"
#include "turn_tcp.h"
#include "turn_txn.h"

#define TICK_MS 1000
#define PINNED_FOR 600.0     /* s a peer we sent to keeps its permission */

static double now_s(void) { return log_monotonic(); }

/* ---- names ---------------------------------------------------------------- */

const char *turn_state_name(enum turn_state s) {
  static const char *const names[] = {"idle",       "resolving", "connecting", "allocating",
                                      "allocated",  "failed",    "auth_failed"};
  return names[s];
}

/* ---- the UDP allocation's datagrams ------------------------------------------ */

static struct turn_alloc *udp_alloc_from(struct turn *t, const struct stun_addr *from) {
  for (int i = 0; i < t->n_allocs; i++) {
    struct turn_alloc *a = t->allocs[i];
    if (a->transport == STUN_TRANSPORT_UDP && a->have_server && stun_addr_equal(&a->server, from))
      return a;
  }
  return NULL;
}

static void got_data(struct turn_alloc *a, const struct stun_addr *peer, const uint8_t *d,
                     size_t n, bool channel) {
  if (channel) a->channel_data_in++;
  else a->data_in++;
  a->data_bytes_in += n;
  a->last_from = *peer;
  a->have_last_from = true;
  a->last_data_len = n < sizeof a->last_data ? n : sizeof a->last_data;
  memcpy(a->last_data, d, a->last_data_len);
}

bool turn_on_stun(struct turn *t, const struct stun_msg *m, const struct stun_addr *from) {
  for (int i = 0; i < t->n_allocs; i++) {
    struct turn_alloc *a = t->allocs[i];
    if (a->transport != STUN_TRANSPORT_UDP || !a->have_server || !stun_addr_equal(&a->server, from))
      continue;
    if (m->cls == STUN_SUCCESS || m->cls == STUN_ERROR) {
      struct turn_txn *x = turntxn_find(a, m->txid);
      if (x == NULL) continue; /* perhaps the STUN client's */
      turntxn_answer(x, m);
      return true;
    }
    if (m->cls == STUN_INDICATION && m->method == STUN_DATA) {
      struct stun_addr peer;
      struct stun_attr d;
      if (a->state != TURN_ALLOCATED || stun_get_addr(m, STUN_A_XOR_PEER_ADDRESS, &peer) != 0 ||
          !stun_find(m, STUN_A_DATA, &d)) {
        turntxn_dropped(t, a->url,
                        "a Data indication without XOR-PEER-ADDRESS and DATA, or no allocation");
        return true;
      }
      got_data(a, &peer, d.val, d.len, false);
      return true;
    }
  }
  return false;
}

const char *turn_on_channel_data(struct turn *t, const uint8_t *buf, size_t n,
                                 const struct stun_addr *from) {
  struct turn_alloc *a = udp_alloc_from(t, from);
  if (a == NULL) return "ChannelData from an address that is not one of our TURN servers";
  uint16_t ch;
  const uint8_t *d;
  size_t dl;
  if (stun_channel_parse(buf, n, &ch, &d, &dl) != 0) {
    t->stats.malformed++;
    return "ChannelData with a bad channel number or length";
  }
  for (int i = 0; i < a->n_chan; i++)
    if (a->chan[i].number == ch) {
      got_data(a, &a->chan[i].peer, d, dl, true);
      return NULL;
    }
  t->stats.malformed++;
  return "ChannelData on a channel this node did not bind";
}

int turn_send(struct turn *t, const struct stun_addr *peer, const void *data, size_t len,
              char *why, size_t whycap) {
  struct turn_alloc *a = NULL;
  for (int i = 0; i < t->n_allocs && a == NULL; i++)
    if (t->allocs[i]->transport == STUN_TRANSPORT_UDP && t->allocs[i]->state == TURN_ALLOCATED)
      a = t->allocs[i];
  if (a == NULL) {
    snprintf(why, whycap, "no UDP relay is allocated (a turnServers entry with ?transport=udp "
                          "or without ?transport)");
    return -1;
  }
  if (peer->family != a->relayed.family) {
    snprintf(why, whycap, "the peer's address family differs from the relay's");
    return -1;
  }
  if (len > 1000) {
    snprintf(why, whycap, "at most 1000 bytes per datagram");
    return -1;
  }
  double now = now_s();
  struct turn_perm *p = turnperm_find(a, peer);
  if (p == NULL) p = turnperm_add(a, peer, now);
  if (p && p->wanted < now + PINNED_FOR) p->wanted = now + PINNED_FOR;
  struct turn_chan *c = turnperm_chan_find(a, peer);
  uint8_t msg[TURN_MSG_MAX + 64];
  if (c && c->bound > 0) {
    size_t n = stun_channel_write(msg, sizeof msg, c->number, data, len, false);
    if (n == 0 || turntxn_udp_send(a, msg, n) != 0) {
      t->stats.send_errors++;
      snprintf(why, whycap, "cannot send to the TURN server");
      return -1;
    }
    a->sent++;
    return 0;
  }
  if (c == NULL && a->n_chan < TURN_MAX_CHANNELS) {
    c = &a->chan[a->n_chan++];
    memset(c, 0, sizeof *c);
    c->number = (uint16_t)(STUN_CHANNEL_MIN + a->next_channel++);
    c->peer = *peer;
  }
  /* The ChannelBind (which also installs the permission) goes first, the
   * data right behind it in a Send indication. */
  if (c && !c->pending && turntxn_start(a, TP_CHANNEL_BIND, peer, c->number, 0) == 0)
    c->pending = true;
  struct turn_req r = {.method = STUN_SEND, .cls = STUN_INDICATION, .peer = peer,
                       .data = data, .data_len = len};
  size_t n = turnmsg_encode(msg, sizeof msg, NULL, &r, NULL);
  if (n == 0 || turntxn_udp_send(a, msg, n) != 0) {
    t->stats.send_errors++;
    snprintf(why, whycap, "cannot send to the TURN server");
    return -1;
  }
  a->sent++;
  return 0;
}

/* ---- the tick ---------------------------------------------------------------- */

static void tick_fire(struct loop_timer *tm) {
  struct turn *t = tm->user;
  double now = now_s();
  struct stun_addr ips[TURN_MAX_PERMS];
  int n = 0;
  bool any = false;
  for (int i = 0; i < t->n_allocs; i++) any |= t->allocs[i]->state == TURN_ALLOCATED;
  if (any) n = turnperm_collect_ips(t, ips, TURN_MAX_PERMS);
  for (int i = 0; i < t->n_allocs; i++) {
    struct turn_alloc *a = t->allocs[i];
    if (a->state != TURN_ALLOCATED) continue;
    turnperm_sync(a, now, ips, n);
    turnperm_channels_refresh(a, now);
  }
  turncand_learn_peers(t);
  turncand_advertise(t);
  loop_timer_start(t->loop, &t->tick, TICK_MS, tick_fire);
}

/* ---- start and stop ----------------------------------------------------------- */

struct turn *turn_start(struct nat *nt, struct loop *l, const struct conf *c) {
  struct turn *t = calloc(1, sizeof *t);
  if (t == NULL) return NULL;
  t->nat = nt;
  t->loop = l;
  t->conf = c;
  t->drop_limit.burst = 5;
  t->drop_limit.window = 10;
  struct transport *tr = transport_of_loop(l);
  t->nm = tr ? tr->nm : NULL;
  t->listen_port = tr && tr->listen_port > 0 ? tr->listen_port : nt->port;
  for (size_t i = 0; i < c->natTraversal.n_turnServers; i++) {
    const struct conf_turn_server *s = &c->natTraversal.turnServers[i];
    char host[256], why[128];
    uint16_t port;
    unsigned mask;
    if (s->urls == NULL ||
        turnmsg_parse_url(s->urls, host, sizeof host, &port, &mask, why, sizeof why) != 0) {
      log_at(LV_WARN, "turn_server_skipped", "server=%s err=%s", s->urls ? s->urls : "-",
             s->urls ? why : "no urls");
      continue;
    }
    for (unsigned bit = 1; bit <= 2; bit <<= 1) {
      if (!(mask & bit)) continue;
      if (t->n_allocs == TURN_MAX_ALLOCS) {
        log_at(LV_WARN, "turn_server_skipped", "server=%s err=%s", s->urls,
               "at most 8 allocations (servers x transports)");
        break;
      }
      struct turn_alloc *a = calloc(1, sizeof *a);
      if (a == NULL) break;
      a->t = t;
      a->index = t->n_allocs;
      a->conf_index = (int)i;
      snprintf(a->url, sizeof a->url, "%s", s->urls);
      snprintf(a->host, sizeof a->host, "%s", host);
      a->port = port;
      a->transport = bit == 1 ? STUN_TRANSPORT_UDP : STUN_TRANSPORT_TCP;
      snprintf(a->username, sizeof a->username, "%s", s->username ? s->username : "");
      snprintf(a->credential, sizeof a->credential, "%s", s->credential ? s->credential : "");
      a->numeric = stun_addr_set(&a->server, host, port) == 0;
      a->have_server = a->numeric;
      t->allocs[t->n_allocs++] = a;
    }
  }
  if (t->nm) {
    t->nm->hooks.candidates = turncand_hello;
    t->nm->hooks.candidates_ud = t;
  }
  if (t->nm && t->nm->hooks.consume[MSG_NAT_TRAVERSAL] == NULL)
    t->nm->hooks.consume[MSG_NAT_TRAVERSAL] = turncand_on_nat_traversal;
  for (int i = 0; i < t->n_allocs; i++) turnalloc_begin(t->allocs[i]);
  t->tick.user = t;
  loop_timer_start(l, &t->tick, 100, tick_fire);
  if (t->n_allocs)
    log_at(LV_INFO, "turn_started", "allocations=%d", t->n_allocs);
  return t;
}

/* Best effort: a Refresh with LIFETIME 0, not waited for. */
static void deallocate_now(struct turn_alloc *a) {
  struct turn_req r = {.method = STUN_REFRESH, .cls = STUN_REQUEST, .has_lifetime = true,
                       .lifetime = 0};
  struct turn_auth au;
  uint8_t msg[TURN_MSG_MAX];
  size_t len = turnmsg_encode(msg, sizeof msg, NULL, &r, turntxn_auth(a, &au));
  if (len == 0) return;
  if (a->transport == STUN_TRANSPORT_UDP) {
    turntxn_udp_send(a, msg, len);
  } else if (a->ctl && a->ctl->connected) {
    (void)!send(a->ctl->io.fd, msg, len, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
}

void turn_stop(struct turn *t) {
  if (t == NULL) return;
  if (t->nm && t->nm->hooks.candidates == turncand_hello) {
    t->nm->hooks.candidates = NULL;
    t->nm->hooks.candidates_ud = NULL;
  }
  if (t->nm && t->nm->hooks.consume[MSG_NAT_TRAVERSAL] == turncand_on_nat_traversal)
    t->nm->hooks.consume[MSG_NAT_TRAVERSAL] = NULL;
  loop_timer_stop(&t->tick);
  loop_timer_stop(&t->resolve_timer);
  for (int i = 0; i < t->n_allocs; i++) {
    struct turn_alloc *a = t->allocs[i];
    if (a->state == TURN_ALLOCATED) deallocate_now(a);
    for (int k = 0; k < TURN_MAX_TXN; k++) turntxn_free(&a->txn[k]);
    loop_timer_stop(&a->timer);
    turntcp_stop(a);
    turnalloc_resolve_abandon(a);
    free(a);
  }
  buf_free(&t->advertised);
  free(t);
}
