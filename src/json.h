/* json: a strict, bounded JSON reader (RFC 8259) and string writer for the
 * payloads C itself must read (handshake, ping, peer exchange).
 *
 * The reader builds a tree in one arena sized from the input, limits nesting
 * depth, rejects invalid UTF-8, duplicate-free access is by first match.
 * Must not: be used on the relay fast path; relayed payloads stay opaque.
 */
#ifndef BT2C_JSON_H
#define BT2C_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "buf.h"

#define JSON_MAX_DEPTH 32

enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json_value;
struct json_member {
  const char *key;
  size_t key_len;
  struct json_value *value;
};

struct json_value {
  enum json_type type;
  bool b;
  double num;
  const char *str; /* NUL-terminated; may contain NUL if the JSON had \u0000 */
  size_t len;      /* string length, or number of items/members */
  struct json_value **items;
  struct json_member *members;
};

struct json_doc {
  struct json_value *root;
  void *arena;
};

/* Parses exactly one JSON value (surrounding whitespace allowed). Returns 0,
 * or -1 with "offset N: reason" in err. */
int json_parse(const char *text, size_t len, struct json_doc *doc, char *err, size_t errcap);
void json_free(struct json_doc *doc);

/* Member `key` of an object, or NULL (also when v is not an object). */
const struct json_value *json_get(const struct json_value *v, const char *key);
/* Typed accessors: return the member if it exists with that type, else NULL. */
const struct json_value *json_get_string(const struct json_value *v, const char *key);
const struct json_value *json_get_number(const struct json_value *v, const char *key);
/* True (and *out set) if the member is a number that is an integer in range. */
bool json_get_int(const struct json_value *v, const char *key, long long min, long long max,
                  long long *out);

/* Appends s as a JSON string literal (quotes included), escaped as RFC 8785
 * canonical JSON escapes it: \" \\ \b \f \n \r \t, other controls as \u00xx. */
void json_write_string(struct buf *b, const char *s, size_t len);
/* Appends v as compact JSON. */
void json_write_value(struct buf *b, const struct json_value *v);

/* True if text is exactly one JSON value: the grammar and UTF-8 rules of
 * json_parse (number ranges are not checked), in one pass, no allocation. */
bool json_valid(const char *text, size_t len);
/* The same, and the value is an object. */
bool json_object_valid(const char *text, size_t len);

/* Validates like json_object_valid and says which of keys[0..n) the
 * top-level object has, without building a tree: bit i is set when keys[i]
 * is one of its keys (n <= JSON_KEYS_MAX; keys must not need escaping), and
 * JSON_KEYS_ESCAPED when a top-level key is written with escapes (it may be
 * one of them: parse to know). -1 if text is not a valid JSON object. */
#define JSON_KEYS_MAX 30
#define JSON_KEYS_ESCAPED (1L << 30)
long json_object_keys(const char *text, size_t len, const char *const keys[], int n);

#endif
