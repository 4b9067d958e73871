/* log: see log.h. */
#include "log.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int log_threshold = LV_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

int log_level_parse(const char *name) {
  for (int i = 0; i <= LV_OFF; i++)
    if (strcmp(name, level_names[i]) == 0) return i;
  return -1;
}

const char *log_level_name(int level) {
  return (level >= 0 && level <= LV_OFF) ? level_names[level] : "?";
}

void log_set_level(int level) { log_threshold = level; }
int log_get_level(void) { return log_threshold; }
int log_enabled(int level) { return level >= log_threshold && level < LV_OFF; }

double log_monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Output buffer that never overflows but keeps counting. */
struct out {
  char *buf;
  size_t cap, len;
};

static void out_put(struct out *o, const char *s, size_t n) {
  if (o->len < o->cap) {
    size_t room = o->cap - o->len;
    memcpy(o->buf + o->len, s, n < room ? n : room);
  }
  o->len += n;
}

static int needs_quotes(const char *s) {
  if (*s == '\0') return 1;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    if (*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f) return 1;
  return 0;
}

static void out_value(struct out *o, const char *s) {
  if (s == NULL) s = "(null)";
  if (!needs_quotes(s)) {
    out_put(o, s, strlen(s));
    return;
  }
  out_put(o, "\"", 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[5];
    switch (*p) {
      case '"': out_put(o, "\\\"", 2); break;
      case '\\': out_put(o, "\\\\", 2); break;
      case '\n': out_put(o, "\\n", 2); break;
      case '\t': out_put(o, "\\t", 2); break;
      case '\r': out_put(o, "\\r", 2); break;
      default:
        if (*p < ' ' || *p == 0x7f) {
          snprintf(esc, sizeof esc, "\\x%02x", *p);
          out_put(o, esc, 4);
        } else {
          out_put(o, (const char *)p, 1);
        }
    }
  }
  out_put(o, "\"", 1);
}

size_t log_vformat(char *buf, size_t cap, const char *fmt, va_list ap) {
  struct out o = {buf, cap ? cap - 1 : 0, 0};
  const char *p = fmt;
  while (*p) {
    const char *pct = strchr(p, '%');
    if (pct == NULL) {
      out_put(&o, p, strlen(p));
      break;
    }
    out_put(&o, p, (size_t)(pct - p));
    /* Parse one conversion: %[flags][width][.prec][length]conv */
    const char *q = pct + 1;
    q += strspn(q, "-+ #0");
    int star_width = 0, star_prec = 0;
    if (*q == '*') { star_width = 1; q++; } else q += strspn(q, "0123456789");
    if (*q == '.') {
      q++;
      if (*q == '*') { star_prec = 1; q++; } else q += strspn(q, "0123456789");
    }
    const char *len_start = q;
    q += strspn(q, "hlLzjt");
    char conv = *q;
    if (conv == '\0') break;
    size_t speclen = (size_t)(q - pct) + 1;
    char spec[32], tmp[128];
    if (speclen >= sizeof spec) speclen = sizeof spec - 1;
    memcpy(spec, pct, speclen);
    spec[speclen] = '\0';
    int w = star_width ? va_arg(ap, int) : 0;
    int pr = star_prec ? va_arg(ap, int) : 0;
    size_t lenmod = (size_t)(q - len_start);
    int n = 0;
#define FMT1(v)                                                                   \
  (star_width && star_prec ? snprintf(tmp, sizeof tmp, spec, w, pr, v)            \
   : star_width            ? snprintf(tmp, sizeof tmp, spec, w, v)                \
   : star_prec             ? snprintf(tmp, sizeof tmp, spec, pr, v)               \
                           : snprintf(tmp, sizeof tmp, spec, v))
    switch (conv) {
      case '%': out_put(&o, "%", 1); break;
      case 's': {
        const char *s = va_arg(ap, const char *);
        if (star_prec && s && pr >= 0) {
          /* %.*s: a bounded slice, copied before quoting. */
          char slice[512];
          size_t k = strnlen(s, (size_t)pr);
          if (k >= sizeof slice) k = sizeof slice - 1;
          memcpy(slice, s, k);
          slice[k] = '\0';
          out_value(&o, slice);
        } else {
          out_value(&o, s);
        }
        break;
      }
      case 'c': n = FMT1(va_arg(ap, int)); break;
      case 'p': n = FMT1(va_arg(ap, void *)); break;
      case 'd': case 'i': case 'u': case 'x': case 'X': case 'o':
        if (lenmod == 0 || len_start[0] == 'h') n = FMT1(va_arg(ap, int));
        else if (len_start[0] == 'z') n = FMT1(va_arg(ap, size_t));
        else if (len_start[0] == 'j') n = FMT1(va_arg(ap, intmax_t));
        else if (len_start[0] == 't') n = FMT1(va_arg(ap, ptrdiff_t));
        else if (lenmod >= 2) n = FMT1(va_arg(ap, long long));
        else n = FMT1(va_arg(ap, long));
        break;
      case 'f': case 'F': case 'e': case 'E': case 'g': case 'G':
        if (lenmod && len_start[0] == 'L') n = FMT1(va_arg(ap, long double));
        else n = FMT1(va_arg(ap, double));
        break;
      default: out_put(&o, spec, speclen); break;
    }
#undef FMT1
    if (n > 0) out_put(&o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
    p = q + 1;
  }
  if (cap) buf[o.len < cap ? o.len : cap - 1] = '\0';
  return o.len;
}

size_t log_format(char *buf, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t n = log_vformat(buf, cap, fmt, ap);
  va_end(ap);
  return n;
}

/* Writes one line with already formatted fields. */
static void log_emit(int level, const char *event, const char *fields) {
  char line[4096];
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s event=%s%s%s",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                   tm.tm_sec, ts.tv_nsec / 1000000L, level_names[level], event,
                   *fields ? " " : "", fields);
  size_t len = n < 0 ? 0 : (size_t)n;
  if (len > sizeof line - 2) {
    len = sizeof line - 2;
    memcpy(line + len - 3, "...", 3);
  }
  line[len++] = '\n';
  fwrite(line, 1, len, stderr);
  fflush(stderr);
}

void log_vat(int level, const char *event, const char *fmt, va_list ap) {
  if (!log_enabled(level)) return;
  char fields[3584];
  log_vformat(fields, sizeof fields, fmt ? fmt : "", ap);
  log_emit(level, event, fields);
}

void log_at(int level, const char *event, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  log_vat(level, event, fmt, ap);
  va_end(ap);
}

void log_limited(struct log_limit *rl, int level, const char *event, const char *fmt, ...) {
  if (!log_enabled(level)) return;
  double now = log_monotonic();
  double window = rl->window > 0 ? rl->window : 10.0;
  unsigned burst = rl->burst ? rl->burst : 5;
  if (rl->count == 0 || now - rl->window_start >= window) {
    rl->window_start = now;
    rl->count = 0;
  }
  if (rl->count >= burst) {
    rl->suppressed++;
    return;
  }
  rl->count++;
  char fields[3072];
  va_list ap;
  va_start(ap, fmt);
  log_vformat(fields, sizeof fields, fmt, ap);
  va_end(ap);
  if (rl->suppressed) {
    size_t len = strlen(fields);
    snprintf(fields + len, sizeof fields - len, " suppressed=%u", rl->suppressed);
    rl->suppressed = 0;
  }
  log_emit(level, event, fields);
}
