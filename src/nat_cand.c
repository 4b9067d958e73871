/* nat_cand: see nat_cand.h. Candidates live in nt->cand, host ones first. */
#include "nat_cand.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

uint32_t natcand_priority(enum nat_cand_type t, uint16_t local_pref) {
  uint32_t type_pref = t == NAT_CAND_HOST ? 126 : t == NAT_CAND_SRFLX ? 100 : 0;
  return (type_pref << 24) + ((uint32_t)local_pref << 8) + (256 - 1); /* component 1 */
}

/* Priorities from each candidate's rank within its type (local preference
 * 65535, 65534, ...), so they stay unique as candidates come and go. */
static void renumber(struct nat *nt) {
  int rank[3] = {0, 0, 0};
  for (int i = 0; i < nt->n_cand; i++) {
    struct nat_candidate *c = &nt->cand[i];
    c->priority = natcand_priority(c->type, (uint16_t)(65535 - rank[c->type]++));
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

void natcand_drop_stale_srflx(struct nat *nt) { drop_candidates(nt, is_stale_srflx); }

static bool is_relay(const struct nat *nt, const struct nat_candidate *c) {
  (void)nt;
  return c->type == NAT_CAND_RELAY;
}

void natcand_add(struct nat *nt, enum nat_cand_type t, const struct stun_addr *a,
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
void natcand_gather_host(struct nat *nt) {
  drop_candidates(nt, is_host);
  if (!nt->wildcard) {
    natcand_add(nt, NAT_CAND_HOST, &nt->local, -1, STUN_TRANSPORT_UDP);
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
    natcand_add(nt, NAT_CAND_HOST, &a, -1, STUN_TRANSPORT_UDP);
    n++;
  }
  freeifaddrs(ifs);
}

bool natcand_is_host_addr(const struct nat *nt, const struct stun_addr *a) {
  for (int i = 0; i < nt->n_cand; i++)
    if (nt->cand[i].type == NAT_CAND_HOST && stun_addr_equal(&nt->cand[i].addr, a)) return true;
  return false;
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

int natcand_external(const struct nat *nt, struct stun_addr *out, const char **method,
                     int *server) {
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

size_t natcand_list(const struct nat *nt, struct nat_candidate *out, size_t cap) {
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

void natcand_set_relays(struct nat *nt, const struct nat_candidate *relays, int n) {
  drop_candidates(nt, is_relay);
  for (int i = 0; i < n; i++)
    natcand_add(nt, NAT_CAND_RELAY, &relays[i].addr, relays[i].server, relays[i].transport);
}
