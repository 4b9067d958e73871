/* turn: see turn.h.
 *
 * An allocation is a small state machine driven by its transactions:
 * alloc_begin -> (host name lookup) -> (TCP connect) -> Allocate ->
 * allocated, with one timer for the next Refresh, or for the next try after
 * a failure (alloc_fail, backoff) or wrong credentials (auth_failed). Every
 * request goes through txn_start/txn_answer, which answer the 401 challenge
 * and 438 Stale Nonce in one place; the purpose handlers see only the final
 * outcome. A once-a-second tick keeps permissions and channels fresh, tells
 * peers about candidate changes and files the candidates peers advertised.
 */
#include "turn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "candidates.h"
#include "conf.h"
#include "envelope.h"
#include "handshake.h"
#include "json.h"
#include "nat.h"
#include "netmgr.h"
#include "peer.h"
#include "peerstore.h"
#include "transport.h"

#define DEFAULT_TURN_PORT 3478
#define RESOLVE_POLL_MS 20
#define RESOLVE_TIMEOUT 10.0 /* s */
#define RETRY_FIRST 5.0      /* s after a failure, doubling... */
#define RETRY_CAP 300.0      /* ...up to 5 minutes */
#define AUTH_RETRY 300.0     /* s before refused credentials are tried again */
#define STABLE_ALLOCATION 10.0 /* s: an allocation lost later is redone at once */
#define TICK_MS 1000
#define CONNECT_TIMEOUT_MS 10000
#define DC_TIMEOUT_MS 10000  /* the server itself waits 30 s for ConnectionBind */
#define PERM_LIFETIME 300.0  /* RFC 8656 §9 */
#define PERMS_PER_TICK 8
#define STORE_PERMS 32       /* most recently seen stored nodes whose IPs are permitted */
#define PINNED_FOR 600.0     /* s a peer we sent to keeps its permission */
#define NAT_TRAVERSAL_MAX 16384
#define MAX_AUTH_TRIES 3     /* challenges and stale nonces answered per request */

/* A pending getaddrinfo_a; glibc's thread writes into it, so it is on the
 * heap and left there if it cannot be cancelled at stop. */
struct turn_resolve {
  struct gaicb cb;
  struct addrinfo hints;
  char host[256];
  char service[8];
};

static double now_s(void) { return log_monotonic(); }

static void copy_text(char *dst, size_t cap, const uint8_t *src, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n && k + 1 < cap; i++)
    dst[k++] = (src[i] < 0x20 || src[i] >= 0x7f) ? '?' : (char)src[i];
  dst[k] = '\0';
}

static const char *tname(uint8_t transport) {
  return transport == STUN_TRANSPORT_TCP ? "tcp" : "udp";
}

/* ---- names ---------------------------------------------------------------- */

const char *turn_state_name(enum turn_state s) {
  static const char *const names[] = {"idle",       "resolving", "connecting", "allocating",
                                      "allocated",  "failed",    "auth_failed"};
  return names[s];
}

const char *turn_verdict_name(enum turn_verdict v) {
  static const char *const names[] = {"success",           "error",     "challenge",
                                      "stale_nonce",       "wrong_credentials",
                                      "integrity",         "malformed", "timeout"};
  return names[v];
}

/* ---- the pure part -------------------------------------------------------- */

int turn_parse_url(const char *url, char *host, size_t hostcap, uint16_t *port,
                   unsigned *transports, char *why, size_t whycap) {
  if (strncmp(url, "turns:", 6) == 0) {
    snprintf(why, whycap, "turns: (TLS to the TURN server) is not supported; use turn:");
    return -1;
  }
  if (strncmp(url, "turn:", 5) != 0) {
    snprintf(why, whycap, "it must start with turn:");
    return -1;
  }
  const char *rest = url + 5, *q = strchr(rest, '?');
  size_t end = q ? (size_t)(q - rest) : strlen(rest);
  const char *p = NULL;
  size_t hl;
  if (rest[0] == '[') {
    const char *close = memchr(rest, ']', end);
    if (close == NULL) {
      snprintf(why, whycap, "an IPv6 address must end with ']'");
      return -1;
    }
    hl = (size_t)(close - rest - 1);
    rest++;
    if ((size_t)(close + 1 - (rest - 1)) < end) {
      if (close[1] != ':') {
        snprintf(why, whycap, "unexpected text after ']'");
        return -1;
      }
      p = close + 2;
    }
  } else {
    const char *colon = memchr(rest, ':', end);
    hl = colon ? (size_t)(colon - rest) : end;
    if (colon) p = colon + 1;
  }
  if (hl == 0 || hl >= hostcap) {
    snprintf(why, whycap, "the host is empty or too long");
    return -1;
  }
  memcpy(host, rest, hl);
  host[hl] = '\0';
  long pv = DEFAULT_TURN_PORT;
  if (p) {
    char digits[8];
    size_t dl = (size_t)((q ? q : url + strlen(url)) - p);
    if (dl == 0 || dl >= sizeof digits) {
      snprintf(why, whycap, "the port must be 1..65535");
      return -1;
    }
    memcpy(digits, p, dl);
    digits[dl] = '\0';
    char *e;
    pv = strtol(digits, &e, 10);
    if (*e != '\0' || pv < 1 || pv > 65535) {
      snprintf(why, whycap, "the port must be 1..65535");
      return -1;
    }
  }
  *port = (uint16_t)pv;
  *transports = 3;
  if (q) {
    if (strcasecmp(q, "?transport=udp") == 0) *transports = 1;
    else if (strcasecmp(q, "?transport=tcp") == 0) *transports = 2;
    else {
      snprintf(why, whycap, "the only parameter is ?transport=udp or ?transport=tcp");
      return -1;
    }
  }
  return 0;
}

size_t turn_encode(uint8_t *buf, size_t cap, const uint8_t *txid, const struct turn_req *r,
                   const struct turn_auth *auth) {
  struct stun_writer w;
  if (stun_begin(&w, buf, cap, r->method, r->cls, txid) != 0) return 0;
  if (r->transport) {
    uint8_t v[4] = {r->transport, 0, 0, 0};
    stun_put(&w, STUN_A_REQUESTED_TRANSPORT, v, sizeof v);
  }
  if (r->channel) {
    uint8_t v[4] = {(uint8_t)(r->channel >> 8), (uint8_t)r->channel, 0, 0};
    stun_put(&w, STUN_A_CHANNEL_NUMBER, v, sizeof v);
  }
  if (r->peer) stun_put_addr(&w, STUN_A_XOR_PEER_ADDRESS, r->peer);
  if (r->has_lifetime) stun_put_u32(&w, STUN_A_LIFETIME, r->lifetime);
  if (r->has_conn_id) stun_put_u32(&w, STUN_A_CONNECTION_ID, r->conn_id);
  if (r->data) stun_put(&w, STUN_A_DATA, r->data, r->data_len);
  if (auth) {
    stun_put_str(&w, STUN_A_USERNAME, auth->username);
    stun_put_str(&w, STUN_A_REALM, auth->realm);
    stun_put(&w, STUN_A_NONCE, auth->nonce, auth->nonce_len);
    stun_put_integrity(&w, auth->key, STUN_LONGTERM_KEY_LEN);
  }
  stun_put_fingerprint(&w);
  return stun_finish(&w);
}

enum turn_verdict turn_classify(const struct stun_msg *m, const uint8_t *key,
                                struct turn_answer *out) {
  memset(out, 0, sizeof *out);
  struct stun_attr a;
  if (stun_find(m, STUN_A_REALM, &a) && a.len < sizeof out->realm) {
    memcpy(out->realm, a.val, a.len);
    out->realm[a.len] = '\0';
  }
  if (stun_find(m, STUN_A_NONCE, &a) && a.len <= sizeof out->nonce) {
    memcpy(out->nonce, a.val, a.len);
    out->nonce_len = a.len;
  }
  if (m->cls == STUN_SUCCESS) {
    if (key && stun_check_integrity(m, key, STUN_LONGTERM_KEY_LEN) != 1) return TV_INTEGRITY;
    return TV_SUCCESS;
  }
  if (m->cls != STUN_ERROR) return TV_MALFORMED;
  const uint8_t *r;
  size_t rl;
  if (!stun_find(m, STUN_A_ERROR_CODE, &a) || stun_attr_error(&a, &out->code, &r, &rl) != 0)
    return TV_MALFORMED;
  copy_text(out->reason, sizeof out->reason, r, rl);
  if (out->code == 401) {
    if (key) return TV_WRONG_CREDENTIALS;
    return out->realm[0] && out->nonce_len ? TV_CHALLENGE : TV_MALFORMED;
  }
  if (out->code == 438) return out->nonce_len ? TV_STALE_NONCE : TV_MALFORMED;
  /* coturn signs some errors (437 to an authenticated Refresh): a present
   * MESSAGE-INTEGRITY must be right; an absent one is accepted. */
  if (key && m->mi_off && stun_check_integrity(m, key, STUN_LONGTERM_KEY_LEN) == 0)
    return TV_INTEGRITY;
  return TV_ERROR;
}

/* ---- forward declarations ------------------------------------------------- */

static void alloc_begin(struct turn_alloc *a);
static void alloc_fail(struct turn_alloc *a, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void ctl_detach(struct turn_alloc *a);
static void ctl_open(struct turn_alloc *a);
static int ctl_queue(struct turn_alloc *a, const uint8_t *msg, size_t len);
static void dc_start(struct turn_alloc *a, const struct stun_msg *m);
static void attempts_open(struct turn_alloc *a);
static void resolve_start(struct turn_alloc *a);
static void resolve_abandon(struct turn_alloc *a);
static void perms_sync(struct turn_alloc *a, double now, const struct stun_addr *ips, int n);

static void dropped(struct turn *t, const char *server, const char *why) {
  t->stats.malformed++;
  log_limited(&t->drop_limit, LV_INFO, "turn_dropped", "server=%s reason=%s", server, why);
}

/* ---- credentials ---------------------------------------------------------- */

/* Takes realm and nonce from a 401 or 438; the key follows the realm. */
static void set_credentials(struct turn_alloc *a, const struct turn_answer *ans) {
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

static const struct turn_auth *auth_of(const struct turn_alloc *a, struct turn_auth *out) {
  if (!a->have_key) return NULL;
  *out = (struct turn_auth){.username = a->username,
                            .realm = a->realm,
                            .nonce = a->nonce,
                            .nonce_len = a->nonce_len,
                            .key = a->key};
  return out;
}

/* ---- sending ---------------------------------------------------------------- */

static int udp_send(struct turn_alloc *a, const void *msg, size_t len) {
  struct nat *nt = a->t->nat;
  if (!nt->io_open) return -1;
  struct sockaddr_storage ss;
  socklen_t sl = stun_addr_to_sockaddr(&a->server, nt->af, &ss);
  if (sl == 0) return -1;
  return sendto(nt->io.fd, msg, len, 0, (struct sockaddr *)&ss, sl) == (ssize_t)len ? 0 : -1;
}

/* ---- transactions ------------------------------------------------------------- */

static void txn_free(struct turn_txn *x) {
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
  const struct turn_auth *ap = auth_of(a, &au);
  x->sent_auth = ap != NULL;
  x->len = turn_encode(x->msg, sizeof x->msg, NULL, &r, ap); /* a new txid every time */
  return x->len ? 0 : -1;
}

static void txn_done(struct turn_txn *x, enum turn_verdict v, const struct turn_answer *ans,
                     const struct stun_msg *m);

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
  txn_done(x, TV_TIMEOUT, NULL, NULL);
}

/* UDP: RFC 8489 §6.2.1 retransmissions with the node's STUN timing; TCP:
 * one send and the same total wait. */
static void txn_send(struct turn_txn *x) {
  struct turn_alloc *a = x->a;
  struct turn *t = a->t;
  const struct nat_timing *tm = &t->nat->t;
  bool udp = a->transport == STUN_TRANSPORT_UDP;
  int rc = udp ? udp_send(a, x->msg, x->len) : ctl_queue(a, x->msg, x->len);
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

static int txn_start(struct turn_alloc *a, enum turn_purpose p, const struct stun_addr *peer,
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

static struct turn_txn *find_txn(struct turn_alloc *a, const uint8_t *txid) {
  for (int i = 0; i < TURN_MAX_TXN; i++)
    if (a->txn[i].active && memcmp(a->txn[i].msg + 8, txid, STUN_TXID_LEN) == 0)
      return &a->txn[i];
  return NULL;
}

static bool has_txn(const struct turn_alloc *a, enum turn_purpose p) {
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
    txn_done(x, TV_MALFORMED, NULL, NULL);
    return;
  }
  txn_send(x);
}

static void txn_answer(struct turn_txn *x, const struct stun_msg *m) {
  struct turn_alloc *a = x->a;
  struct turn *t = a->t;
  struct turn_answer ans;
  enum turn_verdict v = turn_classify(m, x->sent_auth ? a->key : NULL, &ans);
  t->stats.responses++;
  if (m->cls == STUN_ERROR) t->stats.error_responses++;
  switch (v) {
    case TV_INTEGRITY:
    case TV_MALFORMED:
      dropped(t, a->url, v == TV_INTEGRITY ? "a response whose MESSAGE-INTEGRITY is missing or wrong"
                                           : "a response without a usable ERROR-CODE, REALM or NONCE");
      /* Over UDP anyone can send it: the real answer may still come. */
      if (a->transport == STUN_TRANSPORT_UDP) return;
      txn_done(x, v, &ans, m);
      return;
    case TV_CHALLENGE:
      t->stats.challenges++;
      if (x->auth_tries++ >= MAX_AUTH_TRIES) break;
      set_credentials(a, &ans);
      txn_resend(x);
      return;
    case TV_STALE_NONCE:
      t->stats.stale_nonces++;
      if (x->auth_tries++ >= MAX_AUTH_TRIES) break;
      log_at(LV_DEBUG, "turn_stale_nonce", "server=%s transport=%s method=%s", a->url,
             tname(a->transport), stun_method_name(m->method));
      set_credentials(a, &ans);
      txn_resend(x);
      return;
    default:
      break;
  }
  txn_done(x, v, &ans, m);
}

/* ---- the allocation's life -------------------------------------------------- */

static void relays_changed(struct turn *t) {
  struct nat_candidate r[TURN_MAX_ALLOCS];
  int n = 0;
  for (int i = 0; i < t->n_allocs; i++) {
    const struct turn_alloc *a = t->allocs[i];
    if (a->state != TURN_ALLOCATED) continue;
    memset(&r[n], 0, sizeof r[n]);
    r[n].type = NAT_CAND_RELAY;
    r[n].addr = a->relayed;
    r[n].server = i;
    r[n].transport = a->transport;
    n++;
  }
  nat_set_relays(t->nat, r, n);
}

static void alloc_reset(struct turn_alloc *a) {
  for (int i = 0; i < TURN_MAX_TXN; i++) txn_free(&a->txn[i]);
  loop_timer_stop(&a->timer);
  ctl_detach(a);
  bool was = a->state == TURN_ALLOCATED;
  a->state = TURN_IDLE;
  a->n_perm = a->n_chan = a->n_attempts = 0;
  a->next_channel = 0;
  memset(&a->relayed, 0, sizeof a->relayed);
  memset(&a->mapped, 0, sizeof a->mapped);
  a->have_mapped = false;
  a->lifetime = 0;
  a->expires = 0;
  a->clearing = false;
  if (was) relays_changed(a->t);
}

static void retry_fire(struct loop_timer *tm) {
  alloc_begin(tm->user);
}

static void schedule_retry(struct turn_alloc *a, double seconds) {
  a->timer.user = a;
  loop_timer_start(a->t->loop, &a->timer, seconds * 1000.0, retry_fire);
}

static void alloc_fail(struct turn_alloc *a, int code, const char *fmt, ...) {
  char why[200];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  alloc_reset(a);
  a->state = TURN_FAILED;
  a->error_code = code;
  snprintf(a->error, sizeof a->error, "%s", why);
  a->backoff = a->backoff > 0 ? a->backoff * 2 : RETRY_FIRST;
  if (a->backoff > RETRY_CAP) a->backoff = RETRY_CAP;
  if (!a->numeric) a->have_server = false; /* look the name up again */
  log_at(LV_WARN, "turn_failed", "server=%s transport=%s code=%d err=%s retry_s=%.0f", a->url,
         tname(a->transport), code, why, a->backoff);
  schedule_retry(a, a->backoff);
}

static void auth_failed(struct turn_alloc *a, const struct turn_answer *ans) {
  alloc_reset(a);
  a->t->stats.auth_failures++;
  a->state = TURN_AUTH_FAILED;
  a->error_code = ans ? ans->code : 401;
  snprintf(a->error, sizeof a->error,
           "wrong credentials: the server answered %d %.40s to username \"%.40s\" in realm "
           "\"%.40s\"; check natTraversal.turnServers[%d].username and .credential",
           a->error_code, ans && ans->reason[0] ? ans->reason : "Unauthorized", a->username,
           a->realm, a->conf_index + 1);
  log_at(LV_ERROR, "turn_auth_failed", "server=%s transport=%s username=%s realm=%s code=%d msg=%s",
         a->url, tname(a->transport), a->username, a->realm, a->error_code,
         "wrong TURN credentials: the server refused them; no relay from this server (other "
         "candidates are still used); tried again in 5 minutes");
  schedule_retry(a, AUTH_RETRY);
}

/* The server forgot the allocation (437, expiry, a closed connection). */
static void alloc_lost(struct turn_alloc *a, const char *why) {
  double lasted = now_s() - a->allocated;
  if (a->state != TURN_ALLOCATED || lasted < STABLE_ALLOCATION) {
    alloc_fail(a, 0, "%s", why);
    return;
  }
  log_at(LV_WARN, "turn_allocation_lost", "server=%s transport=%s err=%s lasted_s=%.0f", a->url,
         tname(a->transport), why, lasted);
  alloc_begin(a);
}

static void refresh_fire(struct loop_timer *tm) {
  struct turn_alloc *a = tm->user;
  if (a->state != TURN_ALLOCATED) return;
  if (has_txn(a, TP_REFRESH) || txn_start(a, TP_REFRESH, NULL, 0, 600) != 0) {
    a->timer.user = a; /* busy: try again shortly */
    loop_timer_start(a->t->loop, &a->timer, 500, refresh_fire);
  }
}

/* The next Refresh: a minute before the end, or halfway for short ones. */
static void schedule_refresh(struct turn_alloc *a, double in_s) {
  a->timer.user = a;
  loop_timer_start(a->t->loop, &a->timer, in_s * 1000.0, refresh_fire);
}

static double refresh_in(uint32_t lifetime) {
  return lifetime > 120 ? lifetime - 60.0 : lifetime / 2.0;
}

static void alloc_connect(struct turn_alloc *a) {
  if (a->transport == STUN_TRANSPORT_TCP) {
    ctl_open(a);
    return;
  }
  struct nat *nt = a->t->nat;
  if (a->server.family == STUN_FAMILY_IPV6 && nt->af == AF_INET) {
    alloc_fail(a, 0, "an IPv6 TURN server needs the node's host to be IPv6 (\"::\") for UDP");
    return;
  }
  a->state = TURN_ALLOCATING;
  if (txn_start(a, TP_ALLOCATE, NULL, 0, 0) != 0) alloc_fail(a, 0, "cannot build the Allocate");
}

static void alloc_begin(struct turn_alloc *a) {
  alloc_reset(a);
  a->have_key = false; /* a new allocation starts with a fresh challenge */
  a->nonce_len = 0;
  a->realm[0] = '\0';
  if (!a->have_server) {
    resolve_start(a);
    return;
  }
  alloc_connect(a);
}

/* ---- outcomes ----------------------------------------------------------------- */

static void on_allocate(struct turn_alloc *a, enum turn_verdict v, const struct turn_answer *ans,
                        const struct stun_msg *m) {
  struct turn *t = a->t;
  if (v == TV_WRONG_CREDENTIALS) {
    auth_failed(a, ans);
    return;
  }
  if (v == TV_TIMEOUT) {
    alloc_fail(a, 0, "no answer to Allocate; check that the TURN server is up and reachable");
    return;
  }
  if (v == TV_ERROR && ans->code == 437 && a->transport == STUN_TRANSPORT_UDP && !a->clearing) {
    /* An allocation of an earlier run (a restart on the same port) still
     * holds our 5-tuple: delete it (same user; the Refresh gets its own
     * challenge if needed) and allocate again. */
    a->clearing = true;
    if (txn_start(a, TP_DEALLOCATE, NULL, 0, 0) == 0) return;
  }
  if (v != TV_SUCCESS) {
    alloc_fail(a, ans->code, "Allocate refused: %d %s", ans->code,
               ans->reason[0] ? ans->reason : turn_verdict_name(v));
    return;
  }
  if (stun_get_addr(m, STUN_A_XOR_RELAYED_ADDRESS, &a->relayed) != 0) {
    dropped(t, a->url, "an Allocate success without XOR-RELAYED-ADDRESS");
    alloc_fail(a, 0, "the Allocate success has no XOR-RELAYED-ADDRESS");
    return;
  }
  a->have_mapped = stun_get_addr(m, STUN_A_XOR_MAPPED_ADDRESS, &a->mapped) == 0;
  struct stun_attr at;
  uint32_t life = 600;
  if (stun_find(m, STUN_A_LIFETIME, &at) && stun_attr_u32(&at, &life) == 0 && life == 0) life = 600;
  double now = now_s();
  a->state = TURN_ALLOCATED;
  a->lifetime = life;
  a->allocated = now;
  a->expires = now + life;
  a->allocations++;
  a->backoff = 0;
  a->error_code = 0;
  a->error[0] = '\0';
  char rel[STUN_ADDR_STRLEN], map[STUN_ADDR_STRLEN] = "-";
  stun_addr_str(&a->relayed, rel, sizeof rel);
  if (a->have_mapped) stun_addr_str(&a->mapped, map, sizeof map);
  log_at(LV_INFO, "turn_allocated", "server=%s transport=%s relayed=%s mapped=%s lifetime_s=%u",
         a->url, tname(a->transport), rel, map, (unsigned)life);
  schedule_refresh(a, refresh_in(life));
  relays_changed(t);
  perms_sync(a, now, NULL, 0); /* permissions wanted before this allocation */
}

static void on_refresh(struct turn_alloc *a, enum turn_verdict v, const struct turn_answer *ans,
                       const struct stun_msg *m) {
  if (a->state != TURN_ALLOCATED) return;
  if (v == TV_SUCCESS) {
    struct stun_attr at;
    uint32_t life = 600;
    if (stun_find(m, STUN_A_LIFETIME, &at)) stun_attr_u32(&at, &life);
    if (life == 0) life = 600;
    a->lifetime = life;
    a->expires = now_s() + life;
    a->refreshes++;
    log_at(LV_DEBUG, "turn_refreshed", "server=%s transport=%s lifetime_s=%u", a->url,
           tname(a->transport), (unsigned)life);
    schedule_refresh(a, refresh_in(life));
    attempts_open(a);
    return;
  }
  if (v == TV_WRONG_CREDENTIALS) {
    auth_failed(a, ans);
    return;
  }
  if (v == TV_ERROR && ans->code == 437) {
    alloc_lost(a, "the server no longer knows the allocation (437)");
    return;
  }
  double left = a->expires - now_s();
  if (left > 2) { /* try again before it runs out */
    schedule_refresh(a, left / 3);
    attempts_open(a); /* with the nonce as it is */
    return;
  }
  alloc_lost(a, v == TV_TIMEOUT ? "no answer to Refresh" : "Refresh refused");
}

static void reallocate_fire(struct loop_timer *tm) {
  struct turn_alloc *a = tm->user;
  if (a->state == TURN_ALLOCATING && txn_start(a, TP_ALLOCATE, NULL, 0, 0) != 0)
    alloc_fail(a, 0, "cannot build the Allocate");
}

static void on_deallocate(struct turn_alloc *a) {
  if (!a->clearing) return;
  /* The stale allocation is deleted (or never answered); coturn frees the
   * 5-tuple about a second later. Then allocate anew, with the credentials
   * already known. */
  a->timer.user = a;
  loop_timer_start(a->t->loop, &a->timer, 2000, reallocate_fire);
}

static struct turn_perm *perm_find(struct turn_alloc *a, const struct stun_addr *ip) {
  for (int i = 0; i < a->n_perm; i++)
    if (stun_addr_same_ip(&a->perm[i].ip, ip)) return &a->perm[i];
  return NULL;
}

static void on_permission(struct turn_alloc *a, enum turn_verdict v, const struct turn_answer *ans,
                          const struct stun_addr *peer) {
  struct turn_perm *p = perm_find(a, peer);
  if (v == TV_WRONG_CREDENTIALS) {
    auth_failed(a, ans);
    return;
  }
  if (p == NULL) return;
  p->pending = false;
  double now = now_s();
  if (v == TV_SUCCESS) {
    p->installed = now;
    a->t->stats.permissions++;
    return;
  }
  if (v == TV_ERROR && (ans->code == 403 || ans->code == 443)) {
    char ip[STUN_ADDR_STRLEN];
    p->refused_until = now + PERM_LIFETIME;
    log_limited(&a->t->drop_limit, LV_INFO, "turn_permission_refused",
                "server=%s ip=%s code=%d reason=%s", a->url, stun_addr_ip(peer, ip, sizeof ip),
                ans->code, ans->reason);
  }
}

static struct turn_chan *chan_find(struct turn_alloc *a, const struct stun_addr *peer) {
  for (int i = 0; i < a->n_chan; i++)
    if (stun_addr_equal(&a->chan[i].peer, peer)) return &a->chan[i];
  return NULL;
}

static void on_channel(struct turn_alloc *a, enum turn_verdict v, const struct turn_answer *ans,
                       const struct stun_addr *peer, uint16_t number) {
  if (v == TV_WRONG_CREDENTIALS) {
    auth_failed(a, ans);
    return;
  }
  struct turn_chan *c = chan_find(a, peer);
  if (c == NULL || c->number != number) return;
  c->pending = false;
  if (v == TV_SUCCESS) {
    c->bound = now_s();
    a->t->stats.channel_binds++;
  }
}

static void txn_done(struct turn_txn *x, enum turn_verdict v, const struct turn_answer *ans,
                     const struct stun_msg *m) {
  struct turn_alloc *a = x->a;
  enum turn_purpose p = x->purpose;
  struct stun_addr peer = x->peer;
  uint16_t channel = x->channel;
  struct turn_answer none;
  memset(&none, 0, sizeof none);
  if (ans == NULL) ans = &none;
  txn_free(x);
  switch (p) {
    case TP_ALLOCATE: on_allocate(a, v, ans, m); break;
    case TP_REFRESH: on_refresh(a, v, ans, m); break;
    case TP_DEALLOCATE: on_deallocate(a); break;
    case TP_PERMISSION: on_permission(a, v, ans, &peer); break;
    case TP_CHANNEL_BIND: on_channel(a, v, ans, &peer, channel); break;
  }
}

/* ---- the TCP control connection ------------------------------------------------ */

static void ctl_lost(struct turn_alloc *a, const char *why) {
  if (a->state == TURN_ALLOCATED) alloc_lost(a, why);
  else alloc_fail(a, 0, "%s", why);
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

static int ctl_queue(struct turn_alloc *a, const uint8_t *msg, size_t len) {
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
    dropped(t, a->url, "ChannelData on a TCP allocation's control connection");
    return;
  }
  struct stun_msg m;
  enum stun_status st = stun_parse(&m, buf, len);
  if (st != STUN_OK) {
    dropped(t, a->url, stun_strerror(st));
    return;
  }
  if (m.cls == STUN_SUCCESS || m.cls == STUN_ERROR) {
    struct turn_txn *x = find_txn(a, m.txid);
    if (x == NULL) {
      t->stats.stray++;
      return;
    }
    txn_answer(x, &m);
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
      dropped(a->t, a->url, "bytes that are neither STUN nor ChannelData on the control connection");
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
      alloc_fail(a, 0, "cannot connect to the TURN server: %s", strerror(err));
      return;
    }
    c->connected = true;
    loop_timer_stop(&a->timer); /* the connect timeout */
    a->state = TURN_ALLOCATING;
    if (txn_start(a, TP_ALLOCATE, NULL, 0, 0) != 0) {
      alloc_fail(a, 0, "cannot build the Allocate");
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
  if (a->state == TURN_CONNECTING) alloc_fail(a, 0, "cannot connect to the TURN server: timed out");
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

static void ctl_open(struct turn_alloc *a) {
  char why[160];
  int fd;
  if (tcp_socket_to(&a->server, &fd, why, sizeof why) != 0) {
    alloc_fail(a, 0, "%s", why);
    return;
  }
  struct turn_ctl *c = calloc(1, sizeof *c);
  if (c == NULL) {
    close(fd);
    alloc_fail(a, 0, "out of memory");
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
    alloc_fail(a, 0, "the event loop cannot watch the control connection");
    return;
  }
  a->ctl = c;
  a->state = TURN_CONNECTING;
  loop_want_write(&c->io);
  a->timer.user = a;
  loop_timer_start(a->t->loop, &a->timer, CONNECT_TIMEOUT_MS, connect_timeout);
}

/* Leaves the connection to the loop, which closes it and frees c later. */
static void ctl_detach(struct turn_alloc *a) {
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
  const struct turn_auth *ap = auth_of(a, &au);
  uint8_t msg[TURN_MSG_MAX];
  size_t len = turn_encode(msg, sizeof msg, NULL, &r, ap);
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
    dropped(a->t, a->url, "a data connection answer that is not STUN");
    dc_fail(dc, "the answer to ConnectionBind is not STUN", false);
    return;
  }
  if ((size_t)fl > dc->rx_len) return;
  struct stun_msg m;
  if (stun_parse(&m, dc->rx, (size_t)fl) != STUN_OK || m.method != STUN_CONNECTION_BIND ||
      memcmp(m.txid, dc->txid, STUN_TXID_LEN) != 0) {
    dropped(a->t, a->url, "a data connection answer that is not ours");
    dc_fail(dc, "unexpected answer to ConnectionBind", false);
    return;
  }
  struct turn_answer ans;
  enum turn_verdict v = turn_classify(&m, dc->sent_auth ? a->key : NULL, &ans);
  a->t->stats.responses++;
  if (v == TV_SUCCESS) {
    dc_bound(dc, (size_t)fl);
    return;
  }
  char why[160];
  snprintf(why, sizeof why, "ConnectionBind refused: %d %s", ans.code,
           ans.reason[0] ? ans.reason : turn_verdict_name(v));
  /* For the server this is a new session: it may challenge it, or find the
   * nonce stale; it closes the connection either way. */
  bool auth = v == TV_CHALLENGE || v == TV_STALE_NONCE || v == TV_WRONG_CREDENTIALS;
  if (auth && ans.nonce_len) {
    if (v == TV_STALE_NONCE) a->t->stats.stale_nonces++;
    else a->t->stats.challenges++;
    set_credentials(a, &ans);
  }
  if (v == TV_INTEGRITY || v == TV_MALFORMED) dropped(a->t, a->url, why);
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
static void attempts_open(struct turn_alloc *a) {
  struct turn_attempt q[TURN_MAX_DATACONN];
  int n = a->n_attempts;
  memcpy(q, a->attempt, (size_t)n * sizeof q[0]);
  a->n_attempts = 0;
  for (int i = 0; i < n && a->state == TURN_ALLOCATED; i++) dc_open(a, &q[i]);
}

/* A Refresh renews the nonce (a 438 answer brings a new one); the data
 * connections open when it is answered. */
static void attempts_kick(struct turn_alloc *a) {
  if (has_txn(a, TP_REFRESH)) return;
  if (txn_start(a, TP_REFRESH, NULL, 0, 600) != 0) attempts_open(a);
}

static void dc_start(struct turn_alloc *a, const struct stun_msg *m) {
  struct stun_attr at;
  uint32_t cid;
  struct stun_addr peer;
  if (!stun_find(m, STUN_A_CONNECTION_ID, &at) || stun_attr_u32(&at, &cid) != 0 ||
      stun_get_addr(m, STUN_A_XOR_PEER_ADDRESS, &peer) != 0) {
    dropped(a->t, a->url, "a ConnectionAttempt without CONNECTION-ID or XOR-PEER-ADDRESS");
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
      struct turn_txn *x = find_txn(a, m->txid);
      if (x == NULL) continue; /* perhaps the STUN client's */
      txn_answer(x, m);
      return true;
    }
    if (m->cls == STUN_INDICATION && m->method == STUN_DATA) {
      struct stun_addr peer;
      struct stun_attr d;
      if (a->state != TURN_ALLOCATED || stun_get_addr(m, STUN_A_XOR_PEER_ADDRESS, &peer) != 0 ||
          !stun_find(m, STUN_A_DATA, &d)) {
        dropped(t, a->url, "a Data indication without XOR-PEER-ADDRESS and DATA, or no allocation");
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

static struct turn_perm *perm_add(struct turn_alloc *a, const struct stun_addr *ip, double now) {
  if (a->n_perm < TURN_MAX_PERMS) {
    struct turn_perm *p = &a->perm[a->n_perm++];
    memset(p, 0, sizeof *p);
    p->ip = *ip;
    p->ip.port = 0;
    return p;
  }
  for (int i = 0; i < a->n_perm; i++) { /* reuse one nobody wants any more */
    struct turn_perm *p = &a->perm[i];
    if (p->pending || p->wanted >= now - 0.5) continue;
    memset(p, 0, sizeof *p);
    p->ip = *ip;
    p->ip.port = 0;
    return p;
  }
  return NULL;
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
  struct turn_perm *p = perm_find(a, peer);
  if (p == NULL) p = perm_add(a, peer, now);
  if (p && p->wanted < now + PINNED_FOR) p->wanted = now + PINNED_FOR;
  struct turn_chan *c = chan_find(a, peer);
  uint8_t msg[TURN_MSG_MAX + 64];
  if (c && c->bound > 0) {
    size_t n = stun_channel_write(msg, sizeof msg, c->number, data, len, false);
    if (n == 0 || udp_send(a, msg, n) != 0) {
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
  if (c && !c->pending && txn_start(a, TP_CHANNEL_BIND, peer, c->number, 0) == 0) c->pending = true;
  struct turn_req r = {.method = STUN_SEND, .cls = STUN_INDICATION, .peer = peer,
                       .data = data, .data_len = len};
  size_t n = turn_encode(msg, sizeof msg, NULL, &r, NULL);
  if (n == 0 || udp_send(a, msg, n) != 0) {
    t->stats.send_errors++;
    snprintf(why, whycap, "cannot send to the TURN server");
    return -1;
  }
  a->sent++;
  return 0;
}

/* ---- permissions: who may reach the relays ------------------------------------ */

static void add_ip(struct stun_addr *ips, int *n, int cap, const char *ip) {
  struct stun_addr a;
  if (*n >= cap || stun_addr_set(&a, ip, 0) != 0) return;
  for (int i = 0; i < *n; i++)
    if (stun_addr_same_ip(&ips[i], &a)) return;
  ips[(*n)++] = a;
}

/* "ip:port" or "[v6]:port" to the IP alone. */
static void add_hostport(struct stun_addr *ips, int *n, int cap, const char *hp) {
  char ip[64];
  snprintf(ip, sizeof ip, "%s", hp);
  char *colon = strrchr(ip, ':');
  if (colon == NULL) return;
  *colon = '\0';
  const char *s = ip;
  if (ip[0] == '[') {
    s = ip + 1;
    char *close = strchr(ip, ']');
    if (close) *close = '\0';
  }
  add_ip(ips, n, cap, s);
}

/* The most recently seen stored nodes: a min-heap on last_seen holding
 * their addresses' IPs, so a scan of a large store copies little. */
struct recent_node {
  double seen;
  struct stun_addr ip[PEERSTORE_MAX_ADDRS];
  int n;
};
struct recent_nodes {
  struct recent_node heap[STORE_PERMS];
  int n;
};

static void heap_down(struct recent_nodes *rn, int i) {
  for (;;) {
    int l = 2 * i + 1, r = l + 1, m = i;
    if (l < rn->n && rn->heap[l].seen < rn->heap[m].seen) m = l;
    if (r < rn->n && rn->heap[r].seen < rn->heap[m].seen) m = r;
    if (m == i) return;
    struct recent_node tmp = rn->heap[i];
    rn->heap[i] = rn->heap[m];
    rn->heap[m] = tmp;
    i = m;
  }
}

static int keep_recent(const struct peer_record *r, void *ud) {
  struct recent_nodes *rn = ud;
  if (r->n_addrs == 0 || (rn->n == STORE_PERMS && r->last_seen <= rn->heap[0].seen)) return 0;
  struct recent_node node = {.seen = r->last_seen};
  for (int k = 0; k < r->n_addrs; k++) {
    bool tls;
    char host[256];
    int port;
    if (transport_parse_url(r->addrs[k], &tls, host, sizeof host, &port) == 0 &&
        stun_addr_set(&node.ip[node.n], host, 0) == 0)
      node.n++;
  }
  if (node.n == 0) return 0;
  if (rn->n < STORE_PERMS) { /* sift up */
    int i = rn->n++;
    while (i > 0 && rn->heap[(i - 1) / 2].seen > node.seen) {
      rn->heap[i] = rn->heap[(i - 1) / 2];
      i = (i - 1) / 2;
    }
    rn->heap[i] = node;
  } else {
    rn->heap[0] = node;
    heap_down(rn, 0);
  }
  return 0;
}

/* The rule (docs/NAT.md): the IPs of the nodes connected now (their
 * address, and the host and srflx candidates they advertised), then those of
 * the most recently seen nodes of the peer store, at most `cap`. */
static int collect_ips(struct turn *t, struct stun_addr *ips, int cap) {
  int n = 0;
  struct netmgr *nm = t->nm;
  if (nm == NULL) return 0;
  for (struct peer *p = nm->peers; p && n < cap; p = p->next) {
    if (p->state != PEER_ESTABLISHED && p->state != PEER_HANDSHAKING) continue;
    add_hostport(ips, &n, cap, p->remote);
    for (int i = 0; i < p->hello.n_cands; i++)
      if (p->hello.cands[i].type != CAND_RELAY) add_ip(ips, &n, cap, p->hello.cands[i].ip);
  }
  if (nm->store == NULL || n >= cap) return n;
  struct recent_nodes *rn = calloc(1, sizeof *rn);
  if (rn == NULL) return n;
  peerstore_each(nm->store, keep_recent, rn);
  /* newest first: take the heap apart from its minimum, then reverse */
  struct stun_addr got[STORE_PERMS * PEERSTORE_MAX_ADDRS];
  int ng = 0;
  while (rn->n > 0) {
    struct recent_node *top = &rn->heap[0];
    for (int k = top->n - 1; k >= 0; k--) got[ng++] = top->ip[k];
    rn->heap[0] = rn->heap[--rn->n];
    heap_down(rn, 0);
  }
  free(rn);
  for (int i = ng - 1; i >= 0 && n < cap; i--) {
    char ip[STUN_ADDR_STRLEN];
    add_ip(ips, &n, cap, stun_addr_ip(&got[i], ip, sizeof ip));
  }
  return n;
}

static void perms_sync(struct turn_alloc *a, double now, const struct stun_addr *ips, int n) {
  for (int i = 0; i < n; i++) {
    if (ips[i].family != a->relayed.family) continue;
    struct turn_perm *p = perm_find(a, &ips[i]);
    if (p == NULL) p = perm_add(a, &ips[i], now);
    if (p && p->wanted < now) p->wanted = now;
  }
  int started = 0;
  for (int i = 0; i < a->n_perm && started < PERMS_PER_TICK; i++) {
    struct turn_perm *p = &a->perm[i];
    if (p->wanted < now - 0.5 || p->pending || p->refused_until > now) continue;
    if (p->installed > 0 && now - p->installed < TURN_PERMISSION_REFRESH) continue;
    if (txn_start(a, TP_PERMISSION, &p->ip, 0, 0) != 0) break; /* no free transaction */
    p->pending = true;
    started++;
  }
  int k = 0; /* forget what nobody wants and has lapsed */
  for (int i = 0; i < a->n_perm; i++) {
    struct turn_perm *p = &a->perm[i];
    bool keep = p->pending || p->wanted >= now - 0.5 || p->refused_until > now ||
                (p->installed > 0 && now - p->installed < PERM_LIFETIME);
    if (keep) a->perm[k++] = *p;
  }
  a->n_perm = k;
}

static void channels_refresh(struct turn_alloc *a, double now) {
  for (int i = 0; i < a->n_chan; i++) {
    struct turn_chan *c = &a->chan[i];
    struct turn_perm *p = perm_find(a, &c->peer);
    if (c->pending || c->bound <= 0 || now - c->bound < TURN_CHANNEL_REFRESH || p == NULL ||
        p->wanted < now)
      continue;
    if (txn_start(a, TP_CHANNEL_BIND, &c->peer, c->number, 0) == 0) c->pending = true;
  }
}

/* ---- candidates: telling peers, learning theirs -------------------------------- */

/* This node's candidates for the wire: host and srflx addresses with the
 * TCP listen port (the WebSocket listener is on the same address), relay
 * addresses as the TURN server gave them. */
int turn_local_candidates(const struct nat *nt, int listen_port, struct cand *out, int cap) {
  struct nat_candidate nc[NAT_MAX_CANDIDATES];
  size_t total = nat_candidates(nt, nc, NAT_MAX_CANDIDATES);
  int n = 0;
  for (size_t i = 0; i < total && n < cap; i++) {
    struct cand c;
    memset(&c, 0, sizeof c);
    c.type = (uint8_t)nc[i].type;
    c.priority = nc[i].priority;
    if (nc[i].type == NAT_CAND_RELAY) {
      c.transport = nc[i].transport == STUN_TRANSPORT_TCP ? CAND_TCP : CAND_UDP;
      c.port = nc[i].addr.port;
    } else {
      if (listen_port <= 0 || listen_port > 65535) continue;
      c.transport = CAND_TCP;
      c.port = (uint16_t)listen_port;
    }
    stun_addr_ip(&nc[i].addr, c.ip, sizeof c.ip);
    bool dup = false;
    for (int k = 0; k < n && !dup; k++) {
      if (out[k].port != c.port || out[k].transport != c.transport || strcmp(out[k].ip, c.ip))
        continue;
      dup = true;
      if (c.priority > out[k].priority) out[k] = c; /* srflx == host: keep host */
    }
    if (!dup) out[n++] = c;
  }
  return n;
}

void turn_learn_candidates(struct netmgr *nm, const char *node_id_hex, const char *entry_url,
                           const struct cand *c, int n, const char *source) {
  if (nm->store == NULL) return;
  double now = netmgr_wallclock_ms() / 1000.0;
  if (n <= 0) { /* nothing but the address: as it always was */
    if (entry_url && entry_url[0])
      peerstore_add_address(nm->store, node_id_hex, entry_url, source, now);
    return;
  }
  bool tls = entry_url && strncmp(entry_url, "wss://", 6) == 0;
  struct cand_pref pref;
  cand_pref_set(&pref, nm->conf->natTraversal.preferredMethod,
                nm->conf->natTraversal.candidatePreference);
  char urls[CAND_MAX_URLS][CAND_URL_LEN];
  int k = cand_dial_urls(c, n, entry_url, tls, &pref, urls, CAND_MAX_URLS);
  if (k == 0) return;
  struct peer_record r;
  bool dirty = false;
  if (peerstore_get(nm->store, node_id_hex, &r) != 0) {
    if (peerstore_add_address(nm->store, node_id_hex, urls[0], source, now) != 0 ||
        peerstore_get(nm->store, node_id_hex, &r) != 0)
      return;
  } else if (now > r.last_seen) {
    r.last_seen = now;
    dirty = true;
  }
  if (cand_merge_urls(&r, urls, k) || dirty) peerstore_put(nm->store, &r);
}

static int hello_candidates(void *ud, struct cand *out, int cap) {
  struct turn *t = ud;
  return turn_local_candidates(t->nat, t->listen_port, out, cap);
}

/* A nat_traversal message whenever this node's candidates change. */
static void advertise(struct turn *t) {
  if (t->nm == NULL) return;
  struct cand c[CAND_MAX];
  int n = turn_local_candidates(t->nat, t->listen_port, c, CAND_MAX);
  struct buf b = {0};
  cand_write_json(&b, c, n);
  bool same = t->advertised.len == b.len && memcmp(t->advertised.data, b.data, b.len) == 0;
  if (!same) {
    buf_reset(&t->advertised);
    buf_append(&t->advertised, b.data, b.len);
    struct buf msg = {0};
    buf_appendf(&msg, "{\"candidates\":%s,\"time\":%.0f}", b.data, netmgr_wallclock_ms());
    int sent = netmgr_send(t->nm, NULL, MSG_NAT_TRAVERSAL, msg.data, msg.len);
    if (sent > 0) {
      t->stats.nat_traversal_sent += (uint64_t)sent;
      log_at(LV_DEBUG, "nat_traversal_sent", "peers=%d candidates=%d", sent, n);
    }
    buf_free(&msg);
  }
  buf_free(&b);
}

/* Candidates that arrived in a HELLO or nat_traversal go to the peer store. */
static void learn_candidates(struct turn *t) {
  if (t->nm == NULL) return;
  for (struct peer *p = t->nm->peers; p; p = p->next) {
    if (p->state != PEER_ESTABLISHED || p->hello.n_cands == 0 || p->hello.cands_learned) continue;
    char url[128];
    netmgr_peer_url(p, url, sizeof url);
    turn_learn_candidates(t->nm, p->id_hex, url, p->hello.cands, p->hello.n_cands, "hello");
    p->hello.cands_learned = true;
  }
}

int turn_on_nat_traversal(void *ud, struct peer *p, const struct envelope *e) {
  (void)ud;
  struct netmgr *nm = p->nm;
  struct json_doc doc;
  char err[96], label[64];
  const char *why = NULL;
  struct cand c[CAND_MAX];
  int bad = 0, n = -1;
  if (e->payload_len > NAT_TRAVERSAL_MAX) {
    why = "nat_traversal larger than 16 KiB";
  } else if (json_parse((const char *)e->payload, e->payload_len, &doc, err, sizeof err) != 0) {
    why = "nat_traversal is not valid JSON";
  } else {
    n = cand_parse_json(json_get(doc.root, "candidates"), c, CAND_MAX, &bad);
    json_free(&doc);
    if (n < 0) why = "nat_traversal without a candidates array of at most 32 entries";
  }
  if (why) {
    nm->stats.invalid_messages++;
    netmgr_penalise(nm, p, BH_INVALID_MESSAGE);
    log_at(LV_INFO, "invalid_message", "peer=%s type=nat_traversal why=%s",
           peer_label(p, label, sizeof label), why);
    return -1;
  }
  hs_hello_set_candidates(&p->hello, c, n); /* the tick files them */
  log_at(LV_DEBUG, "nat_traversal_received", "peer=%s candidates=%d skipped=%d",
         peer_label(p, label, sizeof label), n, bad);
  return 0;
}

static void tick_fire(struct loop_timer *tm) {
  struct turn *t = tm->user;
  double now = now_s();
  struct stun_addr ips[TURN_MAX_PERMS];
  int n = 0;
  bool any = false;
  for (int i = 0; i < t->n_allocs; i++) any |= t->allocs[i]->state == TURN_ALLOCATED;
  if (any) n = collect_ips(t, ips, TURN_MAX_PERMS);
  for (int i = 0; i < t->n_allocs; i++) {
    struct turn_alloc *a = t->allocs[i];
    if (a->state != TURN_ALLOCATED) continue;
    perms_sync(a, now, ips, n);
    channels_refresh(a, now);
  }
  learn_candidates(t);
  advertise(t);
  loop_timer_start(t->loop, &t->tick, TICK_MS, tick_fire);
}

/* ---- host name lookups ------------------------------------------------------ */

static void resolve_poll(struct loop_timer *tm) {
  struct turn *t = tm->user;
  bool pending = false;
  double now = now_s();
  for (int i = 0; i < t->n_allocs; i++) {
    struct turn_alloc *a = t->allocs[i];
    if (a->res == NULL) continue;
    int e = gai_error(&a->res->cb);
    if (e == EAI_INPROGRESS) {
      if (a->state == TURN_RESOLVING && now > a->resolve_deadline) {
        resolve_abandon(a);
        alloc_fail(a, 0, "the host name lookup timed out");
      } else {
        pending = true;
      }
      continue;
    }
    struct addrinfo *res = e == 0 ? a->res->cb.ar_result : NULL;
    bool found = false;
    for (struct addrinfo *ai = res; ai && !found; ai = ai->ai_next) {
      struct stun_addr sa;
      if (stun_addr_from_sockaddr(&sa, ai->ai_addr, ai->ai_addrlen) != 0) continue;
      if (a->transport == STUN_TRANSPORT_UDP && sa.family == STUN_FAMILY_IPV6 &&
          t->nat->af == AF_INET)
        continue;
      sa.port = a->port;
      a->server = sa;
      found = true;
    }
    if (res) freeaddrinfo(res);
    free(a->res);
    a->res = NULL;
    if (a->state != TURN_RESOLVING) continue;
    if (!found) {
      alloc_fail(a, 0, "the host name does not resolve: %s", e ? gai_strerror(e) : "no usable address");
      continue;
    }
    a->have_server = true;
    alloc_connect(a);
  }
  t->resolve_timer_on = pending;
  if (pending) loop_timer_start(t->loop, &t->resolve_timer, RESOLVE_POLL_MS, resolve_poll);
}

static void resolve_start(struct turn_alloc *a) {
  struct turn *t = a->t;
  a->state = TURN_RESOLVING;
  a->resolve_deadline = now_s() + RESOLVE_TIMEOUT;
  if (a->res == NULL) {
    struct turn_resolve *r = calloc(1, sizeof *r);
    if (r == NULL) {
      alloc_fail(a, 0, "out of memory");
      return;
    }
    snprintf(r->host, sizeof r->host, "%s", a->host);
    snprintf(r->service, sizeof r->service, "%u", (unsigned)a->port);
    r->hints.ai_family = AF_UNSPEC;
    r->hints.ai_socktype = a->transport == STUN_TRANSPORT_TCP ? SOCK_STREAM : SOCK_DGRAM;
    r->hints.ai_flags = AI_NUMERICSERV;
    r->cb.ar_name = r->host;
    r->cb.ar_service = r->service;
    r->cb.ar_request = &r->hints;
    struct gaicb *list[1] = {&r->cb};
    int e = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
    if (e != 0) {
      free(r);
      alloc_fail(a, 0, "the host name lookup failed: %s", gai_strerror(e));
      return;
    }
    a->res = r;
  }
  if (!t->resolve_timer_on) {
    t->resolve_timer_on = true;
    t->resolve_timer.user = t;
    loop_timer_start(t->loop, &t->resolve_timer, RESOLVE_POLL_MS, resolve_poll);
  }
}

/* A lookup a glibc thread is still working on is left to it (its memory
 * too) rather than freed under it. */
static void resolve_abandon(struct turn_alloc *a) {
  struct turn_resolve *r = a->res;
  if (r == NULL) return;
  a->res = NULL;
  if (gai_cancel(&r->cb) == EAI_NOTCANCELED) {
    const struct gaicb *list[1] = {&r->cb};
    struct timespec ts = {1, 0};
    gai_suspend(list, 1, &ts);
  }
  int e = gai_error(&r->cb);
  if (e == EAI_INPROGRESS) return;
  if (e == 0 && r->cb.ar_result) freeaddrinfo(r->cb.ar_result);
  free(r);
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
        turn_parse_url(s->urls, host, sizeof host, &port, &mask, why, sizeof why) != 0) {
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
    t->nm->hooks.candidates = hello_candidates;
    t->nm->hooks.candidates_ud = t;
  }
  if (t->nm && t->nm->hooks.consume[MSG_NAT_TRAVERSAL] == NULL)
    t->nm->hooks.consume[MSG_NAT_TRAVERSAL] = turn_on_nat_traversal;
  for (int i = 0; i < t->n_allocs; i++) alloc_begin(t->allocs[i]);
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
  size_t len = turn_encode(msg, sizeof msg, NULL, &r, auth_of(a, &au));
  if (len == 0) return;
  if (a->transport == STUN_TRANSPORT_UDP) {
    udp_send(a, msg, len);
  } else if (a->ctl && a->ctl->connected) {
    (void)!send(a->ctl->io.fd, msg, len, MSG_NOSIGNAL | MSG_DONTWAIT);
  }
}

void turn_stop(struct turn *t) {
  if (t == NULL) return;
  if (t->nm && t->nm->hooks.candidates == hello_candidates) {
    t->nm->hooks.candidates = NULL;
    t->nm->hooks.candidates_ud = NULL;
  }
  if (t->nm && t->nm->hooks.consume[MSG_NAT_TRAVERSAL] == turn_on_nat_traversal)
    t->nm->hooks.consume[MSG_NAT_TRAVERSAL] = NULL;
  loop_timer_stop(&t->tick);
  loop_timer_stop(&t->resolve_timer);
  for (int i = 0; i < t->n_allocs; i++) {
    struct turn_alloc *a = t->allocs[i];
    if (a->state == TURN_ALLOCATED) deallocate_now(a);
    for (int k = 0; k < TURN_MAX_TXN; k++) txn_free(&a->txn[k]);
    loop_timer_stop(&a->timer);
    ctl_detach(a);
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
    resolve_abandon(a);
    free(a);
  }
  buf_free(&t->advertised);
  free(t);
}
