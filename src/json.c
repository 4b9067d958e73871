/* json: see json.h. */
#include "json.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every value, member and string byte of a document comes from one block
 * whose size is bounded by a small multiple of the input length, so a
 * hostile document cannot make the reader allocate more than that. */
struct arena {
  char *base;
  size_t used, cap;
};

static void *arena_alloc(struct arena *a, size_t n) {
  n = (n + 7) & ~(size_t)7;
  if (n > a->cap - a->used) return NULL;
  void *p = a->base + a->used;
  a->used += n;
  return p;
}

struct parser {
  const char *s, *end, *start;
  struct arena *a;
  const char *err;
  int depth;
};

static void skip_ws(struct parser *p) {
  while (p->s < p->end && (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r'))
    p->s++;
}

static struct json_value *parse_value(struct parser *p);

static struct json_value *new_value(struct parser *p, enum json_type t) {
  struct json_value *v = arena_alloc(p->a, sizeof *v);
  if (v == NULL) {
    p->err = "document too large";
    return NULL;
  }
  memset(v, 0, sizeof *v);
  v->type = t;
  return v;
}

static int hex4(const char *s, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = s[i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return -1;
  }
  *out = v;
  return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xc0 | cp >> 6);
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | cp >> 12);
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char)(0xf0 | cp >> 18);
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0. */
static size_t utf8_seq(const unsigned char *s, const unsigned char *end) {
  unsigned c = s[0];
  size_t n;
  unsigned min;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) n = 2, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef) n = 3, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4) n = 4, min = 0x10000;
  else return 0;
  if ((size_t)(end - s) < n) return 0;
  unsigned cp = c & (0x3f >> (n - 1));
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (s[i] & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

/* True if none of the 8 bytes at p is a quote, a backslash, a control
 * character or non-ASCII: the common case, tested a word at a time. */
static bool plain8(const char *p) {
  uint64_t w;
  memcpy(&w, p, 8);
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  uint64_t quote = w ^ (ones * '"'), bslash = w ^ (ones * '\\');
  uint64_t zero_q = (quote - ones) & ~quote & highs;
  uint64_t zero_b = (bslash - ones) & ~bslash & highs;
  uint64_t ctrl = (w - ones * 0x20) & ~w & highs; /* bytes < 0x20 (or >= 0x80) */
  return ((w & highs) | zero_q | zero_b | ctrl) == 0;
}

/* The first byte in [s, end) that plain8 would refuse, or a position within
 * 8 bytes of end: 16 bytes per step with GCC/Clang vector extensions (SSE2
 * on x86-64, NEON on arm64), 8 with plain8 elsewhere. */
static const char *plain_run(const char *s, const char *end) {
#if defined(__GNUC__)
  typedef signed char v16 __attribute__((vector_size(16)));
  while (end - s >= 16) {
    v16 v;
    memcpy(&v, s, 16);
    /* signed: bytes >= 0x80 are negative, so "< 0x20" catches them too */
    v16 bad = (v < 0x20) | (v == '"') | (v == '\\');
    uint64_t lo, hi;
    memcpy(&lo, &bad, 8);
    memcpy(&hi, (const char *)&bad + 8, 8);
    if (lo | hi) break;
    s += 16;
  }
#endif
  while (end - s >= 8 && plain8(s)) s += 8;
  return s;
}

/* Parses a string at p->s (the opening quote); returns its decoded bytes. */
static const char *parse_string(struct parser *p, size_t *out_len) {
  p->s++; /* opening quote */
  /* Decoded text is never longer than the source text. */
  const char *q = p->s;
  while (q < p->end && *q != '"') {
    const char *run = plain_run(q, p->end);
    q = run != q ? run : q + ((*q == '\\' && q + 1 < p->end) ? 2 : 1);
  }
  if (q >= p->end) {
    p->err = "unterminated string";
    return NULL;
  }
  char *o = arena_alloc(p->a, (size_t)(q - p->s) + 1);
  if (o == NULL) {
    p->err = "document too large";
    return NULL;
  }
  size_t n = 0;
  while (*p->s != '"') {
    const char *run = plain_run(p->s, p->end); /* plain ASCII: one copy */
    if (run != p->s) {
      memcpy(o + n, p->s, (size_t)(run - p->s));
      n += (size_t)(run - p->s);
      p->s = run;
      continue;
    }
    unsigned char c = (unsigned char)*p->s;
    if (c < 0x20) {
      p->err = "control character in string";
      return NULL;
    }
    if (c != '\\') {
      size_t k = utf8_seq((const unsigned char *)p->s, (const unsigned char *)p->end);
      if (k == 0) {
        p->err = "invalid UTF-8 in string";
        return NULL;
      }
      memcpy(o + n, p->s, k);
      n += k;
      p->s += k;
      continue;
    }
    p->s++;
    char e = *p->s++;
    switch (e) {
      case '"': o[n++] = '"'; break;
      case '\\': o[n++] = '\\'; break;
      case '/': o[n++] = '/'; break;
      case 'b': o[n++] = '\b'; break;
      case 'f': o[n++] = '\f'; break;
      case 'n': o[n++] = '\n'; break;
      case 'r': o[n++] = '\r'; break;
      case 't': o[n++] = '\t'; break;
      case 'u': {
        unsigned cp, lo;
        if (p->end - p->s < 4 || hex4(p->s, &cp) != 0) {
          p->err = "bad \\u escape";
          return NULL;
        }
        p->s += 4;
        if (cp >= 0xd800 && cp <= 0xdbff) {
          if (p->end - p->s < 6 || p->s[0] != '\\' || p->s[1] != 'u' || hex4(p->s + 2, &lo) != 0 ||
              lo < 0xdc00 || lo > 0xdfff) {
            p->err = "unpaired surrogate";
            return NULL;
          }
          p->s += 6;
          cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
          p->err = "unpaired surrogate";
          return NULL;
        }
        n += put_utf8(o + n, cp); /* \uXXXX (6 bytes) always encodes in <= 4 */
        break;
      }
      default:
        p->err = "bad escape";
        return NULL;
    }
  }
  p->s++; /* closing quote */
  o[n] = '\0';
  *out_len = n;
  return o;
}

static struct json_value *parse_number(struct parser *p) {
  const char *s = p->s;
  if (s < p->end && *s == '-') s++;
  if (s >= p->end) goto bad;
  if (*s == '0') {
    s++;
  } else if (*s >= '1' && *s <= '9') {
    while (s < p->end && *s >= '0' && *s <= '9') s++;
  } else {
    goto bad;
  }
  if (s < p->end && *s == '.') {
    s++;
    if (s >= p->end || *s < '0' || *s > '9') goto bad;
    while (s < p->end && *s >= '0' && *s <= '9') s++;
  }
  if (s < p->end && (*s == 'e' || *s == 'E')) {
    s++;
    if (s < p->end && (*s == '+' || *s == '-')) s++;
    if (s >= p->end || *s < '0' || *s > '9') goto bad;
    while (s < p->end && *s >= '0' && *s <= '9') s++;
  }
  char tmp[64];
  size_t n = (size_t)(s - p->s);
  if (n >= sizeof tmp) {
    p->err = "number too long";
    return NULL;
  }
  memcpy(tmp, p->s, n);
  tmp[n] = '\0';
  struct json_value *v = new_value(p, JSON_NUMBER);
  if (v == NULL) return NULL;
  v->num = strtod(tmp, NULL);
  if (!isfinite(v->num)) {
    p->err = "number out of range";
    return NULL;
  }
  p->s = s;
  return v;
bad:
  p->err = "bad number";
  return NULL;
}

static int expect_word(struct parser *p, const char *w) {
  size_t n = strlen(w);
  if ((size_t)(p->end - p->s) < n || memcmp(p->s, w, n) != 0) {
    p->err = "unexpected character";
    return -1;
  }
  p->s += n;
  return 0;
}

/* Collects items into a temporary array that doubles, then copies them into
 * the arena; the temporary is freed on every path. */
struct vec {
  void *items;
  size_t n, cap, size;
};

static int vec_push(struct vec *v, const void *item) {
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 8;
    void *p = realloc(v->items, cap * v->size);
    if (p == NULL) return -1;
    v->items = p;
    v->cap = cap;
  }
  memcpy((char *)v->items + v->n * v->size, item, v->size);
  v->n++;
  return 0;
}

static struct json_value *parse_container(struct parser *p, bool object) {
  if (++p->depth > JSON_MAX_DEPTH) {
    p->err = "nesting too deep";
    return NULL;
  }
  p->s++; /* [ or { */
  struct json_value *v = new_value(p, object ? JSON_OBJECT : JSON_ARRAY);
  struct vec vec = {NULL, 0, 0, object ? sizeof(struct json_member) : sizeof(struct json_value *)};
  if (v == NULL) goto fail;
  skip_ws(p);
  char close = object ? '}' : ']';
  if (p->s < p->end && *p->s == close) {
    p->s++;
    goto done;
  }
  for (;;) {
    skip_ws(p);
    struct json_member m = {NULL, 0, NULL};
    if (object) {
      if (p->s >= p->end || *p->s != '"') {
        p->err = "expected a string key";
        goto fail;
      }
      m.key = parse_string(p, &m.key_len);
      if (m.key == NULL) goto fail;
      skip_ws(p);
      if (p->s >= p->end || *p->s != ':') {
        p->err = "expected ':'";
        goto fail;
      }
      p->s++;
    }
    struct json_value *item = parse_value(p);
    if (item == NULL) goto fail;
    m.value = item;
    if (vec_push(&vec, object ? (const void *)&m : (const void *)&item) != 0) {
      p->err = "out of memory";
      goto fail;
    }
    skip_ws(p);
    if (p->s < p->end && *p->s == ',') {
      p->s++;
      continue;
    }
    if (p->s < p->end && *p->s == close) {
      p->s++;
      break;
    }
    p->err = object ? "expected ',' or '}'" : "expected ',' or ']'";
    goto fail;
  }
done:
  if (vec.n) {
    void *dst = arena_alloc(p->a, vec.n * vec.size);
    if (dst == NULL) {
      p->err = "document too large";
      goto fail;
    }
    memcpy(dst, vec.items, vec.n * vec.size);
    if (object) v->members = dst;
    else v->items = dst;
  }
  v->len = vec.n;
  free(vec.items);
  p->depth--;
  return v;
fail:
  free(vec.items);
  return NULL;
}

static struct json_value *parse_value(struct parser *p) {
  skip_ws(p);
  if (p->s >= p->end) {
    p->err = "unexpected end";
    return NULL;
  }
  struct json_value *v;
  switch (*p->s) {
    case '{': return parse_container(p, true);
    case '[': return parse_container(p, false);
    case '"':
      v = new_value(p, JSON_STRING);
      if (v == NULL) return NULL;
      v->str = parse_string(p, &v->len);
      return v->str ? v : NULL;
    case 't':
    case 'f':
      v = new_value(p, JSON_BOOL);
      if (v == NULL) return NULL;
      v->b = *p->s == 't';
      return expect_word(p, v->b ? "true" : "false") == 0 ? v : NULL;
    case 'n':
      v = new_value(p, JSON_NULL);
      if (v == NULL) return NULL;
      return expect_word(p, "null") == 0 ? v : NULL;
    default:
      return parse_number(p);
  }
}

int json_parse(const char *text, size_t len, struct json_doc *doc, char *err, size_t errcap) {
  doc->root = NULL;
  /* Each value needs at least one input byte (a value, or a separator for
   * members), plus its string bytes: bounded by a multiple of len. */
  struct arena *a = malloc(sizeof *a);
  size_t cap = len * (sizeof(struct json_value) + sizeof(struct json_member)) / 2 + 256;
  if (a) a->base = malloc(cap);
  if (a == NULL || a->base == NULL) {
    free(a);
    snprintf(err, errcap, "out of memory");
    return -1;
  }
  a->used = 0;
  a->cap = cap;
  struct parser p = {text, text + len, text, a, NULL, 0};
  struct json_value *root = parse_value(&p);
  if (root) {
    skip_ws(&p);
    if (p.s != p.end) {
      p.err = "trailing characters";
      root = NULL;
    }
  }
  if (root == NULL) {
    snprintf(err, errcap, "offset %zu: %s", (size_t)(p.s - p.start), p.err ? p.err : "error");
    free(a->base);
    free(a);
    return -1;
  }
  doc->root = root;
  doc->arena = a;
  return 0;
}

void json_free(struct json_doc *doc) {
  struct arena *a = doc->arena;
  if (a) {
    free(a->base);
    free(a);
  }
  doc->arena = NULL;
  doc->root = NULL;
}

const struct json_value *json_get(const struct json_value *v, const char *key) {
  if (v == NULL || v->type != JSON_OBJECT) return NULL;
  size_t kl = strlen(key);
  for (size_t i = 0; i < v->len; i++)
    if (v->members[i].key_len == kl && memcmp(v->members[i].key, key, kl) == 0)
      return v->members[i].value;
  return NULL;
}

const struct json_value *json_get_string(const struct json_value *v, const char *key) {
  const struct json_value *m = json_get(v, key);
  return (m && m->type == JSON_STRING) ? m : NULL;
}

const struct json_value *json_get_number(const struct json_value *v, const char *key) {
  const struct json_value *m = json_get(v, key);
  return (m && m->type == JSON_NUMBER) ? m : NULL;
}

bool json_get_int(const struct json_value *v, const char *key, long long min, long long max,
                  long long *out) {
  const struct json_value *m = json_get_number(v, key);
  if (m == NULL || m->num != floor(m->num) || m->num < (double)min || m->num > (double)max)
    return false;
  *out = (long long)m->num;
  return true;
}

void json_write_string(struct buf *b, const char *s, size_t len) {
  buf_append(b, "\"", 1);
  size_t run = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c != '"' && c != '\\') {
      run++;
      continue;
    }
    buf_append(b, s + i - run, run);
    run = 0;
    switch (c) {
      case '"': buf_append(b, "\\\"", 2); break;
      case '\\': buf_append(b, "\\\\", 2); break;
      case '\b': buf_append(b, "\\b", 2); break;
      case '\f': buf_append(b, "\\f", 2); break;
      case '\n': buf_append(b, "\\n", 2); break;
      case '\r': buf_append(b, "\\r", 2); break;
      case '\t': buf_append(b, "\\t", 2); break;
      default: buf_appendf(b, "\\u%04x", c);
    }
  }
  buf_append(b, s + len - run, run);
  buf_append(b, "\"", 1);
}

void json_write_value(struct buf *b, const struct json_value *v) {
  switch (v->type) {
    case JSON_NULL: buf_append(b, "null", 4); break;
    case JSON_BOOL: buf_append(b, v->b ? "true" : "false", v->b ? 4 : 5); break;
    case JSON_NUMBER:
      if (v->num == floor(v->num) && fabs(v->num) < 9007199254740992.0)
        buf_appendf(b, "%.0f", v->num);
      else
        buf_appendf(b, "%.17g", v->num);
      break;
    case JSON_STRING: json_write_string(b, v->str, v->len); break;
    case JSON_ARRAY:
      buf_append(b, "[", 1);
      for (size_t i = 0; i < v->len; i++) {
        if (i) buf_append(b, ",", 1);
        json_write_value(b, v->items[i]);
      }
      buf_append(b, "]", 1);
      break;
    case JSON_OBJECT:
      buf_append(b, "{", 1);
      for (size_t i = 0; i < v->len; i++) {
        if (i) buf_append(b, ",", 1);
        json_write_string(b, v->members[i].key, v->members[i].key_len);
        buf_append(b, ":", 1);
        json_write_value(b, v->members[i].value);
      }
      buf_append(b, "}", 1);
      break;
  }
}

/* ---- validation without a tree ---------------------------------------- */

/* Skips a string starting at its opening quote; returns the position after
 * the closing quote, or NULL. */
static const char *skip_string(const char *s, const char *end) {
  s = plain_run(s + 1, end);
  while (s < end) {
    unsigned char c = (unsigned char)*s;
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') { /* plain ASCII: most of it */
      s++;
      continue;
    }
    if (c == '"') return s + 1;
    if (c < 0x20) return NULL;
    if (c == '\\') {
      if (end - s < 2) return NULL;
      char e = s[1];
      if (e == 'u') {
        unsigned cp, lo;
        if (end - s < 6 || hex4(s + 2, &cp) != 0) return NULL;
        s += 6;
        if (cp >= 0xd800 && cp <= 0xdbff) {
          if (end - s < 6 || s[0] != '\\' || s[1] != 'u' || hex4(s + 2, &lo) != 0 || lo < 0xdc00 ||
              lo > 0xdfff)
            return NULL;
          s += 6;
        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
          return NULL;
        }
        continue;
      }
      if (!strchr("\"\\/bfnrt", e) || e == '\0') return NULL;
      s += 2;
      continue;
    }
    size_t k = utf8_seq((const unsigned char *)s, (const unsigned char *)end);
    if (k == 0) return NULL;
    s += k;
  }
  return NULL;
}

static const char *skip_number(const char *s, const char *end) {
  if (s < end && *s == '-') s++;
  if (s >= end) return NULL;
  if (*s == '0') s++;
  else if (*s >= '1' && *s <= '9') while (s < end && *s >= '0' && *s <= '9') s++;
  else return NULL;
  if (s < end && *s == '.') {
    s++;
    if (s >= end || *s < '0' || *s > '9') return NULL;
    while (s < end && *s >= '0' && *s <= '9') s++;
  }
  if (s < end && (*s == 'e' || *s == 'E')) {
    s++;
    if (s < end && (*s == '+' || *s == '-')) s++;
    if (s >= end || *s < '0' || *s > '9') return NULL;
    while (s < end && *s >= '0' && *s <= '9') s++;
  }
  return s;
}

static const char *skip_ws_p(const char *s, const char *end) {
  while (s < end && (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')) s++;
  return s;
}

/* Top-level keys json_object_keys looks for. */
struct keyprobe {
  const char *const *keys;
  int n;
  long found;
};

/* The key whose string starts at s (its quote) and ends before e. */
static void probe_key(struct keyprobe *kp, const char *s, const char *e) {
  const char *k = s + 1;
  size_t len = (size_t)(e - 1 - k);
  if (memchr(k, '\\', len)) { /* written with escapes: it could be any of them */
    kp->found |= JSON_KEYS_ESCAPED;
    return;
  }
  for (int i = 0; i < kp->n; i++)
    if (strlen(kp->keys[i]) == len && memcmp(kp->keys[i], k, len) == 0) kp->found |= 1L << i;
}

/* A key at s (its opening quote): skipped, and probed when it is one of the
 * top-level object's. */
static const char *skip_key(const char *s, const char *end, int depth, struct keyprobe *kp) {
  if (s >= end || *s != '"') return NULL;
  const char *e = skip_string(s, end);
  if (e && kp && depth == 1) probe_key(kp, s, e);
  return e;
}

/* An explicit stack of open containers replaces recursion: '{' or '['. */
static bool validate(const char *text, size_t len, struct keyprobe *kp) {
  const char *s = text, *end = text + len;
  char stack[JSON_MAX_DEPTH];
  int depth = 0;
  s = skip_ws_p(s, end);
  for (;;) {
    /* expect a value */
    if (s >= end) return false;
    switch (*s) {
      case '{':
      case '[': {
        if (depth == JSON_MAX_DEPTH) return false;
        char open = *s;
        stack[depth++] = open;
        s = skip_ws_p(s + 1, end);
        if (s < end && *s == (open == '{' ? '}' : ']')) {
          depth--;
          s++;
          goto after_value;
        }
        if (open == '{') {
          if ((s = skip_key(s, end, depth, kp)) == NULL) return false;
          s = skip_ws_p(s, end);
          if (s >= end || *s != ':') return false;
          s = skip_ws_p(s + 1, end);
        }
        continue;
      }
      case '"': s = skip_string(s, end); break;
      case 't': s = (end - s >= 4 && memcmp(s, "true", 4) == 0) ? s + 4 : NULL; break;
      case 'f': s = (end - s >= 5 && memcmp(s, "false", 5) == 0) ? s + 5 : NULL; break;
      case 'n': s = (end - s >= 4 && memcmp(s, "null", 4) == 0) ? s + 4 : NULL; break;
      default: s = skip_number(s, end); break;
    }
    if (s == NULL) return false;
  after_value:
    s = skip_ws_p(s, end);
    while (depth > 0) {
      if (s >= end) return false;
      char open = stack[depth - 1];
      if (*s == ',') {
        s = skip_ws_p(s + 1, end);
        if (open == '{') {
          if ((s = skip_key(s, end, depth, kp)) == NULL) return false;
          s = skip_ws_p(s, end);
          if (s >= end || *s != ':') return false;
          s = skip_ws_p(s + 1, end);
        }
        break; /* next value */
      }
      if (*s == (open == '{' ? '}' : ']')) {
        depth--;
        s = skip_ws_p(s + 1, end);
        continue;
      }
      return false;
    }
    if (depth == 0) return s == end;
  }
}

bool json_valid(const char *text, size_t len) { return validate(text, len, NULL); }

bool json_object_valid(const char *text, size_t len) {
  const char *s = skip_ws_p(text, text + len);
  return s < text + len && *s == '{' && json_valid(text, len);
}

long json_object_keys(const char *text, size_t len, const char *const keys[], int n) {
  const char *s = skip_ws_p(text, text + len);
  struct keyprobe kp = {keys, n < JSON_KEYS_MAX ? n : JSON_KEYS_MAX, 0};
  if (s >= text + len || *s != '{' || !validate(text, len, &kp)) return -1;
  return kp.found;
}
