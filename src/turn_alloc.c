/* turn_alloc: see turn_alloc.h. */
#include "turn_alloc.h"

#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "nat.h"
#include "nat_cand.h"
#include "resolve.h"
#include "turn_perm.h"
#include "turn_tcp.h"
#include "turn_txn.h"

#define RESOLVE_POLL_MS 20
#define RESOLVE_TIMEOUT 10.0 /* s */
#define RETRY_FIRST 5.0      /* s after a failure, doubling... */
#define RETRY_CAP 300.0      /* ...up to 5 minutes */
#define AUTH_RETRY 300.0     /* s before refused credentials are tried again */
#define STABLE_ALLOCATION 10.0 /* s: an allocation lost later is redone at once */

static double now_s(void) { return log_monotonic(); }

static const char *tname(uint8_t transport) {
  return transport == STUN_TRANSPORT_TCP ? "tcp" : "udp";
}

static void lookup_start(struct turn_alloc *a);

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
  natcand_set_relays(t->nat, r, n);
}

static void alloc_reset(struct turn_alloc *a) {
  for (int i = 0; i < TURN_MAX_TXN; i++) turntxn_free(&a->txn[i]);
  loop_timer_stop(&a->timer);
  turntcp_detach(a);
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
  turnalloc_begin(tm->user);
}

static void schedule_retry(struct turn_alloc *a, double seconds) {
  a->timer.user = a;
  loop_timer_start(a->t->loop, &a->timer, seconds * 1000.0, retry_fire);
}

void turnalloc_fail(struct turn_alloc *a, int code, const char *fmt, ...) {
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

void turnalloc_auth_failed(struct turn_alloc *a, const struct turn_answer *ans) {
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
void turnalloc_lost(struct turn_alloc *a, const char *why) {
  double lasted = now_s() - a->allocated;
  if (a->state != TURN_ALLOCATED || lasted < STABLE_ALLOCATION) {
    turnalloc_fail(a, 0, "%s", why);
    return;
  }
  log_at(LV_WARN, "turn_allocation_lost", "server=%s transport=%s err=%s lasted_s=%.0f", a->url,
         tname(a->transport), why, lasted);
  turnalloc_begin(a);
}

static void refresh_fire(struct loop_timer *tm) {
  struct turn_alloc *a = tm->user;
  if (a->state != TURN_ALLOCATED) return;
  if (turntxn_has(a, TP_REFRESH) || turntxn_start(a, TP_REFRESH, NULL, 0, 600) != 0) {
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
    turntcp_open(a);
    return;
  }
  struct nat *nt = a->t->nat;
  if (a->server.family == STUN_FAMILY_IPV6 && nt->af == AF_INET) {
    turnalloc_fail(a, 0, "an IPv6 TURN server needs the node's host to be IPv6 (\"::\") for UDP");
    return;
  }
  a->state = TURN_ALLOCATING;
  if (turntxn_start(a, TP_ALLOCATE, NULL, 0, 0) != 0)
    turnalloc_fail(a, 0, "cannot build the Allocate");
}

void turnalloc_begin(struct turn_alloc *a) {
  alloc_reset(a);
  a->have_key = false; /* a new allocation starts with a fresh challenge */
  a->nonce_len = 0;
  a->realm[0] = '\0';
  if (!a->have_server) {
    lookup_start(a);
    return;
  }
  alloc_connect(a);
}

/* ---- outcomes ----------------------------------------------------------------- */

static void on_allocate(struct turn_alloc *a, enum turn_verdict v, const struct turn_answer *ans,
                        const struct stun_msg *m) {
  struct turn *t = a->t;
  if (v == TV_WRONG_CREDENTIALS) {
    turnalloc_auth_failed(a, ans);
    return;
  }
  if (v == TV_TIMEOUT) {
    turnalloc_fail(a, 0, "no answer to Allocate; check that the TURN server is up and reachable");
    return;
  }
  if (v == TV_ERROR && ans->code == 437 && a->transport == STUN_TRANSPORT_UDP && !a->clearing) {
    /* An allocation of an earlier run (a restart on the same port) still
     * holds our 5-tuple: delete it (same user; the Refresh gets its own
     * challenge if needed) and allocate again. */
    a->clearing = true;
    if (turntxn_start(a, TP_DEALLOCATE, NULL, 0, 0) == 0) return;
  }
  if (v != TV_SUCCESS) {
    turnalloc_fail(a, ans->code, "Allocate refused: %d %s", ans->code,
                   ans->reason[0] ? ans->reason : turnmsg_verdict_name(v));
    return;
  }
  if (stun_get_addr(m, STUN_A_XOR_RELAYED_ADDRESS, &a->relayed) != 0) {
    turntxn_dropped(t, a->url, "an Allocate success without XOR-RELAYED-ADDRESS");
    turnalloc_fail(a, 0, "the Allocate success has no XOR-RELAYED-ADDRESS");
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
  turnperm_sync(a, now, NULL, 0); /* permissions wanted before this allocation */
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
    turntcp_attempts_open(a);
    return;
  }
  if (v == TV_WRONG_CREDENTIALS) {
    turnalloc_auth_failed(a, ans);
    return;
  }
  if (v == TV_ERROR && ans->code == 437) {
    turnalloc_lost(a, "the server no longer knows the allocation (437)");
    return;
  }
  double left = a->expires - now_s();
  if (left > 2) { /* try again before it runs out */
    schedule_refresh(a, left / 3);
    turntcp_attempts_open(a); /* with the nonce as it is */
    return;
  }
  turnalloc_lost(a, v == TV_TIMEOUT ? "no answer to Refresh" : "Refresh refused");
}

static void reallocate_fire(struct loop_timer *tm) {
  struct turn_alloc *a = tm->user;
  if (a->state == TURN_ALLOCATING && turntxn_start(a, TP_ALLOCATE, NULL, 0, 0) != 0)
    turnalloc_fail(a, 0, "cannot build the Allocate");
}

static void on_deallocate(struct turn_alloc *a) {
  if (!a->clearing) return;
  /* The stale allocation is deleted (or never answered); coturn frees the
   * 5-tuple about a second later. Then allocate anew, with the credentials
   * already known. */
  a->timer.user = a;
  loop_timer_start(a->t->loop, &a->timer, 2000, reallocate_fire);
}

void turnalloc_done(struct turn_txn *x, enum turn_verdict v, const struct turn_answer *ans,
                    const struct stun_msg *m) {
  struct turn_alloc *a = x->a;
  enum turn_purpose p = x->purpose;
  struct stun_addr peer = x->peer;
  uint16_t channel = x->channel;
  struct turn_answer none;
  memset(&none, 0, sizeof none);
  if (ans == NULL) ans = &none;
  turntxn_free(x);
  switch (p) {
    case TP_ALLOCATE: on_allocate(a, v, ans, m); break;
    case TP_REFRESH: on_refresh(a, v, ans, m); break;
    case TP_DEALLOCATE: on_deallocate(a); break;
    case TP_PERMISSION: turnperm_on_permission(a, v, ans, &peer); break;
    case TP_CHANNEL_BIND: turnperm_on_channel(a, v, ans, &peer, channel); break;
  }
}

/* ---- host name lookups ------------------------------------------------------ */

static void lookup_poll(struct loop_timer *tm) {
  struct turn *t = tm->user;
  bool pending = false;
  double now = now_s();
  for (int i = 0; i < t->n_allocs; i++) {
    struct turn_alloc *a = t->allocs[i];
    if (a->res == NULL) continue;
    const struct addrinfo *res = NULL;
    const char *err = NULL;
    enum resolve_status st = resolve_poll(a->res, &res, &err);
    if (st == RESOLVE_PENDING) {
      if (a->state == TURN_RESOLVING && now > a->resolve_deadline) {
        turnalloc_resolve_abandon(a);
        turnalloc_fail(a, 0, "the host name lookup timed out");
      } else {
        pending = true;
      }
      continue;
    }
    bool found = false;
    for (const struct addrinfo *ai = res; ai && !found; ai = ai->ai_next) {
      struct stun_addr sa;
      if (stun_addr_from_sockaddr(&sa, ai->ai_addr, ai->ai_addrlen) != 0) continue;
      if (a->transport == STUN_TRANSPORT_UDP && sa.family == STUN_FAMILY_IPV6 &&
          t->nat->af == AF_INET)
        continue;
      sa.port = a->port;
      a->server = sa;
      found = true;
    }
    resolve_free(a->res);
    a->res = NULL;
    if (a->state != TURN_RESOLVING) continue;
    if (!found) {
      turnalloc_fail(a, 0, "the host name does not resolve: %s",
                     st == RESOLVE_FAILED ? err : "no usable address");
      continue;
    }
    a->have_server = true;
    alloc_connect(a);
  }
  t->resolve_timer_on = pending;
  if (pending) loop_timer_start(t->loop, &t->resolve_timer, RESOLVE_POLL_MS, lookup_poll);
}

static void lookup_start(struct turn_alloc *a) {
  struct turn *t = a->t;
  a->state = TURN_RESOLVING;
  a->resolve_deadline = now_s() + RESOLVE_TIMEOUT;
  if (a->res == NULL) {
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = a->transport == STUN_TRANSPORT_TCP ? SOCK_STREAM : SOCK_DGRAM;
    hints.ai_flags = AI_NUMERICSERV;
    const char *err = NULL;
    a->res = resolve_start(a->host, a->port, &hints, &err);
    if (a->res == NULL) {
      if (err == resolve_no_memory) turnalloc_fail(a, 0, "%s", err);
      else turnalloc_fail(a, 0, "the host name lookup failed: %s", err);
      return;
    }
  }
  if (!t->resolve_timer_on) {
    t->resolve_timer_on = true;
    t->resolve_timer.user = t;
    loop_timer_start(t->loop, &t->resolve_timer, RESOLVE_POLL_MS, lookup_poll);
  }
}

/* A lookup a glibc thread is still working on is left to it (its memory
 * too) rather than freed under it: resolve_abandon waits up to 1 s first. */
void turnalloc_resolve_abandon(struct turn_alloc *a) {
  struct resolve *r = a->res;
  a->res = NULL;
  resolve_abandon(r, 1);
}
