/* scoring: see scoring.h. */
#include "scoring.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "identity.h"
#include "json.h"
#include "log.h"
#include "peerstore.h"

/* Connected peers are recomputed at least this often (uptime moves). */
#define REFRESH_SECONDS 10.0
/* Records kept in memory; the rest live in the peer store. */
#define MAX_IN_MEMORY 8192
/* Behaviour points never exceed this: good behaviour cannot be banked to
 * pay for later misbehaviour. */
#define BEHAVIOR_CAP 10.0

static const char *const behavior_names[BH_COUNT] = {
    "GOOD_BLOCK", "BAD_BLOCK",  "GOOD_TRANSACTION", "BAD_TRANSACTION", "SPAM",         "INVALID_MESSAGE",
    "TIMEOUT",    "DISCONNECT", "RECONNECT",        "RELAY_SUCCESS",   "RELAY_FAILURE"};

const char *scoring_behavior_name(enum behavior b) {
  return (unsigned)b < BH_COUNT ? behavior_names[b] : "?";
}

int scoring_behavior_parse(const char *name) {
  for (int i = 0; i < BH_COUNT; i++)
    if (strcmp(name, behavior_names[i]) == 0) return i;
  return -1;
}

double scoring_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the table ----------------------------------------------------------- */

static unsigned id_hash(const char *id, unsigned cap) {
  unsigned h = 2166136261u; /* FNV-1a; ids are hashes already */
  for (int i = 0; i < 8 && id[i]; i++) h = (h ^ (unsigned char)id[i]) * 16777619u;
  return h & (cap - 1);
}

static void table_grow(struct scoring *sc) {
  unsigned cap = sc->cap ? sc->cap * 2 : 256;
  struct score **t = calloc(cap, sizeof *t);
  if (t == NULL) abort();
  for (unsigned i = 0; i < sc->cap; i++) {
    struct score *s = sc->table[i];
    while (s) {
      struct score *nx = s->next;
      unsigned h = id_hash(s->id, cap);
      s->next = t[h];
      t[h] = s;
      s = nx;
    }
  }
  free(sc->table);
  sc->table = t;
  sc->cap = cap;
}

static struct score *table_find(const struct scoring *sc, const char *id) {
  if (sc->cap == 0) return NULL;
  for (struct score *s = sc->table[id_hash(id, sc->cap)]; s; s = s->next)
    if (strcmp(s->id, id) == 0) return s;
  return NULL;
}

static void score_free(struct score *s) {
  free(s->hist);
  free(s);
}

static void save(struct scoring *sc, struct score *s);
static void recompute(struct scoring *sc, struct score *s, bool quiet);

/* Drops the record not connected and least recently decayed (persisted
 * first), to keep the table bounded. */
static void evict_one(struct scoring *sc) {
  struct score **victim = NULL;
  double oldest = HUGE_VAL;
  for (unsigned i = 0; i < sc->cap; i++)
    for (struct score **p = &sc->table[i]; *p; p = &(*p)->next)
      if ((*p)->session_start == 0 && (*p)->decayed_at < oldest) {
        oldest = (*p)->decayed_at;
        victim = p;
      }
  if (victim == NULL) return;
  struct score *s = *victim;
  if (s->unsaved) save(sc, s);
  *victim = s->next;
  score_free(s);
  sc->count--;
}

void scoring_init(struct scoring *sc, const struct conf *c, struct policy_host *policy,
                  struct peerstore *store, scoring_level_cb on_level, void *ud) {
  memset(sc, 0, sizeof *sc);
  sc->conf = c;
  sc->policy = policy;
  sc->store = store;
  sc->on_level = on_level;
  sc->ud = ud;
}

void scoring_free(struct scoring *sc) {
  for (unsigned i = 0; i < sc->cap; i++) {
    struct score *s = sc->table[i];
    while (s) {
      struct score *nx = s->next;
      if (s->dirty) recompute(sc, s, true); /* counted events are not lost */
      if (s->unsaved) save(sc, s);
      score_free(s);
      s = nx;
    }
  }
  free(sc->table);
  sc->table = NULL;
  sc->cap = sc->count = 0;
}

static bool id_ok(const char *id) {
  if (id == NULL || strlen(id) != SCORE_ID_LEN) return false;
  for (const char *c = id; *c; c++)
    if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f'))) return false;
  return true;
}

/* ---- persistence ----------------------------------------------------------- */

/* The state kept in the peer store's score_state (compact JSON). */
static void state_write(const struct score *s, char *out, size_t cap) {
  snprintf(out, cap,
           "{\"v\":1,\"rtt\":%.3f,\"fs\":%.3f,\"cs\":%.3f,\"dc\":%.4g,\"rc\":%.4g,\"bf\":%.4g,"
           "\"bd\":%.4g,\"bi\":%.4g,\"tu\":%.4g,\"td\":%.4g,\"ti\":%.4g,\"b\":%.6g,\"da\":%.3f}",
           s->rtt_ms, s->first_seen, s->connected_s, s->disconnects, s->reconnects,
           s->blocks_first, s->blocks_duplicate, s->blocks_invalid, s->tx_useful,
           s->tx_duplicate, s->tx_invalid, s->behavior, s->decayed_at);
}

static double num(const struct json_value *o, const char *k, double def) {
  const struct json_value *v = json_get_number(o, k);
  return v && isfinite(v->num) ? v->num : def;
}

static void state_read(struct score *s, const char *text) {
  struct json_doc doc;
  char err[64];
  if (text[0] == '\0' || json_parse(text, strlen(text), &doc, err, sizeof err) != 0) return;
  const struct json_value *o = doc.root;
  s->rtt_ms = num(o, "rtt", -1);
  s->first_seen = num(o, "fs", s->first_seen);
  s->connected_s = fmax(0, num(o, "cs", 0));
  s->disconnects = fmax(0, num(o, "dc", 0));
  s->reconnects = fmax(0, num(o, "rc", 0));
  s->blocks_first = fmax(0, num(o, "bf", 0));
  s->blocks_duplicate = fmax(0, num(o, "bd", 0));
  s->blocks_invalid = fmax(0, num(o, "bi", 0));
  s->tx_useful = fmax(0, num(o, "tu", 0));
  s->tx_duplicate = fmax(0, num(o, "td", 0));
  s->tx_invalid = fmax(0, num(o, "ti", 0));
  s->behavior = fmin(BEHAVIOR_CAP, num(o, "b", 0));
  s->decayed_at = num(o, "da", s->decayed_at);
  json_free(&doc);
}

static void save(struct scoring *sc, struct score *s) {
  s->unsaved = false;
  if (sc->store == NULL) return;
  struct peer_record r;
  if (peerstore_get(sc->store, s->id, &r) != 0) {
    memset(&r, 0, sizeof r);
    memcpy(r.node_id, s->id, sizeof r.node_id);
    r.first_seen = s->first_seen;
    snprintf(r.source, sizeof r.source, "scoring");
  }
  r.score = s->total;
  r.ban_until = s->ban_until;
  state_write(s, r.score_state, sizeof r.score_state);
  peerstore_put(sc->store, &r);
}

/* ---- records ------------------------------------------------------------- */

static struct score *load(struct scoring *sc, const char *id, bool create) {
  struct peer_record r;
  bool stored = sc->store && peerstore_get(sc->store, id, &r) == 0;
  if (!stored && !create) return NULL;
  if (sc->count >= MAX_IN_MEMORY) evict_one(sc);
  if (sc->cap == 0 || sc->count + 1 > sc->cap / 2) table_grow(sc);
  struct score *s = calloc(1, sizeof *s);
  if (s == NULL) abort();
  memcpy(s->id, id, SCORE_ID_LEN + 1);
  double now = scoring_now();
  s->rtt_ms = -1;
  s->first_seen = now;
  s->decayed_at = now;
  s->level = PL_NEUTRAL;
  if (stored) {
    if (r.first_seen > 0) s->first_seen = r.first_seen;
    s->ban_until = r.ban_until;
    s->total = r.score;
    state_read(s, r.score_state);
  }
  unsigned h = id_hash(id, sc->cap);
  s->next = sc->table[h];
  sc->table[h] = s;
  sc->count++;
  recompute(sc, s, true); /* the current policy decides the level; not a crossing */
  return s;
}

struct score *scoring_get(struct scoring *sc, const char *id) {
  if (!id_ok(id)) return NULL;
  struct score *s = table_find(sc, id);
  return s ? s : load(sc, id, true);
}

struct score *scoring_find(struct scoring *sc, const char *id) {
  if (!id_ok(id)) return NULL;
  struct score *s = table_find(sc, id);
  return s ? s : load(sc, id, false);
}

/* Brings the decaying values from decayed_at to now:
 * value *= decayFactor ^ (elapsed / decayPeriod). */
static void decay(const struct scoring *sc, struct score *s, double now) {
  double period = sc->conf->peerScoring.decayPeriod / 1000.0;
  double factor = sc->conf->peerScoring.decayFactor;
  double elapsed = now - s->decayed_at;
  if (elapsed <= 0 || period <= 0 || factor >= 1) {
    if (elapsed > 0) s->decayed_at = now;
    return;
  }
  double f = pow(factor, elapsed / period);
  double *v[] = {&s->disconnects, &s->reconnects, &s->blocks_first, &s->blocks_duplicate,
                 &s->blocks_invalid, &s->tx_useful, &s->tx_duplicate, &s->tx_invalid,
                 &s->behavior};
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) *v[i] *= f;
  s->decayed_at = now;
}

static enum policy_level level_of(const struct policy_scoring_params *p, double total) {
  if (total <= p->banned) return PL_BANNED;
  if (total < p->neutral) return PL_BELOW_NEUTRAL;
  if (total >= p->trusted) return PL_TRUSTED;
  return PL_NEUTRAL;
}

static void remember(const struct scoring *sc, struct score *s, enum behavior b, double delta) {
  int limit = sc->conf->peerScoring.historyLimit;
  if (limit <= 0) return;
  if (s->hist == NULL) {
    s->hist = calloc((size_t)limit, sizeof *s->hist);
    if (s->hist == NULL) return;
  }
  struct score_event *e = &s->hist[s->hist_pos];
  e->at = scoring_now();
  e->behavior = (uint8_t)b;
  e->delta = (float)delta;
  e->total = (float)s->total;
  s->hist_pos = (s->hist_pos + 1) % limit;
  if (s->hist_n < limit) s->hist_n++;
}

/* Adds n events of b: one behavior_delta call, its answer times n.
 * Returns the points added. */
static double apply(struct scoring *sc, struct score *s, enum behavior b, uint32_t n) {
  double t0 = log_monotonic();
  double delta = policy_scoring_behavior_delta(sc->policy, behavior_names[b], s->total);
  sc->lua_seconds += log_monotonic() - t0;
  s->behavior = fmin(BEHAVIOR_CAP, s->behavior + delta * n);
  return delta * n;
}

/* Computes categories, total and level; a change of level runs the policy's
 * action unless quiet (loading a record is not a crossing). */
static void recompute(struct scoring *sc, struct score *s, bool quiet) {
  double now = scoring_now();
  decay(sc, s, now);
  /* Counted events (deliveries) are applied by whichever recompute comes
   * first, so reading a score never holds them back. */
  double added[BH_COUNT];
  bool any = false;
  for (int b = 0; b < BH_COUNT; b++) {
    added[b] = 0;
    if (s->pending[b]) {
      added[b] = apply(sc, s, (enum behavior)b, s->pending[b]);
      s->pending[b] = 0;
      any = true;
    }
  }
  double observed = now - s->first_seen;
  double connected = s->connected_s + (s->session_start > 0 ? now - s->session_start : 0);
  struct policy_score_metrics m = {
      .rtt_ms = s->rtt_ms,
      .uptime = observed > 1 ? fmin(1, connected / observed) : (s->session_start > 0 ? 1 : 0),
      .connected_s = connected,
      .disconnects = s->disconnects,
      .reconnects = s->reconnects,
      .blocks_first = s->blocks_first,
      .blocks_duplicate = s->blocks_duplicate,
      .blocks_invalid = s->blocks_invalid,
      .tx_useful = s->tx_useful,
      .tx_duplicate = s->tx_duplicate,
      .tx_invalid = s->tx_invalid,
      .validator = s->validator,
      .behavior = s->behavior,
  };
  double t0 = log_monotonic();
  policy_scoring_categories(sc->policy, &m, s->cat);
  double total = policy_scoring_total(sc->policy, s->cat);
  sc->lua_seconds += log_monotonic() - t0;
  sc->recomputes++;
  if (total != s->total) s->unsaved = true;
  s->total = total;
  s->dirty = false;
  if (any) /* history holds the total right after, as the header says */
    for (int b = 0; b < BH_COUNT; b++)
      if (added[b] != 0) remember(sc, s, (enum behavior)b, added[b]);
  struct policy_scoring_params p;
  policy_scoring_params(sc->policy, &p);
  enum policy_level level = level_of(&p, total);
  if (level == PL_BANNED && s->level == PL_BANNED && s->ban_until > 0 && s->ban_until <= now) {
    /* The ban is over but the total has not recovered (decay is slow):
     * put the peer on probation halfway between banned and neutral, so it
     * is back below neutral, not banned again at once, and a little more
     * misbehaviour bans it again. */
    double w = p.weights[SCORE_BEHAVIOR];
    double lift = (p.banned + p.neutral) / 2 - total;
    s->behavior = w > 0 ? fmin(BEHAVIOR_CAP, s->behavior + lift / (10 * w)) : 0;
    s->ban_until = 0;
    s->level = PL_BELOW_NEUTRAL;
    log_at(LV_INFO, "ban_expired", "peer=%s total=%.2f probation=%.2f", s->id, total,
           total + lift);
    recompute(sc, s, true);
    return;
  }
  if (quiet) s->level = level;
  if (level == s->level) return;
  enum policy_level from = s->level;
  s->level = level;
  s->unsaved = true;
  struct policy_threshold_action a;
  policy_scoring_on_threshold(sc->policy, s->id, total, from, level, &a);
  log_at(level < from ? LV_WARN : LV_INFO, "score_level", "peer=%s from=%s to=%s total=%.2f ban_s=%.0f disconnect=%d",
         s->id, policy_level_name(from), policy_level_name(level), total, a.ban_seconds,
         a.disconnect);
  if (a.ban_seconds > 0) s->ban_until = fmax(s->ban_until, now + a.ban_seconds);
  if (sc->on_level) sc->on_level(sc->ud, s, from, level, &a);
}

void scoring_recompute(struct scoring *sc, struct score *s) { recompute(sc, s, false); }

static struct score *touch(struct scoring *sc, const char *id) {
  struct score *s = scoring_get(sc, id);
  if (s) {
    decay(sc, s, scoring_now());
    s->dirty = true;
    s->unsaved = true;
    sc->events++;
  }
  return s;
}

double scoring_record(struct scoring *sc, const char *id, enum behavior b) {
  struct score *s = touch(sc, id);
  if (s == NULL || (unsigned)b >= BH_COUNT) return NAN;
  double delta = apply(sc, s, b, 1);
  scoring_recompute(sc, s); /* at once: a threshold may have been crossed */
  remember(sc, s, b, delta);
  return s->total;
}

void scoring_record_later(struct scoring *sc, struct score *s, enum behavior b) {
  if (s == NULL || (unsigned)b >= BH_COUNT) return;
  if (s->pending[b] < UINT32_MAX) s->pending[b]++;
  s->dirty = true;
  s->unsaved = true;
  sc->events++;
}

void scoring_connected(struct scoring *sc, const char *id) {
  struct score *s = touch(sc, id);
  if (s == NULL) return;
  bool seen_before = s->connected_s > 0 || s->disconnects > 0;
  s->session_start = scoring_now();
  if (seen_before) {
    s->reconnects += 1;
    scoring_record(sc, id, BH_RECONNECT);
  }
}

void scoring_disconnected(struct scoring *sc, const char *id, bool clean) {
  struct score *s = touch(sc, id);
  if (s == NULL) return;
  if (s->session_start > 0) s->connected_s += scoring_now() - s->session_start;
  s->session_start = 0;
  s->disconnects += 1;
  if (!clean) scoring_record(sc, id, BH_DISCONNECT);
}

void scoring_latency(struct scoring *sc, const char *id, double ms) {
  struct score *s = touch(sc, id);
  if (s == NULL || !(ms >= 0) || !isfinite(ms)) return;
  s->rtt_samples[s->rtt_pos] = ms;
  s->rtt_pos = (s->rtt_pos + 1) % 8;
  if (s->n_rtt < 8) s->n_rtt++;
  s->rtt_ms = s->rtt_ms < 0 ? ms : 0.8 * s->rtt_ms + 0.2 * ms;
}

/* Deliveries come with every message: counting them must stay cheap (no
 * lookup by id, no Lua), so they take the record directly. */
void scoring_block(struct scoring *sc, struct score *s, enum delivery d) {
  if (s == NULL) return;
  switch (d) {
    case DELIVERY_FIRST: s->blocks_first += 1; scoring_record_later(sc, s, BH_GOOD_BLOCK); break;
    case DELIVERY_DUPLICATE: s->blocks_duplicate += 1; s->dirty = true; break;
    case DELIVERY_INVALID: s->blocks_invalid += 1; scoring_record(sc, s->id, BH_BAD_BLOCK); break;
  }
}

void scoring_transaction(struct scoring *sc, struct score *s, enum delivery d) {
  if (s == NULL) return;
  switch (d) {
    case DELIVERY_FIRST: s->tx_useful += 1; scoring_record_later(sc, s, BH_GOOD_TRANSACTION); break;
    case DELIVERY_DUPLICATE: s->tx_duplicate += 1; s->dirty = true; break;
    case DELIVERY_INVALID: s->tx_invalid += 1; scoring_record(sc, s->id, BH_BAD_TRANSACTION); break;
  }
}

void scoring_set_validator(struct scoring *sc, const char *id, bool validator) {
  struct score *s = touch(sc, id);
  if (s) s->validator = validator;
}

void scoring_tick(struct scoring *sc) {
  double now = scoring_now();
  for (unsigned i = 0; i < sc->cap; i++) {
    for (struct score *s = sc->table[i]; s; s = s->next) {
      bool stale = s->session_start > 0 && now - s->decayed_at >= REFRESH_SECONDS;
      if (s->dirty || stale) scoring_recompute(sc, s);
      if (s->unsaved) save(sc, s);
    }
  }
}

void scoring_rescore_all(struct scoring *sc) {
  for (unsigned i = 0; i < sc->cap; i++)
    for (struct score *s = sc->table[i]; s; s = s->next) scoring_recompute(sc, s);
}

void scoring_set_ban(struct scoring *sc, struct score *s, double seconds) {
  if (seconds > 0) {
    s->ban_until = scoring_now() + seconds;
  } else if (s->level == PL_BANNED) {
    s->ban_until = scoring_now() - 1e-3; /* an expired ban: recompute puts it on probation */
    recompute(sc, s, false);
  } else {
    s->ban_until = 0;
  }
  save(sc, s);
}

bool scoring_banned(const struct score *s, double now) { return s && s->ban_until > now; }

static int by_total(const void *a, const void *b) {
  const struct score *x = *(struct score *const *)a, *y = *(struct score *const *)b;
  if (x->total != y->total) return x->total < y->total ? 1 : -1;
  return strcmp(x->id, y->id);
}

int scoring_top(struct scoring *sc, struct score **out, int n) {
  if (n <= 0 || sc->count == 0) return 0;
  struct score **all = malloc(sc->count * sizeof *all);
  if (all == NULL) return 0;
  unsigned k = 0;
  for (unsigned i = 0; i < sc->cap; i++)
    for (struct score *s = sc->table[i]; s; s = s->next) all[k++] = s;
  qsort(all, k, sizeof *all, by_total);
  int m = (int)k < n ? (int)k : n;
  memcpy(out, all, (size_t)m * sizeof *out);
  free(all);
  return m;
}

void scoring_contributions(const struct scoring *sc, const struct score *s,
                           double out[SCORE_NCATEGORIES]) {
  struct policy_scoring_params p;
  policy_scoring_params(sc->policy, &p);
  for (int i = 0; i < SCORE_NCATEGORIES; i++) out[i] = 10 * p.weights[i] * s->cat[i];
}
