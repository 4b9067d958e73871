/* metrics: the MonitoringService endpoint — a small HTTP listener on
 * metrics.host:metrics.port serving GET /metrics (Prometheus text format
 * 0.0.4) and GET /status (JSON), and the writer its sources use.
 *
 * What /metrics says comes from sources: functions the node registers, each
 * writing its own families through struct metrics_out. A later component
 * (NAT, chain, sync) adds its lines with metrics_add_source(); nothing here
 * changes. The writer keeps the exposition valid whatever a source does:
 * names must match ^bt2c_[a-z0-9_]+$, counters must end in _total, a family
 * may appear once per scrape; a family breaking these is left out and logged.
 * /status is one callback that writes a JSON document.
 *
 * A response is built whole when its request arrives (so every number in it
 * is from the same moment), then written as the socket accepts it. Requests
 * are bounded: GET only, no body, headers within lws's 4 KiB, a deadline per
 * connection, a cap on open connections, one response per connection.
 *
 * Must not: run Lua, block, or know what the node is made of; sources and the
 * status callback must only read memory (no I/O, no policy hooks).
 */
#ifndef BT2C_METRICS_H
#define BT2C_METRICS_H

#include <stdint.h>

#include "buf.h"
#include "loop.h"

struct metrics;
struct metrics_out;

enum metrics_type { METRICS_COUNTER, METRICS_GAUGE, METRICS_HISTOGRAM };

/* Listens on host:port (port > 0). Returns NULL after logging why. */
struct metrics *metrics_start(struct loop *l, const char *host, int port);
/* Closes the listener and every open request; m is freed. NULL is a no-op. */
void metrics_stop(struct metrics *m);
/* The port actually bound. */
int metrics_port(const struct metrics *m);

/* Adds a source of /metrics lines; sources write in the order they were
 * added. `name` (static) names the source in logs. Returns 0, or -1 when m is
 * NULL (metrics off: nothing to do) or the table is full (logged). */
int metrics_add_source(struct metrics *m, const char *name,
                       void (*write)(struct metrics_out *o, void *ud), void *ud);
/* Sets what GET /status answers: fn appends one JSON document to out.
 * Without it /status is 404. */
void metrics_set_status(struct metrics *m, void (*fn)(struct buf *out, void *ud), void *ud);

/* ---- for sources --------------------------------------------------------- */

/* Starts a family (HELP and TYPE lines); the samples that follow belong to
 * it. Counters are named with their _total. */
void metrics_family(struct metrics_out *o, const char *name, enum metrics_type type,
                    const char *help);
/* One sample of the current counter or gauge family. After v come label
 * name/value pairs, then NULL: metrics_sample(o, 3, "type", "block", NULL). */
void metrics_sample(struct metrics_out *o, double v, ...) __attribute__((sentinel));
/* A family of one unlabelled sample. */
void metrics_counter(struct metrics_out *o, const char *name, const char *help, double v);
void metrics_gauge(struct metrics_out *o, const char *name, const char *help, double v);
/* A whole histogram family: counts[i] observations in (bounds[i-1], bounds[i]]
 * for i < n, counts[n] above bounds[n-1]; bounds ascending; sum of all
 * observed values. The writer makes the buckets cumulative. */
void metrics_histogram(struct metrics_out *o, const char *name, const char *help,
                       const double *bounds, const uint64_t *counts, int n, double sum);

#endif
