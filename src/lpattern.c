/* lpattern: see lpattern.h. */
#include "lpattern.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PATTERN_MAX_LEN 1024
#define PATTERN_LOOKAHEAD 64
/*
 * C pattern matching runs no VM instructions, so the count hook cannot stop
 * it; instead the worst case is estimated before matching and refused above
 * LPATTERN_LIMIT. With n = subject length + 1, walking the pattern
 * left to right with V = how often the current item can be reached (1 at
 * the start):
 *   - a plain single-character item costs V;
 *   - x? costs V and doubles V (two branches);
 *   - x*, x+, x- cost V*n (the scan). They multiply V by n (every length is
 *     a branch) unless backtracking is cheap: the rest of the pattern must
 *     either always match, or begin with characters x cannot match, so each
 *     shorter length fails at once;
 *   - %bxy and %1..%9 cost V*n; captures, %f and a final $ cost V;
 * and an unanchored search tries n start positions. So "(%d+)%.(%d+)" is
 * about 2n^2 while ".-.-.-.-b" is about n^5. Patterns longer than
 * PATTERN_MAX_LEN are refused outright.
 */

struct cset {
  uint64_t w[4];
};

static bool class_match(int c, int cl) {
  bool r;
  switch (tolower(cl)) {
    case 'a': r = isalpha(c); break;
    case 'c': r = iscntrl(c); break;
    case 'd': r = isdigit(c); break;
    case 'g': r = isgraph(c); break;
    case 'l': r = islower(c); break;
    case 'p': r = ispunct(c); break;
    case 's': r = isspace(c); break;
    case 'u': r = isupper(c); break;
    case 'w': r = isalnum(c); break;
    case 'x': r = isxdigit(c); break;
    default: return cl == c;
  }
  return isupper(cl) ? !r : r;
}

/* End of the single-character class starting at p (the lstrlib grammar). */
static const char *class_end(const char *p, const char *end) {
  if (*p == '%') return p + 2 <= end ? p + 2 : end;
  if (*p != '[') return p + 1;
  p++;
  if (p < end && *p == '^') p++;
  do { /* the first character of a set may be ']' */
    if (p >= end) return end;
    if (*p++ == '%' && p < end) p++;
  } while (p < end && *p != ']');
  return p < end ? p + 1 : end;
}

static bool single_match(int c, const char *p, const char *ep) {
  switch (*p) {
    case '.': return true;
    case '%': return p + 1 < ep && class_match(c, (unsigned char)p[1]);
    case '[': {
      const char *q = p + 1, *ec = ep - 1; /* ec: the closing ']' */
      bool neg = q < ec && *q == '^';
      if (neg) q++;
      for (; q < ec; q++) {
        if (*q == '%' && q + 1 < ec) {
          q++;
          if (class_match(c, (unsigned char)*q)) return !neg;
        } else if (q + 2 < ec && q[1] == '-') {
          if ((unsigned char)q[0] <= c && c <= (unsigned char)q[2]) return !neg;
          q += 2;
        } else if ((unsigned char)*q == c) {
          return !neg;
        }
      }
      return neg;
    }
    default: return (unsigned char)*p == c;
  }
}

static void cset_of(struct cset *s, const char *p, const char *ep) {
  memset(s, 0, sizeof *s);
  for (int c = 0; c < 256; c++)
    if (single_match(c, p, ep)) s->w[c >> 6] |= (uint64_t)1 << (c & 63);
}

static bool cset_disjoint(const struct cset *a, const struct cset *b) {
  for (int i = 0; i < 4; i++)
    if (a->w[i] & b->w[i]) return false;
  return true;
}

static bool cset_full(const struct cset *a) {
  for (int i = 0; i < 4; i++)
    if (a->w[i] != UINT64_MAX) return false;
  return true;
}

/* The pattern as a list of items, each with its character set computed
 * once, so the lookahead below costs a few word operations per item. */
enum pkind { PK_ZERO, PK_FRONTIER, PK_END, PK_CLASS, PK_BALANCE, PK_BACKREF };

struct pitem {
  enum pkind kind;
  char quant; /* '*', '+', '-', '?' or 0, for PK_CLASS */
  bool full;  /* PK_CLASS matching every byte */
  struct cset set;
};

static size_t parse_pattern(const char *p, const char *end, struct pitem *items) {
  size_t n = 0;
  while (p < end) {
    struct pitem *it = &items[n++];
    memset(it, 0, sizeof *it);
    if (*p == '(' || *p == ')') {
      it->kind = PK_ZERO;
      p++;
    } else if (*p == '$' && p + 1 == end) {
      it->kind = PK_END;
      p++;
    } else if (*p == '%' && p + 1 < end && p[1] == 'b') {
      it->kind = PK_BALANCE;
      if (p + 2 < end) {
        unsigned char c = (unsigned char)p[2];
        it->set.w[c >> 6] |= (uint64_t)1 << (c & 63);
      }
      p = p + 4 <= end ? p + 4 : end;
    } else if (*p == '%' && p + 1 < end && p[1] == 'f') {
      it->kind = PK_FRONTIER;
      p += 2;
      if (p < end && *p == '[') p = class_end(p, end);
    } else if (*p == '%' && p + 1 < end && isdigit((unsigned char)p[1])) {
      it->kind = PK_BACKREF;
      p += 2;
    } else {
      const char *ep = class_end(p, end);
      it->kind = PK_CLASS;
      cset_of(&it->set, p, ep);
      it->full = cset_full(&it->set);
      it->quant = ep < end && strchr("*+-?", *ep) ? *ep : 0;
      p = it->quant ? ep + 1 : ep;
    }
  }
  return n;
}

enum rest { REST_UNKNOWN, REST_ALWAYS, REST_FIRST };

/* What the items from i on need first: REST_ALWAYS when they match at any
 * position, REST_FIRST with the bytes that can begin a match, or
 * REST_UNKNOWN when the walk gives up (back references, long lookahead). */
static enum rest rest_first(const struct pitem *items, size_t i, size_t n, struct cset *first) {
  bool any_before = false, frontier = false;
  memset(first, 0, sizeof *first);
  for (size_t k = 0; k < PATTERN_LOOKAHEAD; k++, i++) {
    if (i >= n) return frontier ? REST_UNKNOWN : REST_ALWAYS;
    const struct pitem *it = &items[i];
    switch (it->kind) {
      case PK_ZERO: continue;
      case PK_FRONTIER: frontier = true; continue;
      case PK_END: return any_before && !frontier ? REST_ALWAYS : REST_FIRST;
      case PK_BACKREF: return REST_UNKNOWN;
      case PK_BALANCE: *first = it->set; return REST_FIRST;
      case PK_CLASS:
        for (int w = 0; w < 4; w++) first->w[w] |= it->set.w[w];
        if (it->quant == '*' || it->quant == '-' || it->quant == '?') {
          if (it->quant != '?' && it->full) any_before = true;
          continue;
        }
        return REST_FIRST;
    }
  }
  return REST_UNKNOWN;
}

static bool has_specials(const char *p, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (p[i] != '\0' && strchr("^$*+?.([%-", p[i])) return true;
  return false;
}

double lpattern_cost(size_t len, const char *p, size_t plen, bool honour_anchor) {
  double n = (double)len + 1;
  if (!has_specials(p, plen)) return n;
  if (plen > PATTERN_MAX_LEN) return INFINITY;
  bool anchored = honour_anchor && plen > 0 && *p == '^';
  if (anchored) p++, plen--;
  struct pitem *items = malloc((plen + 1) * sizeof *items);
  if (items == NULL) return INFINITY;
  size_t ni = parse_pattern(p, p + plen, items);
  double v = 1, cost = 0;
  for (size_t i = 0; i < ni; i++) {
    const struct pitem *it = &items[i];
    if (it->kind == PK_BALANCE || it->kind == PK_BACKREF) {
      cost += v * n;
    } else if (it->kind != PK_CLASS || it->quant == 0) {
      cost += v;
    } else if (it->quant == '?') {
      cost += v;
      v *= 2;
    } else {
      struct cset first;
      enum rest r = rest_first(items, i + 1, ni, &first);
      cost += v * n;
      if (!(r == REST_ALWAYS || (r == REST_FIRST && cset_disjoint(&it->set, &first)))) v *= n;
    }
  }
  free(items);
  return (anchored ? 1 : n) * cost;
}

