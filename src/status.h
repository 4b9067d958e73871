/* status: what the node reports about itself to monitoring — the JSON of
 * GET /status and the node's built-in /metrics sources (process, peers,
 * messages, relay, scoring, bans, policies, send queues, peer store).
 *
 * The JSON is network.get_network_status() (lnetwork.c) built in C, field for
 * field; spec/metrics_spec.lua holds the two equal, so a field added there
 * must be added here.
 *
 * Must not: run Lua or change anything it reads (no recompute, no peer store
 * load, no policy hook): a scrape is a read of memory.
 */
#ifndef BT2C_STATUS_H
#define BT2C_STATUS_H

#include "buf.h"

struct node;
struct metrics;

/* Appends network.get_network_status() of the node (ud) as one JSON object. */
void status_json(struct buf *out, void *ud);

/* Starts the metrics endpoint on metrics.host:metrics.port with /status and
 * the built-in sources. Returns NULL after logging why (a start failure). */
struct metrics *status_serve(struct node *n);

#endif
