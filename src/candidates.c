/* candidates: see candidates.h. */
#include "candidates.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "json.h"
#include "peerstore.h"

const char *cand_type_name(int type) {
  return type == CAND_HOST ? "host" : type == CAND_SRFLX ? "srflx" : "relay";
}

int cand_type_parse(const char *s) {
  if (strcmp(s, "host") == 0) return CAND_HOST;
  if (strcmp(s, "srflx") == 0) return CAND_SRFLX;
  if (strcmp(s, "relay") == 0) return CAND_RELAY;
  return -1;
}

const char *cand_transport_name(int transport) {
  return transport == CAND_UDP ? "udp" : "tcp";
}

/* A numeric unicast address other nodes could try: not the wildcard, not
 * multicast. Loopback and private addresses are allowed (test networks and
 * LANs use them). Writes the canonical text. */
static bool ip_ok(const char *s, size_t len, char out[CAND_IP_LEN]) {
  char tmp[CAND_IP_LEN];
  if (len == 0 || len >= sizeof tmp || strlen(s) != len) return false;
  memcpy(tmp, s, len + 1);
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton(AF_INET, tmp, &a4) == 1) {
    uint32_t h = ntohl(a4.s_addr);
    if (h == 0 || (h >> 28) == 0xE || h == 0xFFFFFFFFu) return false;
    return inet_ntop(AF_INET, &a4, out, CAND_IP_LEN) != NULL;
  }
  if (inet_pton(AF_INET6, tmp, &a6) == 1) {
    if (IN6_IS_ADDR_UNSPECIFIED(&a6) || IN6_IS_ADDR_MULTICAST(&a6)) return false;
    if (IN6_IS_ADDR_V4MAPPED(&a6)) { /* the IPv4 form is the canonical one */
      memcpy(&a4, &a6.s6_addr[12], 4);
      return inet_ntop(AF_INET, &a4, out, CAND_IP_LEN) != NULL;
    }
    return inet_ntop(AF_INET6, &a6, out, CAND_IP_LEN) != NULL;
  }
  return false;
}

static bool parse_one(const struct json_value *e, struct cand *c) {
  if (e == NULL || e->type != JSON_OBJECT) return false;
  const struct json_value *type = json_get_string(e, "type");
  const struct json_value *addr = json_get_string(e, "address");
  const struct json_value *tr = json_get(e, "transport");
  long long port, prio;
  if (type == NULL || addr == NULL || !json_get_int(e, "port", 1, 65535, &port) ||
      !json_get_int(e, "priority", 0, 0xFFFFFFFFLL, &prio))
    return false;
  int t = cand_type_parse(type->str);
  if (t < 0 || !ip_ok(addr->str, addr->len, c->ip)) return false;
  c->transport = CAND_TCP; /* absent: a WebSocket listener */
  if (tr) {
    if (tr->type != JSON_STRING) return false;
    if (strcmp(tr->str, "udp") == 0) c->transport = CAND_UDP;
    else if (strcmp(tr->str, "tcp") != 0) return false;
  }
  c->type = (uint8_t)t;
  c->port = (uint16_t)port;
  c->priority = (uint32_t)prio;
  return true;
}

int cand_parse_json(const struct json_value *v, struct cand *out, int cap, int *bad) {
  *bad = 0;
  if (v == NULL || v->type != JSON_ARRAY || v->len > 4 * CAND_MAX) return -1;
  int n = 0;
  for (size_t i = 0; i < v->len; i++) {
    struct cand c;
    memset(&c, 0, sizeof c);
    if (!parse_one(v->items[i], &c)) {
      (*bad)++;
      continue;
    }
    bool dup = false;
    for (int k = 0; k < n && !dup; k++)
      dup = out[k].port == c.port && out[k].transport == c.transport &&
            strcmp(out[k].ip, c.ip) == 0;
    if (!dup && n < cap) out[n++] = c;
  }
  return n;
}

void cand_write_json(struct buf *b, const struct cand *c, int n) {
  buf_append(b, "[", 1);
  for (int i = 0; i < n; i++)
    buf_appendf(b, "%s{\"type\":\"%s\",\"address\":\"%s\",\"port\":%u,\"priority\":%lu,"
                   "\"transport\":\"%s\"}",
                i ? "," : "", cand_type_name(c[i].type), c[i].ip, (unsigned)c[i].port,
                (unsigned long)c[i].priority, cand_transport_name(c[i].transport));
  buf_append(b, "]", 1);
}

/* ---- order ---------------------------------------------------------------- */

void cand_pref_set(struct cand_pref *p, const char *preferred_method,
                   const char *candidate_preference) {
  const char *cp = candidate_preference ? candidate_preference : "srflx";
  const char *pm = preferred_method ? preferred_method : "stun";
  p->first = strcmp(cp, "priority") == 0 ? -1 : cand_type_parse(cp);
  p->method = strcmp(pm, "host") == 0 ? CAND_HOST : strcmp(pm, "turn") == 0 ? CAND_RELAY
                                                                              : CAND_SRFLX;
}

static int group(const struct cand *c, const struct cand_pref *p) {
  if (p->first >= 0 && c->type == p->first) return 0;
  if (c->type == p->method && p->method == CAND_RELAY) return 1;
  return 2;
}

void cand_sort(struct cand *c, int n, const struct cand_pref *p) {
  for (int i = 1; i < n; i++) { /* insertion sort: stable, a handful of entries */
    struct cand x = c[i];
    int gx = group(&x, p), j = i;
    for (; j > 0; j--) {
      int gp = group(&c[j - 1], p);
      if (gp < gx || (gp == gx && c[j - 1].priority >= x.priority)) break;
      c[j] = c[j - 1];
    }
    c[j] = x;
  }
}

int cand_url(const struct cand *c, bool tls, char *out, size_t cap) {
  if (c->transport != CAND_TCP) return -1;
  bool v6 = strchr(c->ip, ':') != NULL;
  int n = snprintf(out, cap, "%s://%s%s%s:%u", tls ? "wss" : "ws", v6 ? "[" : "", c->ip,
                   v6 ? "]" : "", (unsigned)c->port);
  return n > 0 && (size_t)n < cap ? 0 : -1;
}

int cand_dial_urls(const struct cand *c, int n, const char *entry_url, bool tls,
                   const struct cand_pref *p, char urls[][CAND_URL_LEN], int cap) {
  struct cand sorted[4 * CAND_MAX + 1];
  if (n > 4 * CAND_MAX) n = 4 * CAND_MAX;
  memcpy(sorted, c, (size_t)n * sizeof *c);
  /* The entry (what another node saw) ranks as the last srflx: local
   * preference 0 (RFC 8445 §5.1.2.1); port 0 marks it. When it is also a
   * candidate, the first one counts. */
  if (entry_url && entry_url[0] && strlen(entry_url) < CAND_URL_LEN) {
    memset(&sorted[n], 0, sizeof sorted[n]);
    sorted[n].type = CAND_SRFLX;
    sorted[n].transport = CAND_TCP;
    sorted[n].priority = (100u << 24) + 255;
    n++;
  }
  cand_sort(sorted, n, p);
  int k = 0;
  for (int i = 0; i < n && k < cap; i++) {
    char url[CAND_URL_LEN];
    if (sorted[i].port == 0) snprintf(url, sizeof url, "%s", entry_url);
    else if (cand_url(&sorted[i], tls, url, sizeof url) != 0) continue;
    bool dup = false;
    for (int d = 0; d < k && !dup; d++) dup = strcmp(urls[d], url) == 0;
    if (!dup) memcpy(urls[k++], url, CAND_URL_LEN);
  }
  return k;
}

bool cand_merge_urls(struct peer_record *r, char urls[][CAND_URL_LEN], int n) {
  char out[PEERSTORE_MAX_ADDRS][PEERSTORE_ADDR_LEN];
  int k = 0;
  memset(out, 0, sizeof out);
#define PUSH(s)                                                              \
  do {                                                                       \
    bool dup_ = false;                                                       \
    for (int d_ = 0; d_ < k && !dup_; d_++) dup_ = strcmp(out[d_], (s)) == 0; \
    if (!dup_ && k < PEERSTORE_MAX_ADDRS && strlen(s) < PEERSTORE_ADDR_LEN)  \
      snprintf(out[k++], PEERSTORE_ADDR_LEN, "%s", (s));                     \
  } while (0)
  if (r->n_addrs > 0 && r->last_connected > 0 && r->failures == 0) PUSH(r->addrs[0]);
  for (int i = 0; i < n; i++) PUSH(urls[i]);
  for (int i = 0; i < r->n_addrs; i++) PUSH(r->addrs[i]);
#undef PUSH
  bool changed = k != r->n_addrs;
  for (int i = 0; i < k && !changed; i++) changed = strcmp(out[i], r->addrs[i]) != 0;
  if (changed) {
    memcpy(r->addrs, out, sizeof out);
    r->n_addrs = k;
  }
  return changed;
}
