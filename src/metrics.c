/* metrics: see metrics.h. */
#include "metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libwebsockets.h>

#include "log.h"

#define METRICS_PROTOCOL "bt2c-metrics"
#define MAX_SOURCES 32
/* Scrapers are few; past this, new TCP connections are refused at accept. */
#define MAX_CONNS 32
/* Whole life of a connection: request, response, close. A client that sends
 * slowly or does not read is cut off then. */
#define CONN_DEADLINE_S 10
/* Bytes handed to lws per writable callback. */
#define WRITE_CHUNK 16384
#define MAX_NAME 200

struct source {
  const char *name;
  void (*write)(struct metrics_out *o, void *ud);
  void *ud;
};

enum conn_state { CONN_READING, CONN_SENDING, CONN_SENT };

/* One accepted connection; its lws opaque user data. */
struct conn {
  struct metrics *m; /* NULL once the endpoint has stopped */
  struct conn *next, *prev;
  enum conn_state state;
  double accepted; /* monotonic seconds */
  struct buf out;  /* status line, headers and body */
  size_t off;     /* bytes of out already handed to lws */
};

/* Lives in lws's per-vhost storage, so it outlasts struct metrics: lws may
 * call back for the vhost until it is torn down, after metrics_stop. */
struct anchor {
  struct metrics *m;
};

enum { CODE_200, CODE_400, CODE_404, CODE_405, CODE_N };
static const int code_values[CODE_N] = {200, 400, 404, 405};

struct metrics {
  struct loop *loop;
  struct lws_vhost *vh;
  struct anchor *anchor;
  int port;
  struct source sources[MAX_SOURCES];
  int n_sources;
  void (*status)(struct buf *out, void *ud);
  void *status_ud;
  struct conn *conns;
  int n_conns;
  uint64_t responses[CODE_N], refused, skipped;
  struct log_limit limit;
};

struct metrics_out {
  struct metrics *m;
  struct buf *b;
  const char *source; /* the source writing, for logs */
  char family[MAX_NAME + 1];
  enum metrics_type type;
  bool open; /* a valid family is current: its samples are written */
  char **seen; /* family names so far in this scrape */
  size_t n_seen, cap_seen;
};

/* ---- exposition writer --------------------------------------------------- */

static bool name_ok(const char *s, bool metric) {
  size_t n = strlen(s);
  if (n == 0 || n > MAX_NAME) return false;
  if (metric && strncmp(s, "bt2c_", 5) != 0) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || c == '_' || (i > 0 && c >= '0' && c <= '9') ||
              (!metric && c >= 'A' && c <= 'Z');
    if (!ok) return false;
  }
  return metric || strncmp(s, "__", 2) != 0;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Shortest text that reads back as v; integers without a point. */
static void put_value(struct buf *b, double v) {
  if (isnan(v)) {
    buf_append(b, "NaN", 3);
  } else if (isinf(v)) {
    buf_appendf(b, "%sInf", v > 0 ? "+" : "-");
  } else if (v == 0) {
    buf_append(b, "0", 1);
  } else if (v == floor(v) && fabs(v) < 1e15) {
    buf_appendf(b, "%.0f", v);
  } else {
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
      snprintf(tmp, sizeof tmp, "%.*g", prec, v);
      if (strtod(tmp, NULL) == v) break;
    }
    buf_appendf(b, "%s", tmp);
  }
}

/* Label values escape \, " and newline; HELP text escapes \ and newline. */
static void put_escaped(struct buf *b, const char *s, bool quote) {
  for (; *s; s++) {
    if (*s == '\\') buf_append(b, "\\\\", 2);
    else if (*s == '\n') buf_append(b, "\\n", 2);
    else if (quote && *s == '"') buf_append(b, "\\\"", 2);
    else buf_append(b, s, 1);
  }
}

static void skip_family(struct metrics_out *o, const char *name, const char *why) {
  o->open = false;
  o->m->skipped++;
  log_limited(&o->m->limit, LV_WARN, "metrics_family_skipped", "source=%s family=%.64s why=%s",
              o->source, name, why);
}

void metrics_family(struct metrics_out *o, const char *name, enum metrics_type type,
                    const char *help) {
  o->open = false;
  if (!name_ok(name, true)) {
    skip_family(o, name, "the name must match ^bt2c_[a-z0-9_]+$");
    return;
  }
  bool total = ends_with(name, "_total");
  if ((type == METRICS_COUNTER) != total) {
    skip_family(o, name, type == METRICS_COUNTER ? "a counter's name must end in _total"
                                                 : "only counters end in _total");
    return;
  }
  for (size_t i = 0; i < o->n_seen; i++)
    if (strcmp(o->seen[i], name) == 0) {
      skip_family(o, name, "the family was already written in this scrape");
      return;
    }
  if (o->n_seen == o->cap_seen) {
    size_t cap = o->cap_seen ? o->cap_seen * 2 : 64;
    char **nv = realloc(o->seen, cap * sizeof *nv);
    if (nv == NULL) abort(); /* as buf.c: nothing safe to do without memory */
    o->seen = nv;
    o->cap_seen = cap;
  }
  o->seen[o->n_seen] = strdup(name);
  if (o->seen[o->n_seen] == NULL) abort();
  o->n_seen++;
  snprintf(o->family, sizeof o->family, "%s", name);
  o->type = type;
  o->open = true;
  static const char *const type_names[] = {"counter", "gauge", "histogram"};
  buf_appendf(o->b, "# HELP %s ", name);
  put_escaped(o->b, help ? help : "", false);
  buf_appendf(o->b, "\n# TYPE %s %s\n", name, type_names[type]);
}

/* Writes "{k="v",...}" from a NULL-terminated list of pairs; false (nothing
 * written) when a label name is invalid or reserved, or a value is missing. */
static bool put_labels(struct buf *b, va_list ap) {
  va_list scan;
  va_copy(scan, ap);
  bool ok = true;
  int n = 0;
  for (const char *k; ok && (k = va_arg(scan, const char *)) != NULL; n++) {
    const char *v = va_arg(scan, const char *);
    ok = v != NULL && name_ok(k, false) && strcmp(k, "le") != 0;
  }
  va_end(scan);
  if (!ok) return false;
  if (n == 0) return true;
  buf_append(b, "{", 1);
  const char *sep = "";
  for (const char *k; (k = va_arg(ap, const char *)) != NULL; sep = ",") {
    buf_appendf(b, "%s%s=\"", sep, k);
    put_escaped(b, va_arg(ap, const char *), true);
    buf_append(b, "\"", 1);
  }
  buf_append(b, "}", 1);
  return true;
}

void metrics_sample(struct metrics_out *o, double v, ...) {
  if (!o->open || o->type == METRICS_HISTOGRAM) return;
  size_t mark = o->b->len;
  buf_appendf(o->b, "%s", o->family);
  va_list ap;
  va_start(ap, v);
  bool ok = put_labels(o->b, ap);
  va_end(ap);
  if (!ok) {
    o->b->len = mark;
    o->b->data[mark] = '\0';
    log_limited(&o->m->limit, LV_WARN, "metrics_sample_skipped", "source=%s family=%s why=%s",
                o->source, o->family, "a label name is invalid or a value is missing");
    return;
  }
  buf_append(o->b, " ", 1);
  put_value(o->b, v);
  buf_append(o->b, "\n", 1);
}

void metrics_counter(struct metrics_out *o, const char *name, const char *help, double v) {
  metrics_family(o, name, METRICS_COUNTER, help);
  metrics_sample(o, v, NULL);
}

void metrics_gauge(struct metrics_out *o, const char *name, const char *help, double v) {
  metrics_family(o, name, METRICS_GAUGE, help);
  metrics_sample(o, v, NULL);
}

/* One histogram line; the only labels are le (for buckets). */
static void hist_line(struct metrics_out *o, const char *suffix, const char *le, double v) {
  buf_appendf(o->b, "%s%s", o->family, suffix);
  if (le) buf_appendf(o->b, "{le=\"%s\"}", le);
  buf_append(o->b, " ", 1);
  put_value(o->b, v);
  buf_append(o->b, "\n", 1);
}

void metrics_histogram(struct metrics_out *o, const char *name, const char *help,
                       const double *bounds, const uint64_t *counts, int n, double sum) {
  metrics_family(o, name, METRICS_HISTOGRAM, help);
  if (!o->open) return;
  uint64_t cum = 0;
  for (int i = 0; i < n; i++) {
    struct buf le = {0};
    put_value(&le, bounds[i]);
    cum += counts[i];
    hist_line(o, "_bucket", le.data, (double)cum);
    buf_free(&le);
  }
  cum += counts[n];
  hist_line(o, "_bucket", "+Inf", (double)cum);
  hist_line(o, "_sum", NULL, sum);
  hist_line(o, "_count", NULL, (double)cum);
}

/* The endpoint's own numbers, after every registered source. */
static void write_self(struct metrics_out *o, struct metrics *m) {
  metrics_family(o, "bt2c_metrics_responses_total", METRICS_COUNTER,
                 "HTTP responses of the metrics endpoint by status code (not yet this one)");
  for (int i = 0; i < CODE_N; i++) {
    char code[8];
    snprintf(code, sizeof code, "%d", code_values[i]);
    metrics_sample(o, (double)m->responses[i], "code", code, NULL);
  }
  metrics_counter(o, "bt2c_metrics_refused_total",
                  "Connections to the metrics endpoint refused at accept (too many open)",
                  (double)m->refused);
  metrics_gauge(o, "bt2c_metrics_connections", "Open connections to the metrics endpoint",
                m->n_conns);
  metrics_counter(o, "bt2c_metrics_skipped_total",
                  "Families left out of a scrape because a source broke the format rules",
                  (double)m->skipped);
}

static void render(struct metrics *m, struct buf *b) {
  struct metrics_out o = {.m = m, .b = b};
  for (int i = 0; i < m->n_sources; i++) {
    o.source = m->sources[i].name;
    o.open = false;
    m->sources[i].write(&o, m->sources[i].ud);
  }
  o.source = "metrics";
  o.open = false;
  write_self(&o, m);
  for (size_t i = 0; i < o.n_seen; i++) free(o.seen[i]);
  free(o.seen);
}

/* ---- HTTP ---------------------------------------------------------------- */

static const char *reason_of(int code) {
  switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    default: return "Method Not Allowed";
  }
}

static void respond(struct conn *c, int ci, const char *ctype, struct buf *body) {
  int code = code_values[ci];
  buf_appendf(&c->out,
              "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
              "Cache-Control: no-store\r\nConnection: close\r\n%s\r\n",
              code, reason_of(code), ctype, body->len, code == 405 ? "Allow: GET\r\n" : "");
  buf_append(&c->out, body->data, body->len);
  c->m->responses[ci]++;
  c->state = CONN_SENDING;
}

static void respond_text(struct conn *c, int ci, const char *text, bool head) {
  struct buf body = {0};
  if (!head) buf_appendf(&body, "%s\n", text); /* a reply to HEAD has no body */
  respond(c, ci, "text/plain; charset=utf-8", &body);
  buf_free(&body);
}

/* Builds the whole response now: every number in it is from this moment. */
static void on_request(struct conn *c, struct lws *wsi) {
  struct metrics *m = c->m;
  char *uri = NULL;
  int ulen = 0;
  int meth = lws_http_get_uri_and_method(wsi, &uri, &ulen);
  char path[64];
  snprintf(path, sizeof path, "%.*s", uri ? (ulen < 63 ? ulen : 63) : 0, uri ? uri : "");
  bool has_body = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
  char cl[24];
  if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0 &&
      strtoll(cl, NULL, 10) != 0)
    has_body = true;
  bool known = strcmp(path, "/metrics") == 0 || (strcmp(path, "/status") == 0 && m->status);

  if (meth != LWSHUMETH_GET) {
    respond_text(c, CODE_405, "only GET is served here", meth == LWSHUMETH_HEAD);
  } else if (has_body) {
    respond_text(c, CODE_400, "a request body is not accepted", false);
  } else if (!known) {
    respond_text(c, CODE_404, "not found: try /metrics or /status", false);
  } else if (strcmp(path, "/metrics") == 0) {
    struct buf body = {0};
    render(m, &body);
    respond(c, CODE_200, "text/plain; version=0.0.4; charset=utf-8", &body);
    buf_free(&body);
  } else {
    struct buf body = {0};
    m->status(&body, m->status_ud);
    buf_append(&body, "\n", 1);
    respond(c, CODE_200, "application/json", &body);
    buf_free(&body);
  }
  log_at(LV_DEBUG, "metrics_request", "path=%s bytes=%zu", path, c->out.len);
  lws_callback_on_writable(wsi);
}

/* Hands the next chunk to lws; once all of it is out (lws calls back only
 * after its own buffer drained), returns -1 to close. */
static int on_writable(struct conn *c, struct lws *wsi) {
  if (c->state == CONN_SENT) return -1;
  if (c->state != CONN_SENDING) return 0;
  unsigned char chunk[LWS_PRE + WRITE_CHUNK];
  size_t n = c->out.len - c->off;
  if (n > WRITE_CHUNK) n = WRITE_CHUNK;
  memcpy(chunk + LWS_PRE, c->out.data + c->off, n);
  bool last = c->off + n == c->out.len;
  if (lws_write(wsi, chunk + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < (int)n)
    return -1;
  c->off += n;
  if (last) c->state = CONN_SENT;
  lws_callback_on_writable(wsi);
  return 0;
}

static void conn_unlink(struct conn *c) {
  struct metrics *m = c->m;
  if (m == NULL) return;
  if (c->prev) c->prev->next = c->next;
  else m->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  m->n_conns--;
  c->m = NULL;
}

static struct metrics *metrics_of_vhost(struct lws *wsi) {
  struct lws_vhost *vh = lws_get_vhost(wsi);
  if (vh == NULL) return NULL;
  struct anchor *a = lws_protocol_vh_priv_get(vh, lws_get_protocol(wsi));
  return a ? a->m : NULL;
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
  struct conn *c = lws_get_opaque_user_data(wsi);
  switch (reason) {
    case LWS_CALLBACK_FILTER_NETWORK_CONNECTION: {
      struct metrics *m = metrics_of_vhost(wsi);
      if (m == NULL) return 1;
      if (m->n_conns >= MAX_CONNS) {
        m->refused++;
        log_limited(&m->limit, LV_WARN, "metrics_refused", "open=%d why=%s", m->n_conns,
                    "too many open connections to the metrics endpoint");
        return 1;
      }
      return 0;
    }
    case LWS_CALLBACK_SERVER_NEW_CLIENT_INSTANTIATED: {
      struct metrics *m = metrics_of_vhost(wsi);
      if (m == NULL || c != NULL) return -1;
      c = calloc(1, sizeof *c);
      if (c == NULL) return -1;
      c->m = m;
      c->accepted = log_monotonic();
      c->next = m->conns;
      if (m->conns) m->conns->prev = c;
      m->conns = c;
      m->n_conns++;
      lws_set_opaque_user_data(wsi, c);
      lws_set_timeout(wsi, PENDING_TIMEOUT_USER_REASON_BASE + 3, CONN_DEADLINE_S);
      return 0;
    }
    case LWS_CALLBACK_HTTP: {
      if (c == NULL || c->m == NULL || c->state != CONN_READING) return -1;
      /* lws re-arms its own timeouts while parsing: put ours back, counted
       * from the accept */
      int left = CONN_DEADLINE_S - (int)(log_monotonic() - c->accepted);
      lws_set_timeout(wsi, PENDING_TIMEOUT_USER_REASON_BASE + 3, left > 1 ? left : 1);
      on_request(c, wsi);
      return 0;
    }
    case LWS_CALLBACK_HTTP_BODY:
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
      return 0; /* the refusal is already queued; the body is dropped */
    case LWS_CALLBACK_HTTP_WRITEABLE:
      if (c == NULL || c->m == NULL) return -1;
      return on_writable(c, wsi);
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: /* WebSocket, h2c: not here */
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
    case LWS_CALLBACK_RAW_ADOPT: /* CONNECT turns a connection raw */
    case LWS_CALLBACK_RAW_RX:
      return -1;
    case LWS_CALLBACK_WSI_DESTROY:
      if (c) {
        lws_set_opaque_user_data(wsi, NULL);
        conn_unlink(c);
        buf_free(&c->out);
        free(c);
      }
      return 0;
    default:
      return 0;
  }
}

static const struct lws_protocols protocols[] = {
    {METRICS_PROTOCOL, callback, 0, 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

struct metrics *metrics_start(struct loop *l, const char *host, int port) {
  struct metrics *m = calloc(1, sizeof *m);
  if (m == NULL) return NULL;
  m->loop = l;
  m->limit.burst = 20;
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.vhost_name = "metrics";
  info.port = port;
  info.iface = (host && strcmp(host, "0.0.0.0") != 0) ? host : NULL;
  info.protocols = protocols;
  info.timeout_secs_ah_idle = CONN_DEADLINE_S;
  if (host && strchr(host, ':') == NULL) info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
  m->vh = lws_create_vhost(l->ctx, &info);
  if (m->vh == NULL) {
    log_at(LV_ERROR, "metrics_listen_failed", "host=%s port=%d err=%s", host ? host : "", port,
           "cannot listen for metrics (address in use or not local?); change metrics.port "
           "or metrics.host, or set metrics.port = 0");
    free(m);
    return NULL;
  }
  const struct lws_protocols *p = lws_vhost_name_to_protocol(m->vh, METRICS_PROTOCOL);
  m->anchor = p ? lws_protocol_vh_priv_zalloc(m->vh, p, sizeof *m->anchor) : NULL;
  if (m->anchor == NULL) {
    log_at(LV_ERROR, "metrics_listen_failed", "host=%s port=%d err=%s", host ? host : "", port,
           "out of memory");
    lws_vhost_destroy(m->vh);
    free(m);
    return NULL;
  }
  m->anchor->m = m;
  m->port = lws_get_vhost_listen_port(m->vh);
  log_at(LV_INFO, "metrics_listening", "host=%s port=%d paths=%s", host ? host : "", m->port,
         "/metrics,/status");
  return m;
}

void metrics_stop(struct metrics *m) {
  if (m == NULL) return;
  /* Detach first: whatever lws still calls back for finds nothing to use. */
  m->anchor->m = NULL;
  while (m->conns) conn_unlink(m->conns);
  lws_vhost_destroy(m->vh);
  free(m);
}

int metrics_port(const struct metrics *m) { return m ? m->port : 0; }

int metrics_add_source(struct metrics *m, const char *name,
                       void (*write)(struct metrics_out *o, void *ud), void *ud) {
  if (m == NULL) return -1;
  if (m->n_sources == MAX_SOURCES) {
    log_at(LV_ERROR, "metrics_source_refused", "source=%s why=%s", name,
           "too many metrics sources (raise MAX_SOURCES in src/metrics.c)");
    return -1;
  }
  m->sources[m->n_sources++] = (struct source){name, write, ud};
  return 0;
}

void metrics_set_status(struct metrics *m, void (*fn)(struct buf *out, void *ud), void *ud) {
  if (m == NULL) return;
  m->status = fn;
  m->status_ud = ud;
}
