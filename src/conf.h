/* conf: the node configuration (conf/bt2cd.lua), loaded and checked.
 *
 * The file is a Lua data file that returns a table. It is evaluated in an
 * empty environment under an instruction and memory budget, then checked
 * against the schema in lua/conf.lua (the seed's option names and defaults
 * plus the node-level keys of the design contract). Every problem is reported
 * as "file:line: message" naming the key; nothing is half-applied.
 *
 * Must not: touch the network, the data directory or any other part of the
 * node. It only reads the one file.
 */
#ifndef BT2C_CONF_H
#define BT2C_CONF_H

#include <stdbool.h>
#include <stddef.h>

#include <lua.h>

enum relay_mode { RELAY_FLOOD, RELAY_SELECTIVE, RELAY_VALIDATOR_ONLY };

/* Scoring categories, in the seed's order. */
enum score_category {
  SCORE_LATENCY,
  SCORE_UPTIME,
  SCORE_BLOCK_PROPAGATION,
  SCORE_TRANSACTION_RELAY,
  SCORE_VALIDATOR_STATUS,
  SCORE_BEHAVIOR,
  SCORE_NCATEGORIES
};

struct conf_turn_server {
  char *urls; /* "turn:host:port" (the seed's single string form) */
  char *username;
  char *credential;
};

struct conf {
  char *path;      /* the file read, or NULL when running on defaults */
  char *dir;       /* its directory: relative paths are resolved against it */

  /* NetworkManager (seed names; durations in ms) */
  int port;
  char *host;
  int maxPeers, maxInbound, maxOutbound;
  int connectionTimeout, handshakeTimeout, pingInterval, peerDiscoveryInterval;
  char **bootstrapPeers;
  size_t n_bootstrapPeers;
  char **persistentPeers;
  size_t n_persistentPeers;
  char *nodeId;      /* optional: if set, must equal the id derived from the key */
  char **validators; /* node ids (hex) of the validator set */
  size_t n_validators;
  char *metaVersion; /* nodeMetadata.version */
  bool isValidator;  /* nodeMetadata.isValidator (a claim; proven elsewhere) */

  struct {
    double decayPeriod; /* ms */
    double decayFactor;
    int historyLimit;
    double weights[SCORE_NCATEGORIES];
    double trusted, neutral, banned;
  } peerScoring;

  struct {
    char **stunServers;
    size_t n_stunServers;
    struct conf_turn_server *turnServers;
    size_t n_turnServers;
    char *preferredMethod;     /* "stun" | "turn" | "host" */
    char *candidatePreference; /* "host" | "srflx" | "relay" | "priority" */
    int stunRto;               /* ms, first retransmission timeout */
    int stunRetransmissions;   /* requests per STUN transaction */
    int stunRefreshInterval;   /* ms between discovery rounds */
  } natTraversal;

  struct {
    int maxRelayHops;
    enum relay_mode relayMode;
    double relayThreshold;
    double messageExpiration; /* ms */
    double cleanupInterval;   /* ms */
    unsigned seenCacheSize;   /* message ids the duplicate filter holds */
  } messageRelay;

  /* Node-level keys (absolute paths after loading) */
  char *dataDir;
  char *policyDir;
  char *consoleSocket;
  char *networkId;
  struct {
    char *host;
    int port; /* 0: no metrics listener */
  } metrics;
  struct {
    char *cert, *key; /* both NULL: no TLS */
  } tls;
  int logLevel;          /* enum log_level */
  size_t maxMessageSize; /* bytes */
  int consoleTimeout;    /* ms per console command */
  struct {
    long instructions; /* per hook call */
    int time;          /* ms per hook call */
    size_t memory;     /* bytes per policy state */
    int failures;      /* consecutive failures before a hook is switched off */
  } policyLimits;

  /* The checked configuration as a Lua table constructor ("{port=8765,...}"),
   * defaults filled in, so other states (policies, console) can get a copy. */
  char *normalized;
};

/* A list of "file:line: message" strings. */
struct conf_errors {
  char **msg;
  size_t n;
};

/* Loads `path` into c (c is cleared first). When path is NULL, or when
 * `optional` is true and the file does not exist, the defaults are used and
 * relative paths are resolved against the working directory.
 * Returns 0, or -1 with every problem in errs (c is then left empty). */
int conf_load(struct conf *c, const char *path, bool optional, struct conf_errors *errs);

void conf_free(struct conf *c);
void conf_errors_free(struct conf_errors *errs);

/* [-0, +1, m] Pushes a fresh table holding the normalized configuration. */
void conf_push(lua_State *L, const struct conf *c);

const char *conf_relay_mode_name(enum relay_mode m);
const char *conf_category_name(enum score_category cat); /* seed key, e.g. "blockPropagation" */

#endif
