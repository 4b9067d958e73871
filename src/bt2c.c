/* bt2c: see bt2c.h. The integration object: netmgr's consumers of the
 * application messages, the built-in components, and the actions the
 * console and other components call.
 *
 * Blame. A relayed message's sender may not be its author, and relay.c
 * forwards a message before (whatever) this layer decides about it, so an
 * honest neighbour may hand over a forged vote it could not have known was
 * forged. A bad message therefore penalises its sender only when the sender
 * is provably its author (hops 0, origin = sender) or lied about the route
 * (the last node of the path must be the sender); otherwise it is rejected
 * and logged without penalty. One-hop messages (requests, responses) are
 * always the sender's own.
 *
 * Listeners. A consumer's -1 keeps a message from the Lua network.on
 * listeners. Consensus messages that fail authentication get it: a listener
 * could take them for a validator's. An invalid announced block or
 * transaction is refused by the chain (not stored, not in the mempool, its
 * author penalised) but still reaches the listeners, which see the
 * network's traffic as it is (docs/INTEGRATION.md). */
#include "bt2c.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain.h"
#include "chain_jcs.h"
#include "chain_store.h"
#include "conf.h"
#include "consensus.h"
#include "log.h"
#include "netmgr.h"
#include "sync.h"

#define TICK_MS 100
#define N_METRICS 32

struct bt2c {
  struct netmgr *nm;
  const struct conf *conf;
  struct loop *loop;
  struct chain *chain;
  struct consensus_vset vset;
  struct bt2c_blockchain_store store, builtin_store;
  struct bt2c_consensus_engine engine;
  struct bt2c_validator_manager vm, builtin_vm;
  struct bt2c_monitoring_service mon;
  struct sync sync;
  struct loop_timer timer;
  double next_metrics;
  size_t max_block;
  struct log_limit reject_limit, store_limit;
  struct {
    uint64_t blocks_in, blocks_invalid, blocks_added, blocks_made, tx_in, tx_invalid, tx_added,
        votes_ok, votes_rejected, votes_unsigned, proposals_ok, proposals_rejected, sets_adopted,
        sets_rejected, misrouted;
  } st;
};

/* ---- small helpers ------------------------------------------------------------- */

static void emit(struct bt2c *x, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void emit(struct bt2c *x, const char *name, const char *fmt, ...) {
  if (x->mon.event == NULL) return;
  char json[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(json, sizeof json, fmt, ap);
  va_end(ap);
  x->mon.event(x->mon.ctx, name, json);
}

static void sync_event(void *ud, const char *name, const char *json) {
  struct bt2c *x = ud;
  if (x->mon.event) x->mon.event(x->mon.ctx, name, json);
}

static bool authored_by(const struct envelope *e, const struct peer *p) {
  return e->hops == 0 && memcmp(e->origin, p->id, ENV_NODE_ID_LEN) == 0;
}

/* Every forwarder appends its own id: a message's route ends at its sender. */
static bool route_ok(const struct envelope *e, const struct peer *p) {
  if (e->hops == 0) return memcmp(e->origin, p->id, ENV_NODE_ID_LEN) == 0;
  return e->path_len > 0 &&
         memcmp(e->path + (size_t)(e->path_len - 1) * ENV_NODE_ID_LEN, p->id, ENV_NODE_ID_LEN) == 0;
}

static int misrouted(struct bt2c *x, struct peer *p, const struct envelope *e) {
  x->st.misrouted++;
  char label[64];
  log_limited(&x->reject_limit, LV_WARN, "message_rejected", "peer=%s type=%s why=%s",
              peer_label(p, label, sizeof label), env_type_name(e->type),
              "its route does not end at its sender (origin or path forged)");
  netmgr_penalise(x->nm, p, BH_INVALID_MESSAGE);
  return -1;
}

/* Rejects a bad message: logged, and its sender penalised when it is the
 * author. kind: 'b' block, 't' transaction, else another message. */
static int reject(struct bt2c *x, struct peer *p, const struct envelope *e, char kind,
                  const char *verdict, const char *why, bool provable) {
  char origin[BT2C_ID_HEX + 1], label[64];
  hex_encode(e->origin, ENV_NODE_ID_LEN, origin);
  bool blamed = provable && authored_by(e, p);
  log_limited(&x->reject_limit, LV_WARN,
              e->type == MSG_CONSENSUS_VOTE || e->type == MSG_CONSENSUS_PROPOSAL ||
                      e->type == MSG_VALIDATOR_SET
                  ? "consensus_rejected"
                  : "message_rejected",
              "peer=%s type=%s origin=%s hops=%d verdict=%s penalised=%s why=%s",
              peer_label(p, label, sizeof label), env_type_name(e->type), origin, e->hops, verdict,
              blamed ? "yes" : "no", why);
  emit(x, e->type >= MSG_CONSENSUS_VOTE ? "consensus_rejected" : "message_rejected",
       "{\"type\":\"%s\",\"peer\":\"%s\",\"origin\":\"%s\",\"verdict\":\"%s\"}",
       env_type_name(e->type), p->id_hex, origin, verdict);
  if (!blamed) return -1;
  if (kind == 'b') scoring_block(&x->nm->scoring, p->score, DELIVERY_INVALID);
  else if (kind == 't') scoring_transaction(&x->nm->scoring, p->score, DELIVERY_INVALID);
  else netmgr_penalise(x->nm, p, BH_INVALID_MESSAGE);
  return -1;
}

/* ---- blocks and transactions ------------------------------------------------------ */

/* Stores b on the tip: 0 stored, 1 does not extend the tip (or the store
 * failed), -1 refused by the store's rules. */
static int apply_block(struct bt2c *x, const struct bt2c_block *b, const char *from) {
  const struct bt2c_blockchain_store *st = &x->store;
  char tip[BT2C_HASH_HEX + 1], err[256];
  st->tip(st->ctx, tip);
  if (b->height != st->height(st->ctx) + 1 || strcmp(b->previous_hash, tip) != 0) return 1;
  if (st->validate_block && st->validate_block(st->ctx, b, err, sizeof err) != 0) {
    log_limited(&x->store_limit, LV_WARN, "block_refused", "height=%lld hash=%s from=%s why=%s",
                b->height, b->hash, from ? from : "self", err);
    return -1;
  }
  if (st->put_block(st->ctx, b, err, sizeof err) != 0) {
    log_limited(&x->store_limit, LV_ERROR, "block_not_stored", "height=%lld hash=%s err=%s",
                b->height, b->hash, err);
    return 1;
  }
  x->st.blocks_added++;
  log_at(LV_DEBUG, "block_added", "height=%lld hash=%s txs=%zu from=%s", b->height, b->hash,
         b->n_transactions, from ? from : "self");
  if (x->engine.on_block) x->engine.on_block(x->engine.ctx, b, from);
  emit(x, "block_added", "{\"height\":%lld,\"hash\":\"%s\",\"from\":\"%s\"}", b->height, b->hash,
       from ? from : "self");
  return 0;
}

static int sync_apply(void *ud, const struct bt2c_block *b, const char *from) {
  return apply_block(ud, b, from);
}

/* A checked transaction into the mempool: 0 new, 1 known, -1 refused by the
 * store's rules, -2 not stored (mempool full). */
static int add_tx(struct bt2c *x, const struct bt2c_transaction *t, const char *from) {
  const struct bt2c_blockchain_store *st = &x->store;
  char err[256];
  if (st->validate_transaction && st->validate_transaction(st->ctx, t, err, sizeof err) != 0) {
    log_limited(&x->store_limit, LV_INFO, "transaction_refused", "hash=%s from=%s why=%s", t->hash,
                from ? from : "self", err);
    return -1;
  }
  int rc = st->put_transaction(st->ctx, t, err, sizeof err);
  if (rc < 0) {
    log_limited(&x->store_limit, LV_WARN, "transaction_not_stored", "hash=%s err=%s", t->hash, err);
    return -2;
  }
  if (rc == 0) x->st.tx_added++;
  return rc;
}

static int sync_add_tx(void *ud, const struct bt2c_transaction *t, const char *from) {
  return add_tx(ud, t, from);
}

/* A block announced by p: checked, then stored, kept for later, or ignored. */
static void on_block_announced(struct bt2c *x, struct peer *p, const struct envelope *e,
                               const struct json_value *v) {
  struct bt2c_block b;
  char err[300];
  x->st.blocks_in++;
  if (chain_block_check(v, x->max_block, &b, err, sizeof err) != 0) {
    x->st.blocks_invalid++;
    reject(x, p, e, 'b', "invalid_block", err, true);
    return;
  }
  sync_saw_height(&x->sync, p->id_hex, b.height);
  long long tip = x->store.height(x->store.ctx);
  if (b.height == tip + 1) {
    int rc = apply_block(x, &b, p->id_hex);
    if (rc < 0)
      reject(x, p, e, 'b', "refused_by_store", "the store's rules refuse the block", true);
    else if (rc == 0) sync_drain(&x->sync);
    /* rc 1: another block at our next height, a fork: the engine's concern */
  } else if (b.height > tip + 1) {
    sync_on_future_block(&x->sync, &b, p->id_hex); /* takes b; the sync fills the gap */
  }
  chain_block_free(&b);
}

/* Whether a block or transaction payload may be a chain one (it has
 * requestId or hash): one pass without a tree, so that the many that are
 * not (relayed application data) skip json_parse (~1-3 us per KiB). */
static bool maybe_chain(const struct envelope *e) {
  static const char *const keys[] = {"requestId", "hash"};
  long k = json_object_keys((const char *)e->payload, e->payload_len, keys, 2);
  return k > 0;
}

static int c_block(void *ud, struct peer *p, const struct envelope *e) {
  struct bt2c *x = ud;
  struct json_doc doc;
  char err[96];
  if (!maybe_chain(e)) return 0; /* not a chain block: only Lua listeners see it */
  if (json_parse((const char *)e->payload, e->payload_len, &doc, err, sizeof err) != 0) return 0;
  int rc = 0;
  if (json_get(doc.root, "requestId")) {
    rc = e->flags
             ? reject(x, p, e, 'b', "relayed_response", "a block response is never relayed", true)
             : sync_on_blocks(&x->sync, p, doc.root);
  } else if (json_get(doc.root, "hash")) {
    if (route_ok(e, p)) on_block_announced(x, p, e, doc.root);
    else misrouted(x, p, e);
  }
  /* anything else is not a chain block: only Lua listeners see it */
  json_free(&doc);
  return rc;
}

static int c_transaction(void *ud, struct peer *p, const struct envelope *e) {
  struct bt2c *x = ud;
  struct json_doc doc;
  char err[300];
  if (!maybe_chain(e)) return 0; /* not a chain transaction: only Lua listeners see it */
  if (json_parse((const char *)e->payload, e->payload_len, &doc, err, sizeof err) != 0) return 0;
  int rc = 0;
  if (json_get(doc.root, "requestId")) {
    rc = e->flags ? reject(x, p, e, 't', "relayed_response",
                           "a transaction response is never relayed", true)
                  : sync_on_transactions(&x->sync, p, doc.root);
  } else if (json_get(doc.root, "hash")) {
    struct buf canon = {0};
    struct bt2c_transaction t;
    x->st.tx_in++;
    if (!route_ok(e, p)) {
      misrouted(x, p, e);
    } else if (chain_tx_check(doc.root, &canon, t.hash, err, sizeof err) != 0) {
      x->st.tx_invalid++;
      reject(x, p, e, 't', "invalid_transaction", err, true);
    } else {
      t.json = canon.data;
      t.json_len = canon.len;
      if (add_tx(x, &t, p->id_hex) == -1)
        reject(x, p, e, 't', "refused_by_store", "the store's rules refuse the transaction", true);
    }
    buf_free(&canon);
  }
  json_free(&doc);
  return rc;
}

static int c_block_request(void *ud, struct peer *p, const struct envelope *e) {
  struct bt2c *x = ud;
  struct json_doc doc;
  char err[96];
  if (json_parse((const char *)e->payload, e->payload_len, &doc, err, sizeof err) != 0) return 0;
  int rc = sync_serve_blocks(&x->sync, p, doc.root);
  json_free(&doc);
  if (rc < 0)
    return reject(x, p, e, 'o', "malformed",
                  "a block_request needs requestId and fromHeight <= toHeight, or hashes", true);
  return 0;
}

static int c_tx_request(void *ud, struct peer *p, const struct envelope *e) {
  struct bt2c *x = ud;
  struct json_doc doc;
  char err[96];
  if (json_parse((const char *)e->payload, e->payload_len, &doc, err, sizeof err) != 0) return 0;
  int rc = sync_serve_transactions(&x->sync, p, doc.root);
  json_free(&doc);
  if (rc < 0)
    return reject(x, p, e, 'o', "malformed",
                  "a transaction_request needs requestId and hashes, or mempool = true", true);
  return 0;
}

/* ---- consensus ------------------------------------------------------------------- */

/* Provable: the message itself is wrong whatever our view of the set. */
static bool provable(enum consensus_verdict v) { return v != CV_NO_QUORUM && v != CV_STALE; }

static int c_vote(void *ud, struct peer *p, const struct envelope *e) {
  struct bt2c *x = ud;
  struct json_doc doc;
  char err[256];
  if (json_parse((const char *)e->payload, e->payload_len, &doc, err, sizeof err) != 0) return 0;
  struct bt2c_vote v;
  enum consensus_verdict r =
      consensus_check_vote(doc.root, x->conf->networkId, &x->vm, &v, err, sizeof err);
  json_free(&doc);
  if (r == CV_UNSIGNED) { /* not a bt2c vote: Lua listeners may still look at it */
    x->st.votes_unsigned++;
    return 0;
  }
  if (!route_ok(e, p)) return misrouted(x, p, e);
  if (r != CV_OK) {
    x->st.votes_rejected++;
    return reject(x, p, e, 'o', consensus_verdict_name(r), err, provable(r));
  }
  x->st.votes_ok++;
  v.json = (const char *)e->payload;
  v.json_len = e->payload_len;
  if (x->engine.on_vote) x->engine.on_vote(x->engine.ctx, &v, p->id_hex);
  return 0;
}

static int c_proposal(void *ud, struct peer *p, const struct envelope *e) {
  struct bt2c *x = ud;
  struct json_doc doc;
  char err[300];
  if (json_parse((const char *)e->payload, e->payload_len, &doc, err, sizeof err) != 0) return 0;
  struct bt2c_proposal pr;
  struct bt2c_block b;
  enum consensus_verdict r = consensus_check_proposal(doc.root, x->conf->networkId, &x->vm,
                                                      x->max_block, &pr, &b, err, sizeof err);
  json_free(&doc);
  if (r == CV_UNSIGNED) return 0;
  if (!route_ok(e, p)) {
    if (r == CV_OK) chain_block_free(&b);
    return misrouted(x, p, e);
  }
  if (r != CV_OK) {
    x->st.proposals_rejected++;
    return reject(x, p, e, 'o', consensus_verdict_name(r), err, provable(r));
  }
  x->st.proposals_ok++;
  pr.json = (const char *)e->payload;
  pr.json_len = e->payload_len;
  if (x->engine.on_proposal) x->engine.on_proposal(x->engine.ctx, &pr, p->id_hex);
  chain_block_free(&b);
  return 0;
}

/* Adopts a checked set through the manager; 0 or -1. */
static int adopt_set(struct bt2c *x, long long epoch, const struct bt2c_validator *v, int n,
                     int signers, const char *from) {
  if (x->vm.adopt == NULL || x->vm.adopt(x->vm.ctx, epoch, v, n) != 0) {
    log_at(LV_WARN, "validator_set_refused", "epoch=%lld from=%s why=%s", epoch, from,
           "the validator manager did not adopt it");
    return -1;
  }
  x->st.sets_adopted++;
  log_at(LV_INFO, "validator_set_adopted", "epoch=%lld validators=%d signers=%d from=%s", epoch, n,
         signers, from);
  emit(x, "validator_set_adopted", "{\"epoch\":%lld,\"validators\":%d,\"from\":\"%s\"}", epoch, n,
       from);
  netmgr_validators_changed(x->nm);
  return 0;
}

static int c_validator_set(void *ud, struct peer *p, const struct envelope *e) {
  struct bt2c *x = ud;
  struct json_doc doc;
  char err[256];
  if (json_parse((const char *)e->payload, e->payload_len, &doc, err, sizeof err) != 0) return 0;
  long long epoch;
  struct bt2c_validator *set = NULL;
  int n = 0, signers = 0;
  enum consensus_verdict r = consensus_check_set(doc.root, x->conf->networkId, &x->vm, &epoch, &set,
                                                 &n, &signers, err, sizeof err);
  json_free(&doc);
  if (r == CV_UNSIGNED || r == CV_STALE) { /* not ours, or an echo of what we have */
    log_at(LV_DEBUG, "validator_set_ignored", "peer=%s why=%s", p->id_hex, err);
    return 0;
  }
  if (!route_ok(e, p)) {
    free(set);
    return misrouted(x, p, e);
  }
  if (r != CV_OK) {
    x->st.sets_rejected++;
    return reject(x, p, e, 'o', consensus_verdict_name(r), err, provable(r));
  }
  adopt_set(x, epoch, set, n, signers, p->id_hex);
  free(set);
  return 0;
}

/* ---- netmgr hooks ----------------------------------------------------------------- */

static long long h_height(void *ud) {
  struct bt2c *x = ud;
  return x->store.height(x->store.ctx);
}

static bool h_is_validator(void *ud, const char *id) {
  struct bt2c *x = ud;
  return x->vm.is_validator && x->vm.is_validator(x->vm.ctx, id);
}

static void h_peer_ready(void *ud, struct peer *p) {
  struct bt2c *x = ud;
  sync_peer_ready(&x->sync, p);
}

static void on_tick(struct loop_timer *t) {
  struct bt2c *x = t->user;
  double now = log_monotonic();
  sync_tick(&x->sync, now);
  if (x->mon.metrics && now >= x->next_metrics) {
    x->next_metrics = now + 1.0;
    struct bt2c_metric m[N_METRICS];
    int n = bt2c_metrics(x, m, N_METRICS);
    x->mon.metrics(x->mon.ctx, m, n);
  }
  loop_timer_start(x->loop, &x->timer, TICK_MS, on_tick);
}

/* ---- lifecycle and components ------------------------------------------------------ */

struct bt2c *bt2c_start(struct netmgr *nm, const struct conf *c, struct loop *l) {
  struct bt2c *x = calloc(1, sizeof *x);
  if (x == NULL) return NULL;
  x->nm = nm;
  x->conf = c;
  x->loop = l;
  char path[4096], err[512];
  snprintf(path, sizeof path, "%s/chain.db", c->dataDir);
  x->chain = chainstore_open(path, err, sizeof err);
  if (x->chain == NULL) {
    log_at(LV_ERROR, "start_failed", "err=%s", err);
    free(x);
    return NULL;
  }
  chainstore_iface(x->chain, &x->builtin_store);
  x->store = x->builtin_store;
  consensus_vset_init(&x->vset, c, x->chain);
  consensus_vset_iface(&x->vset, &x->builtin_vm);
  x->vm = x->builtin_vm;
  size_t max_payload = c->maxMessageSize > 8192 ? c->maxMessageSize - ENV_HEADER_LEN - 64 : 8192;
  x->max_block = max_payload - 1024;
  if (sync_init(&x->sync, nm, &x->store, x->max_block, max_payload) != 0) {
    log_at(LV_ERROR, "start_failed", "err=%s", "out of memory for the sync window");
    bt2c_stop(x);
    return NULL;
  }
  x->sync.apply = sync_apply;
  x->sync.add_tx = sync_add_tx;
  x->sync.event = sync_event;
  x->sync.ud = x;
  x->reject_limit.burst = 20;

  struct netmgr_hooks *h = &nm->hooks; /* only our slots: others have theirs */
  h->ud = x;
  h->consume[MSG_BLOCK] = c_block;
  h->consume[MSG_TRANSACTION] = c_transaction;
  h->consume[MSG_BLOCK_REQUEST] = c_block_request;
  h->consume[MSG_TRANSACTION_REQUEST] = c_tx_request;
  h->consume[MSG_CONSENSUS_VOTE] = c_vote;
  h->consume[MSG_CONSENSUS_PROPOSAL] = c_proposal;
  h->consume[MSG_VALIDATOR_SET] = c_validator_set;
  h->height = h_height;
  h->is_validator = h_is_validator;
  h->peer_ready = h_peer_ready;
  netmgr_validators_changed(nm);

  x->timer.user = x;
  loop_timer_start(l, &x->timer, TICK_MS, on_tick);
  log_at(LV_INFO, "chain_opened",
         "path=%s height=%lld tip=%s mempool=%lld validators=%d epoch=%lld "
         "validator_source=%s",
         path, chainstore_height(x->chain), chainstore_tip_hash(x->chain),
         x->store.pending_count(x->store.ctx), x->vset.n, x->vset.epoch, x->vset.source);
  return x;
}

void bt2c_stop(struct bt2c *x) {
  if (x == NULL) return;
  loop_timer_stop(&x->timer);
  struct netmgr_hooks *h = &x->nm->hooks;
  if (h->ud == x) {
    static const int ours[] = {MSG_BLOCK, MSG_TRANSACTION, MSG_BLOCK_REQUEST,
                               MSG_TRANSACTION_REQUEST, MSG_CONSENSUS_VOTE,
                               MSG_CONSENSUS_PROPOSAL, MSG_VALIDATOR_SET};
    for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++) h->consume[ours[i]] = NULL;
    h->height = NULL;
    h->is_validator = NULL;
    h->peer_ready = NULL;
    h->ud = NULL;
  }
  sync_free(&x->sync);
  consensus_vset_free(&x->vset);
  chainstore_close(x->chain);
  free(x);
}

void bt2c_set_blockchain_store(struct bt2c *x, const struct bt2c_blockchain_store *s) {
  x->store = s ? *s : x->builtin_store;
}

void bt2c_set_consensus_engine(struct bt2c *x, const struct bt2c_consensus_engine *e) {
  if (e) x->engine = *e;
  else memset(&x->engine, 0, sizeof x->engine);
}

void bt2c_set_validator_manager(struct bt2c *x, const struct bt2c_validator_manager *v) {
  x->vm = v ? *v : x->builtin_vm;
  netmgr_validators_changed(x->nm);
}

void bt2c_set_monitoring_service(struct bt2c *x, const struct bt2c_monitoring_service *m) {
  if (m) x->mon = *m;
  else memset(&x->mon, 0, sizeof x->mon);
}

const struct bt2c_blockchain_store *bt2c_store(const struct bt2c *x) { return &x->store; }
const struct bt2c_validator_manager *bt2c_validators(const struct bt2c *x) { return &x->vm; }

void bt2c_test_corrupt_responses(struct bt2c *x, bool on) {
  x->sync.corrupt = on;
  log_at(LV_WARN, "fault_injection", "corrupt_block_responses=%s", on ? "on" : "off");
}

void bt2c_test_silent_responses(struct bt2c *x, bool on) {
  x->sync.silent = on;
  log_at(LV_WARN, "fault_injection", "silent_block_responses=%s", on ? "on" : "off");
}

/* ---- actions ---------------------------------------------------------------------- */

struct collect {
  struct bt2c_transaction *t;
  size_t n, cap, bytes, budget;
};

static int collect_tx(void *ud, const struct bt2c_transaction *t) {
  struct collect *c = ud;
  if (c->bytes + t->json_len + 1 > c->budget) return 1;
  if (c->n == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 64;
    c->t = realloc(c->t, c->cap * sizeof *c->t);
    if (c->t == NULL) abort();
  }
  struct bt2c_transaction *d = &c->t[c->n++];
  memcpy(d->hash, t->hash, sizeof d->hash);
  char *copy = malloc(t->json_len + 1);
  if (copy == NULL) abort();
  memcpy(copy, t->json, t->json_len);
  copy[t->json_len] = '\0';
  d->json = copy;
  d->json_len = t->json_len;
  c->bytes += t->json_len + 1;
  return 0;
}

static int failf(char *err, size_t errcap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int failf(char *err, size_t errcap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errcap, fmt, ap);
  va_end(ap);
  return -1;
}

int bt2c_append_block(struct bt2c *x, const char *data_json, size_t data_len, int max_tx,
                      struct buf *out, char *err, size_t errcap) {
  struct buf data = {0};
  if (data_json) {
    struct json_doc doc;
    char why[96];
    if (json_parse(data_json, data_len, &doc, why, sizeof why) != 0)
      return failf(err, errcap, "data is not valid JSON (%s)", why);
    int rc = jcs_canonical(&data, doc.root, NULL, why, sizeof why);
    json_free(&doc);
    if (rc != 0) {
      buf_free(&data);
      return failf(err, errcap, "data: %s", why);
    }
  }
  if (data.len + 1024 > x->max_block) {
    buf_free(&data);
    return failf(err, errcap, "data of %zu bytes does not fit in a block", data.len);
  }
  struct collect c = {.budget = x->max_block - data.len - 1024};
  const struct bt2c_blockchain_store *st = &x->store;
  if (max_tx > 0 && st->pending)
    st->pending(st->ctx, max_tx > CHAIN_MAX_TXS ? CHAIN_MAX_TXS : max_tx, collect_tx, &c);
  char tip[BT2C_HASH_HEX + 1];
  st->tip(st->ctx, tip);
  struct bt2c_block b;
  int rc = chain_block_make(st->height(st->ctx) + 1, tip, (long long)netmgr_wallclock_ms(), c.t,
                            c.n, data_json ? data.data : NULL, data.len, &b, err, errcap);
  for (size_t i = 0; i < c.n; i++) free((char *)c.t[i].json);
  free(c.t);
  buf_free(&data);
  if (rc != 0) return -1;
  rc = apply_block(x, &b, NULL);
  if (rc != 0) {
    chain_block_free(&b);
    return failf(
        err, errcap,
        rc < 0 ? "the store's rules refuse the block" : "the store could not write the block");
  }
  x->st.blocks_made++;
  relay_broadcast(&x->nm->relay, MSG_BLOCK, b.json, b.json_len, NULL);
  if (out) buf_append(out, b.json, b.json_len);
  chain_block_free(&b);
  return 0;
}

/* {"key":value, ...the members of canon_obj} */
static void prepend_member(struct buf *out, const char *key, const char *value,
                           const struct buf *obj) {
  buf_appendf(out, "{\"%s\":%s", key, value);
  if (obj->len > 2) {
    buf_append(out, ",", 1);
    buf_append(out, obj->data + 1, obj->len - 1);
  } else {
    buf_append(out, "}", 1);
  }
}

int bt2c_add_transaction(struct bt2c *x, const char *json, size_t len, char hash[BT2C_HASH_HEX + 1],
                         char *err, size_t errcap) {
  struct json_doc doc;
  char why[256];
  struct buf text = {0}, content = {0}, canon = {0};
  int rc = -1;
  if (json_parse(json, len, &doc, why, sizeof why) != 0)
    return failf(err, errcap, "a transaction is a JSON object (%s)", why);
  if (doc.root->type != JSON_OBJECT) {
    json_free(&doc);
    return failf(err, errcap, "a transaction is a JSON object");
  }
  /* fill in timestamp, then hash (over everything but the hash) */
  if (jcs_canonical(&content, doc.root, "hash", why, sizeof why) != 0) goto bad;
  if (json_get(doc.root, "timestamp") == NULL) {
    char ts[32];
    snprintf(ts, sizeof ts, "%lld", (long long)netmgr_wallclock_ms());
    prepend_member(&text, "timestamp", ts, &content);
    json_free(&doc);
    if (json_parse(text.data, text.len, &doc, why, sizeof why) != 0) goto bad;
    buf_reset(&content);
    buf_reset(&text);
    if (jcs_canonical(&content, doc.root, "hash", why, sizeof why) != 0) goto bad;
  }
  if (json_get(doc.root, "hash") == NULL) {
    char h[BT2C_HASH_HEX + 3];
    h[0] = '"';
    chain_sha256_hex(content.data, content.len, h + 1);
    h[BT2C_HASH_HEX + 1] = '"';
    h[BT2C_HASH_HEX + 2] = '\0';
    prepend_member(&text, "hash", h, &content);
    json_free(&doc);
    if (json_parse(text.data, text.len, &doc, why, sizeof why) != 0) goto bad;
  }
  if (chain_tx_check(doc.root, &canon, hash, why, sizeof why) != 0) goto bad;
  struct bt2c_transaction t = {.json = canon.data, .json_len = canon.len};
  memcpy(t.hash, hash, sizeof t.hash);
  rc = add_tx(x, &t, NULL);
  if (rc == -1) {
    snprintf(why, sizeof why, "the store's rules refuse it");
    goto bad;
  }
  if (rc == -2) {
    snprintf(why, sizeof why, "the mempool is full");
    rc = -1;
    goto bad;
  }
  if (rc == 0) relay_broadcast(&x->nm->relay, MSG_TRANSACTION, canon.data, canon.len, NULL);
  goto done;
bad:
  rc = -1;
  snprintf(err, errcap, "%s", why);
done:
  json_free(&doc);
  buf_free(&text);
  buf_free(&content);
  buf_free(&canon);
  return rc;
}

int bt2c_request_transactions(struct bt2c *x, const char (*hashes)[BT2C_HASH_HEX + 1], int n) {
  return sync_request_transactions(&x->sync, hashes, n, 3);
}

static bool me_validator(struct bt2c *x) {
  return x->vm.is_validator && x->vm.is_validator(x->vm.ctx, x->nm->me.id_hex);
}

int bt2c_send_vote(struct bt2c *x, long long height, long long round, const char *block_hash,
                   const char *vote, struct buf *out, char *err, size_t errcap) {
  if (!me_validator(x))
    return failf(err, errcap, "this node (%s) is not in the validator set", x->nm->me.id_hex);
  struct buf b = {0};
  if (consensus_sign_vote(&b, &x->nm->me, x->conf->networkId, height, round, block_hash, vote, err,
                          errcap) != 0) {
    buf_free(&b);
    return -1;
  }
  int n = relay_broadcast(&x->nm->relay, MSG_CONSENSUS_VOTE, b.data, b.len, NULL);
  if (out) buf_append(out, b.data, b.len);
  buf_free(&b);
  return n < 0 ? failf(err, errcap, "the vote could not be sent") : n;
}

int bt2c_send_proposal(struct bt2c *x, long long height, long long round, const char *block_json,
                       size_t block_len, struct buf *out, char *err, size_t errcap) {
  if (!me_validator(x))
    return failf(err, errcap, "this node (%s) is not in the validator set", x->nm->me.id_hex);
  struct bt2c_block blk;
  if (chain_block_parse(block_json, block_len, x->max_block, &blk, err, errcap) != 0) return -1;
  if (blk.height != height) {
    chain_block_free(&blk);
    return failf(err, errcap, "the block's height (%lld) is not the proposal's (%lld)", blk.height,
                 height);
  }
  if (round < 0) {
    chain_block_free(&blk);
    return failf(err, errcap, "round must be an integer >= 0");
  }
  struct buf b = {0};
  consensus_sign_proposal(&b, &x->nm->me, x->conf->networkId, height, round, &blk);
  chain_block_free(&blk);
  int n = relay_broadcast(&x->nm->relay, MSG_CONSENSUS_PROPOSAL, b.data, b.len, NULL);
  if (out) buf_append(out, b.data, b.len);
  buf_free(&b);
  return n < 0 ? failf(err, errcap, "the proposal could not be sent (too big?)") : n;
}

int bt2c_sign_validator_set(struct bt2c *x, const char *json, size_t len, struct buf *out,
                            char *err, size_t errcap) {
  struct json_doc doc;
  char why[160];
  if (json_parse(json, len, &doc, why, sizeof why) != 0) return failf(err, errcap, "%s", why);
  long long epoch;
  struct bt2c_validator *v;
  int n;
  int rc = consensus_parse_set(doc.root, &epoch, &v, &n, err, errcap);
  json_free(&doc);
  if (rc != 0) return -1;
  rc = consensus_sign_set(out, &x->nm->me, x->conf->networkId, epoch, v, n);
  free(v);
  return rc;
}

int bt2c_submit_validator_set(struct bt2c *x, const char *json, size_t len, char *err,
                              size_t errcap) {
  struct json_doc doc;
  char why[256];
  if (json_parse(json, len, &doc, why, sizeof why) != 0) return failf(err, errcap, "%s", why);
  long long epoch;
  struct bt2c_validator *set = NULL;
  int n = 0, signers = 0;
  enum consensus_verdict r = consensus_check_set(doc.root, x->conf->networkId, &x->vm, &epoch, &set,
                                                 &n, &signers, why, sizeof why);
  json_free(&doc);
  if (r != CV_OK) return failf(err, errcap, "%s: %s", consensus_verdict_name(r), why);
  int rc = adopt_set(x, epoch, set, n, signers, "self");
  free(set);
  if (rc != 0) return failf(err, errcap, "the validator manager did not adopt it");
  relay_broadcast(&x->nm->relay, MSG_VALIDATOR_SET, json, len, NULL);
  return 0;
}

int bt2c_replace_validators(struct bt2c *x, const struct bt2c_validator *v, int n,
                            long long epoch) {
  if (x->vm.ctx != &x->vset) return -1;
  consensus_vset_replace(&x->vset, epoch, v, n, "console");
  log_at(LV_INFO, "validator_set_replaced", "validators=%d epoch=%lld source=console", n, epoch);
  netmgr_validators_changed(x->nm);
  return 0;
}

void bt2c_sync_status(const struct bt2c *x, struct bt2c_sync_status *out) {
  sync_get_status(&x->sync, out);
}

int bt2c_metrics(const struct bt2c *x, struct bt2c_metric *m, int cap) {
  struct bt2c_sync_status s;
  sync_get_status(&x->sync, &s);
  long long epoch = 0;
  int nval = x->vm.current ? x->vm.current(x->vm.ctx, NULL, 0, &epoch) : 0;
  int connected = 0;
  for (const struct peer *p = x->nm->peers; p; p = p->next) connected += p->counted && p->validator;
  const struct bt2c_metric all[] = {
      {"chain.height", (double)s.height},
      {"chain.target", (double)s.target},
      {"chain.mempool", x->store.pending_count ? (double)x->store.pending_count(x->store.ctx) : 0},
      {"chain.blocks_added", (double)x->st.blocks_added},
      {"chain.blocks_made", (double)x->st.blocks_made},
      {"chain.blocks_received", (double)x->st.blocks_in},
      {"chain.blocks_invalid", (double)x->st.blocks_invalid},
      {"chain.transactions_received", (double)x->st.tx_in},
      {"chain.transactions_invalid", (double)x->st.tx_invalid},
      {"chain.transactions_added", (double)x->st.tx_added},
      {"sync.syncing", s.syncing ? 1 : 0},
      {"sync.peers", s.peers},
      {"sync.requests_in_flight", s.requests_in_flight},
      {"sync.buffered", (double)s.buffered},
      {"sync.blocks_received", (double)s.blocks_received},
      {"sync.bad_responses", (double)s.bad_responses},
      {"sync.timeouts", (double)s.timeouts},
      {"sync.served_blocks", (double)s.served_blocks},
      {"consensus.votes_accepted", (double)x->st.votes_ok},
      {"consensus.votes_rejected", (double)x->st.votes_rejected},
      {"consensus.proposals_accepted", (double)x->st.proposals_ok},
      {"consensus.proposals_rejected", (double)x->st.proposals_rejected},
      {"validators.count", nval},
      {"validators.epoch", (double)epoch},
      {"validators.connected", connected},
      {"validators.sets_adopted", (double)x->st.sets_adopted},
      {"validators.sets_rejected", (double)x->st.sets_rejected},
      {"messages.misrouted", (double)x->st.misrouted},
  };
  int n = 0;
  for (size_t i = 0; i < sizeof all / sizeof all[0] && n < cap; i++) m[n++] = all[i];
  return n;
}
