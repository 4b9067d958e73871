/* chain_jcs: see chain_jcs.h. */
#include "chain_jcs.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Walks a UTF-8 string as UTF-16 code units: JCS orders member names by
 * them, which differs from byte order only for characters above U+FFFF. */
struct u16it {
  const unsigned char *s;
  size_t len, i;
  unsigned pending;
};

static int u16_next(struct u16it *it) {
  if (it->pending) {
    unsigned u = it->pending;
    it->pending = 0;
    return (int)u;
  }
  if (it->i >= it->len) return -1;
  const unsigned char *s = it->s + it->i;
  size_t left = it->len - it->i;
  unsigned cp = s[0];
  size_t n = 1;
  if (cp >= 0xf0 && left >= 4) {
    cp = (cp & 0x07u) << 18 | (s[1] & 0x3fu) << 12 | (s[2] & 0x3fu) << 6 | (s[3] & 0x3fu);
    n = 4;
  } else if (cp >= 0xe0 && left >= 3) {
    cp = (cp & 0x0fu) << 12 | (s[1] & 0x3fu) << 6 | (s[2] & 0x3fu);
    n = 3;
  } else if (cp >= 0xc0 && left >= 2) {
    cp = (cp & 0x1fu) << 6 | (s[1] & 0x3fu);
    n = 2;
  }
  it->i += n;
  if (cp >= 0x10000) {
    cp -= 0x10000;
    it->pending = 0xdc00 + (cp & 0x3ff);
    return (int)(0xd800 + (cp >> 10));
  }
  return (int)cp;
}

static int key_cmp(const struct json_member *a, const struct json_member *b) {
  struct u16it x = {(const unsigned char *)a->key, a->key_len, 0, 0};
  struct u16it y = {(const unsigned char *)b->key, b->key_len, 0, 0};
  for (;;) {
    int u = u16_next(&x), v = u16_next(&y);
    if (u != v) return u < v ? -1 : 1;
    if (u < 0) return 0;
  }
}

static int member_cmp(const void *a, const void *b) { return key_cmp(a, b); }

/* The shortest decimal digits that read back as x (x > 0): writes them to
 * digits (no dot, no trailing zeros) and returns the decimal exponent n with
 * x = 0.d1d2...dk * 10^n, as ECMAScript's Number::toString defines them.
 * printf's correctly rounded %.*e finds the nearest decimal of each length;
 * next to a power of two the nearest may miss while a neighbour reads back,
 * so the neighbours are tried too. */
static int shortest_digits(double x, char digits[24]) {
  char tmp[48];
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, x);
    if (strtod(tmp, NULL) == x) break;
    char *e = strchr(tmp, 'e');
    unsigned long long m = 0;
    for (char *p = tmp; p < e; p++)
      if (*p >= '0' && *p <= '9') m = m * 10 + (unsigned long long)(*p - '0');
    int scale = atoi(e + 1) - (prec - 1);
    for (int delta = -1; delta <= 1; delta += 2) {
      unsigned long long mm = m + (unsigned long long)(long long)delta;
      char cand[48];
      if (mm == 0) continue;
      snprintf(cand, sizeof cand, "%llue%d", mm, scale);
      if (strtod(cand, NULL) != x) continue;
      int k = snprintf(digits, 24, "%llu", mm);
      int n = scale + k;
      while (k > 1 && digits[k - 1] == '0') k--;
      digits[k] = '\0';
      return n;
    }
  }
  char *e = strchr(tmp, 'e');
  int exp10 = atoi(e + 1);
  int k = 0;
  for (char *p = tmp; p < e; p++)
    if (*p >= '0' && *p <= '9') digits[k++] = *p;
  while (k > 1 && digits[k - 1] == '0') k--;
  digits[k] = '\0';
  return exp10 + 1;
}

void jcs_number(struct buf *b, double x) {
  if (x == 0 || !isfinite(x)) { /* -0 is 0; JSON has no NaN or infinity */
    buf_append(b, "0", 1);
    return;
  }
  if (x < 0) {
    buf_append(b, "-", 1);
    x = -x;
  }
  char d[24];
  int n = shortest_digits(x, d);
  int k = (int)strlen(d);
  if (k <= n && n <= 21) {
    buf_append(b, d, (size_t)k);
    for (int i = k; i < n; i++) buf_append(b, "0", 1);
  } else if (0 < n && n <= 21) {
    buf_append(b, d, (size_t)n);
    buf_append(b, ".", 1);
    buf_append(b, d + n, (size_t)(k - n));
  } else if (-6 < n && n <= 0) {
    buf_append(b, "0.", 2);
    for (int i = 0; i < -n; i++) buf_append(b, "0", 1);
    buf_append(b, d, (size_t)k);
  } else {
    buf_append(b, d, 1);
    if (k > 1) {
      buf_append(b, ".", 1);
      buf_append(b, d + 1, (size_t)(k - 1));
    }
    buf_appendf(b, "e%c%d", n - 1 >= 0 ? '+' : '-', abs(n - 1));
  }
}

int jcs_value(struct buf *b, const struct json_value *v, const char *skip,
              const char *override_key, const char *override_json, char *err,
              size_t errcap) {
  switch (v->type) {
    case JSON_NULL: buf_append(b, "null", 4); return 0;
    case JSON_BOOL: buf_append(b, v->b ? "true" : "false", v->b ? 4 : 5); return 0;
    case JSON_NUMBER: jcs_number(b, v->num); return 0;
    case JSON_STRING: json_write_string(b, v->str, v->len); return 0;
    case JSON_ARRAY:
      buf_append(b, "[", 1);
      for (size_t i = 0; i < v->len; i++) {
        if (i) buf_append(b, ",", 1);
        if (jcs_value(b, v->items[i], NULL, NULL, NULL, err, errcap) != 0) return -1;
      }
      buf_append(b, "]", 1);
      return 0;
    case JSON_OBJECT: break;
  }
  struct json_member *m = NULL;
  if (v->len) {
    m = malloc(v->len * sizeof *m);
    if (m == NULL) abort();
    memcpy(m, v->members, v->len * sizeof *m);
    qsort(m, v->len, sizeof *m, member_cmp);
  }
  int rc = 0;
  bool first = true;
  buf_append(b, "{", 1);
  for (size_t i = 0; i < v->len && rc == 0; i++) {
    if (i && key_cmp(&m[i - 1], &m[i]) == 0) {
      snprintf(err, errcap, "duplicate member \"%.*s\"",
               (int)(m[i].key_len > 40 ? 40 : m[i].key_len), m[i].key);
      rc = -1;
      break;
    }
    bool named = false;
    if (skip && m[i].key_len == strlen(skip) && memcmp(m[i].key, skip, m[i].key_len) == 0) continue;
    if (override_key && m[i].key_len == strlen(override_key) &&
        memcmp(m[i].key, override_key, m[i].key_len) == 0)
      named = true;
    if (!first) buf_append(b, ",", 1);
    first = false;
    json_write_string(b, m[i].key, m[i].key_len);
    buf_append(b, ":", 1);
    if (named) buf_append(b, override_json, strlen(override_json));
    else rc = jcs_value(b, m[i].value, NULL, NULL, NULL, err, errcap);
  }
  buf_append(b, "}", 1);
  free(m);
  return rc;
}

int jcs_canonical(struct buf *out, const struct json_value *v, const char *skip, char *err,
                  size_t errcap) {
  return jcs_value(out, v, skip, NULL, NULL, err, errcap);
}
