/* nat_disc: see nat_disc.h. */
#include "nat_disc.h"

#include <string.h>

#include "nat_cand.h"

static void disc_finish(struct nat *nt) {
  struct nat_behaviour *b = &nt->beh;
  b->state = NAT_DISC_DONE;
  b->finished = log_monotonic();
  const char *map = nat_mapping_name(b->mapping), *filt = nat_filtering_name(b->filtering);
  char m1[64], m2[64], m3[64]; /* the mapped addresses of tests I-III, for diagnosis */
  log_at(LV_INFO, "nat_behaviour",
         "mapping=%s filtering=%s behind_nat=%s server=%s mapped1=%s mapped2=%s mapped3=%s",
         map ? map : "unknown", filt ? filt : "unknown", b->behind_nat ? "yes" : "no",
         nt->servers[b->server].url, stun_addr_str(&b->map1, m1, sizeof m1),
         b->map2.family ? stun_addr_str(&b->map2, m2, sizeof m2) : "-",
         b->map3.family ? stun_addr_str(&b->map3, m3, sizeof m3) : "-");
}

static void disc_mapping(struct nat *nt) {
  struct stun_addr to = nt->beh.other;
  to.port = nt->beh.primary.port; /* test II: the other IP, the primary port */
  if (natclient_txn_start(nt, NAT_TX_MAP2, nt->beh.server, &to, 0) != 0) disc_finish(nt);
}

void natdisc_start(struct nat *nt, int server) {
  struct nat_server *s = &nt->servers[server];
  struct nat_behaviour *b = &nt->beh;
  nt->disc_started = true;
  memset(b, 0, sizeof *b);
  b->state = NAT_DISC_RUNNING;
  b->server = server;
  b->primary = s->addr;
  b->other = s->other;
  b->map1 = s->mapped;
  b->behind_nat = !natcand_is_host_addr(nt, &s->mapped);
  /* Filtering first: the mapping test sends to the other address, which
   * would open the NAT's filter to it and make filtering look looser. */
  if (natclient_txn_start(nt, NAT_TX_FILT_BOTH, server, &s->addr,
                          STUN_CHANGE_IP | STUN_CHANGE_PORT) != 0)
    disc_mapping(nt);
}

void natdisc_step(struct nat *nt, enum nat_purpose p, const struct nat_outcome *o) {
  struct nat_behaviour *b = &nt->beh;
  switch (p) {
    case NAT_TX_FILT_BOTH:
      if (o->kind == NAT_OUT_OK) b->filtering = NAT_FILT_EIF;
      if (o->kind == NAT_OUT_TIMEOUT &&
          natclient_txn_start(nt, NAT_TX_FILT_PORT, b->server, &b->primary, STUN_CHANGE_PORT) == 0)
        return;
      disc_mapping(nt); /* an error (420: no CHANGE-REQUEST) leaves filtering unknown */
      return;
    case NAT_TX_FILT_PORT:
      if (o->kind == NAT_OUT_OK) b->filtering = NAT_FILT_ADF;
      if (o->kind == NAT_OUT_TIMEOUT) b->filtering = NAT_FILT_APDF;
      disc_mapping(nt);
      return;
    case NAT_TX_MAP2:
      if (o->kind != NAT_OUT_OK) break;
      b->map2 = o->mapped;
      if (stun_addr_equal(&b->map2, &b->map1)) {
        b->mapping = NAT_MAP_EIM;
        break;
      }
      if (natclient_txn_start(nt, NAT_TX_MAP3, b->server, &b->other, 0) == 0) return;
      break;
    case NAT_TX_MAP3:
      if (o->kind != NAT_OUT_OK) break;
      b->map3 = o->mapped;
      b->mapping = stun_addr_equal(&b->map3, &b->map2) ? NAT_MAP_ADM : NAT_MAP_APDM;
      break;
    default:
      return;
  }
  disc_finish(nt);
}
