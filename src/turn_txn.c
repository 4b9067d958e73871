/* turn_txn: see turn_txn.h. */
#include "turn_txn.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "nat.h"
#include "turn_alloc.h"
#include "turn_tcp.h"

#define MAX_AUTH_TRIES 3     /* challenges and stale nonces answered per request */

static double now_s(void) { return log_monotonic(); }

static const char *tname(uint8_t transport) {
  return transport == STUN_TRANSPORT_TCP ? "tcp" : "udp";
}

void turntxn_dropped(struct turn *t, const char *server, const char *why) {
  t->stats.malformed++;
  log_limited(&t->drop_limit, LV_INFO, "turn_dropped", "server=%s reason=%s", server, why);
}

/* ---- credentials ---------------------------------------------------------- */

/* Takes realm and nonce from a 401 or 438; the key follows the realm. */
void turntxn_set_credentials(struct turn_alloc *a, const struct turn_answer *ans) {
  if (ans->realm[0] && (strcmp(ans->realm, a->realm) != 0 || !a->have_key)) {
    snprintf(a->realm, sizeof a->realm, "%s", ans->realm);
    stun_longterm_key(a->username, strlen(a->username), a->realm, strlen(a->realm),
                      a->credential, strlen(a->credential), a->key);
  }
  if (ans->nonce_len) {
    memcpy(a->nonce, ans->nonce, ans->nonce_len);
    a->nonce_len = ans->nonce_len;
  }
  a->have_key = a->realm[0] != '\0' && a->nonce_len > 0;
}

const struct turn_auth *turntxn_auth(const struct turn_alloc *a, struct turn_auth *out) {
  if (!a->have_key) return NULL;
  *out = (struct turn_auth){.username = a->username,
                            .realm = a->realm,
                            .nonce = a->nonce,
                            .nonce_len = a->nonce_len,
                            .key = a->key};
  return out;
}

/* ---- sending ---------------------------------------------------------------- */

int turntxn_udp_send(struct turn_alloc *a, const void *msg, size_t len) {
  struct nat *nt = a->t->nat;
  if (!nt->io_open) return -1;
  struct sockaddr_storage ss;
  socklen_t sl = stun_addr_to_sockaddr(&a->server, nt->af, &ss);
  if (sl == 0) return -1;
  return sendto(nt->io.fd, msg, len, 0, (struct sockaddr *)&ss, sl) == (ssize_t)len ? 0 : -1;
}

/* ---- transactions ------------------------------------------------------------- */

void turntxn_free(struct turn_txn *x) {
  loop_timer_stop(&x->timer);
  x->active = false;
}

static int txn_build(struct turn_txn *x) {
  struct turn_alloc *a = x->a;
  struct turn_req r = {.cls = STUN_REQUEST};
  switch (x->purpose) {
    case TP_ALLOCATE:
      r.method = STUN_ALLOCATE;
      r.transport = a->transport;
      break;
    case TP_REFRESH:
    case TP_DEALLOCATE:
      r.method = STUN_REFRESH;
      r.has_lifetime = true;
      r.lifetime = x->lifetime;
      break;
    case TP_PERMISSION:
      r.method = STUN_CREATE_PERMISSION;
      r.peer = &x->peer;
      break;
    case TP_CHANNEL_BIND:
      r.method = STUN_CHANNEL_BIND;
      r.channel = x->channel;
      r.peer = &x->peer;
      break;
  }
  struct turn_auth au;
  const struct turn_auth *ap = turntxn_auth(a, &au);
  x->sent_auth = ap != NULL;
  x->len = turnmsg_encode(x->msg, sizeof x->msg, NULL, &r, ap); /* a new txid every time */
  return x->len ? 0 : -1;
}

static void txn_send(struct turn_txn *x);

static void txn_fire(struct loop_timer *tm) {
  struct turn_txn *x = tm->user;
  if (!x->active) return;
  const struct nat_timing *t = &x->a->t->nat->t;
  if (x->a->transport == STUN_TRANSPORT_UDP && x->sends < t->rc) {
    txn_send(x);
    return;
  }
  x->a->t->stats.timeouts++;
  turnalloc_done(x, TV_TIMEOUT, NULL, NULL);
}

/* UDP: RFC 8489 §6.2.1 retransmissions with the node's STUN timing; TCP:
 * one send and the same total wait. */
static void txn_send(struct turn_txn *x) {
  struct turn_alloc *a = x->a;
  struct turn *t = a->t;
  const struct nat_timing *tm = &t->nat->t;
  bool udp = a->transport == STUN_TRANSPORT_UDP;
  int rc = udp ? turntxn_udp_send(a, x->msg, x->len) : turntcp_queue(a, x->msg, x->len);
  x->sends++;
  if (x->sends == 1) t->stats.requests++;
  else t->stats.retransmits++;
  if (rc != 0) t->stats.send_errors++;
  double wait;
  if (!udp) {
    wait = tm->rto_ms * ((double)((1 << (tm->rc - 1)) - 1) + tm->rm);
  } else if (x->sends < tm->rc) {
    wait = x->rto_ms;
    x->rto_ms *= 2;
  } else {
    wait = tm->rm * tm->rto_ms;
  }
  x->timer.user = x;
  loop_timer_start(t->loop, &x->timer, wait, txn_fire);
}

int turntxn_start(struct turn_alloc *a, enum turn_purpose p, const struct stun_addr *peer,
                  uint16_t channel, uint32_t lifetime) {
  struct turn_txn *x = NULL;
  for (int i = 0; i < TURN_MAX_TXN && x == NULL; i++)
    if (!a->txn[i].active) x = &a->txn[i];
  if (x == NULL) return -1;
  memset(x, 0, sizeof *x);
  x->a = a;
  x->purpose = p;
  if (peer) x->peer = *peer;
  x->channel = channel;
  x->lifetime = lifetime;
  x->rto_ms = a->t->nat->t.rto_ms;
  if (txn_build(x) != 0) return -1;
  x->active = true;
  x->first_sent = now_s();
  txn_send(x);
  return 0;
}

struct turn_txn *turntxn_find(struct turn_alloc *a, const uint8_t *txid) {
  for (int i = 0; i < TURN_MAX_TXN; i++)
    if (a->txn[i].active && memcmp(a->txn[i].msg + 8, txid, STUN_TXID_LEN) == 0)
      return &a->txn[i];
  return NULL;
}

bool turntxn_has(const struct turn_alloc *a, enum turn_purpose p) {
  for (int i = 0; i < TURN_MAX_TXN; i++)
    if (a->txn[i].active && a->txn[i].purpose == p) return true;
  return false;
}

/* Sends the request again with new credentials and a new txid. */
static void txn_resend(struct turn_txn *x) {
  loop_timer_stop(&x->timer);
  x->sends = 0;
  x->rto_ms = x->a->t->nat->t.rto_ms;
  if (txn_build(x) != 0) {
    turnalloc_done(x, TV_MALFORMED, NULL, NULL);
    return;
  }
  txn_send(x);
}

void turntxn_answer(struct turn_txn *x, const struct stun_msg *m) {
  struct turn_alloc *a = x->a;
  struct turn *t = a->t;
  struct turn_answer ans;
  enum turn_verdict v = turnmsg_classify(m, x->sent_auth ? a->key : NULL, &ans);
  t->stats.responses++;
  if (m->cls == STUN_ERROR) t->stats.error_responses++;
  switch (v) {
    case TV_INTEGRITY:
    case TV_MALFORMED:
      turntxn_dropped(t, a->url,
                      v == TV_INTEGRITY ? "a response whose MESSAGE-INTEGRITY is missing or wrong"
                                        : "a response without a usable ERROR-CODE, REALM or NONCE");
      /* Over UDP anyone can send it: the real answer may still come. */
      if (a->transport == STUN_TRANSPORT_UDP) return;
      turnalloc_done(x, v, &ans, m);
      return;
    case TV_CHALLENGE:
      t->stats.challenges++;
      if (x->auth_tries++ >= MAX_AUTH_TRIES) break;
      turntxn_set_credentials(a, &ans);
      txn_resend(x);
      return;
    case TV_STALE_NONCE:
      t->stats.stale_nonces++;
      if (x->auth_tries++ >= MAX_AUTH_TRIES) break;
      log_at(LV_DEBUG, "turn_stale_nonce", "server=%s transport=%s method=%s", a->url,
             tname(a->transport), stun_method_name(m->method));
      turntxn_set_credentials(a, &ans);
      txn_resend(x);
      return;
    default:
      break;
  }
  turnalloc_done(x, v, &ans, m);
}
