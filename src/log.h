/* log: one line per event on stderr, `key=value` fields, levels, rate limits.
 *
 * A line looks like
 *   2026-11-24T20:10:52.123Z level=warn event=policy_error file=policies/relay.lua:12 msg="..."
 * The format string of log_at() is printf's, except that every %s is written
 * as a log value: quoted and escaped when it holds spaces, quotes, '=' or
 * control characters, so one field never spills into the next. The logger is
 * process-wide configuration set once at start; it must not call back into
 * the node.
 */
#ifndef BT2C_LOG_H
#define BT2C_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum log_level { LV_DEBUG, LV_INFO, LV_WARN, LV_ERROR, LV_OFF };

/* Returns the level for "debug", "info", "warn", "error", or -1. */
int log_level_parse(const char *name);
const char *log_level_name(int level);
void log_set_level(int level);
int log_get_level(void);
int log_enabled(int level);

void log_at(int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vat(int level, const char *event, const char *fmt, va_list ap);

/* Formats like log_at's fields into buf (always NUL-terminated); returns the
 * length it would have had. */
size_t log_format(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
size_t log_vformat(char *buf, size_t cap, const char *fmt, va_list ap);

/* A repeating error: at most `burst` lines per `window` seconds; the first
 * line after a quiet spell reports how many were suppressed. Zero-initialise;
 * burst/window of 0 mean 5 lines per 10 s. */
struct log_limit {
  double window_start;
  unsigned burst, count, suppressed;
  double window;
};
void log_limited(struct log_limit *rl, int level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

double log_monotonic(void);

#endif
