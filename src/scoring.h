/* scoring: PeerScoring — what each peer's traffic says about it.
 *
 * Keeps, per node id, the metrics C measures (ping round trips, time
 * connected, disconnects and reconnects, blocks and transactions delivered
 * first / late / invalid, behaviour points from PeerBehavior events), turns
 * them into categories and a total through policies/scoring.lua, decays them
 * with decayPeriod/decayFactor, tells the caller when a peer's level changes
 * (with the policy's action), and persists them in the peer store so
 * reconnecting or restarting does not wipe a record.
 *
 * Lua runs only on scored events and the scoring timer, never per message.
 * Must not: close connections or ban by itself; it reports level changes and
 * actions to its owner (netmgr), which acts.
 */
#ifndef BT2C_SCORING_H
#define BT2C_SCORING_H

#include <stdbool.h>
#include <stdint.h>

#include "conf.h"
#include "policy.h"

struct peerstore;

enum behavior {
  BH_GOOD_BLOCK,
  BH_BAD_BLOCK,
  BH_GOOD_TRANSACTION,
  BH_BAD_TRANSACTION,
  BH_SPAM,
  BH_INVALID_MESSAGE,
  BH_TIMEOUT,
  BH_DISCONNECT,
  BH_RECONNECT,
  BH_RELAY_SUCCESS,
  BH_RELAY_FAILURE,
  BH_COUNT
};
const char *scoring_behavior_name(enum behavior b);
/* The behaviour for "GOOD_BLOCK" etc., or -1. */
int scoring_behavior_parse(const char *name);

enum delivery { DELIVERY_FIRST, DELIVERY_DUPLICATE, DELIVERY_INVALID };

struct score_event {
  double at;   /* unix seconds */
  float delta; /* behaviour points it added */
  float total; /* the total right after */
  uint8_t behavior;
};

#define SCORE_ID_LEN 40

struct score {
  char id[SCORE_ID_LEN + 1];
  struct score *next; /* hash chain */
  /* measured */
  double rtt_ms; /* smoothed; < 0 while unknown */
  double rtt_samples[8];
  int n_rtt, rtt_pos;
  double first_seen;    /* unix seconds */
  double connected_s;   /* closed sessions */
  double session_start; /* unix seconds; 0 when not connected */
  double disconnects, reconnects;
  double blocks_first, blocks_duplicate, blocks_invalid;
  double tx_useful, tx_duplicate, tx_invalid;
  double behavior;
  bool validator;
  double decayed_at; /* unix seconds the decaying values refer to */
  /* derived */
  double cat[SCORE_NCATEGORIES];
  double total;
  enum policy_level level;
  double ban_until; /* unix seconds; 0 = not banned */
  struct score_event *hist;
  int hist_n, hist_pos;
  uint32_t pending[BH_COUNT]; /* frequent good events, applied at the next tick */
  bool dirty;   /* needs a recompute */
  bool unsaved; /* differs from the peer store */
};

/* Called when a peer's level changes; `action` is what the policy wants. */
typedef void (*scoring_level_cb)(void *ud, struct score *s, enum policy_level from,
                                 enum policy_level to, const struct policy_threshold_action *action);

struct scoring {
  const struct conf *conf;
  struct policy_host *policy;
  struct peerstore *store;
  scoring_level_cb on_level;
  void *ud;
  struct score **table;
  unsigned cap, count;
  uint64_t events, recomputes; /* for benchmarks and metrics */
  double lua_seconds;          /* time spent in scoring hooks */
};

void scoring_init(struct scoring *sc, const struct conf *c, struct policy_host *policy,
                  struct peerstore *store, scoring_level_cb on_level, void *ud);
void scoring_free(struct scoring *sc);

/* The record for a node id (40 hex), loaded from the peer store or created;
 * NULL for a malformed id. */
struct score *scoring_get(struct scoring *sc, const char *id);
/* The record if the node is known (in memory or in the store), else NULL. */
struct score *scoring_find(struct scoring *sc, const char *id);

void scoring_connected(struct scoring *sc, const char *id);
/* clean: the connection ended normally (1000/1001), not by an error. */
void scoring_disconnected(struct scoring *sc, const char *id, bool clean);
void scoring_latency(struct scoring *sc, const char *id, double ms);
void scoring_block(struct scoring *sc, struct score *s, enum delivery d);
void scoring_transaction(struct scoring *sc, struct score *s, enum delivery d);
void scoring_set_validator(struct scoring *sc, const char *id, bool validator);
/* Records a PeerBehavior event at once (Lua runs now); returns the new
 * total. For misbehaviour and API calls: a threshold may be crossed. */
double scoring_record(struct scoring *sc, const char *id, enum behavior b);
/* Counts a frequent event (a block or transaction delivered first); its
 * points are applied at the next tick, one hook call per kind: Lua never
 * runs per message. */
void scoring_record_later(struct scoring *sc, struct score *s, enum behavior b);

/* Recomputes s now (decay, categories, total, level, action). */
void scoring_recompute(struct scoring *sc, struct score *s);
/* Recomputes every record marked dirty, and every connected one at least
 * every `refresh` seconds; saves changed records to the peer store. */
void scoring_tick(struct scoring *sc);
/* After a policy reload: every record in memory, at once. */
void scoring_rescore_all(struct scoring *sc);

/* Operator bans: the record's ban, saved in the store (the owner also drops
 * the connection and bans addresses). seconds <= 0 lifts a ban. */
void scoring_set_ban(struct scoring *sc, struct score *s, double seconds);
bool scoring_banned(const struct score *s, double now);

/* Up to n records with the highest totals (connected or not), best first. */
int scoring_top(struct scoring *sc, struct score **out, int n);

/* Contribution of each category to the total (10 x weight x category). */
void scoring_contributions(const struct scoring *sc, const struct score *s,
                           double out[SCORE_NCATEGORIES]);

double scoring_now(void); /* unix seconds */

#endif
