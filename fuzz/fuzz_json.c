/* Fuzz target: the JSON reader and validator (json.c). The validator and the
 * reader must agree (up to number range), and what the reader accepts must
 * survive a write/read round trip. json_object_keys must agree with both:
 * valid exactly when json_object_valid is, and its key bits those of the
 * parsed tree unless a key was escaped. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct json_doc doc;
  char err[128];
  bool valid = json_valid((const char *)data, size);
  int rc = json_parse((const char *)data, size, &doc, err, sizeof err);
  static const char *const keys[] = {"a", "hash", ""};
  long k = json_object_keys((const char *)data, size, keys, 3);
  if ((k >= 0) != json_object_valid((const char *)data, size)) abort();
  if (rc == 0) {
    if (!valid) abort();
    if (k >= 0 && !(k & JSON_KEYS_ESCAPED))
      for (int i = 0; i < 3; i++)
        if (((k >> i) & 1) != (json_get(doc.root, keys[i]) != NULL)) abort();
    struct buf b = {0};
    json_write_value(&b, doc.root);
    struct json_doc again;
    if (json_parse(b.data, b.len, &again, err, sizeof err) != 0) abort();
    struct buf b2 = {0};
    json_write_value(&b2, again.root);
    if (b.len != b2.len || memcmp(b.data, b2.data, b.len) != 0) abort();
    buf_free(&b);
    buf_free(&b2);
    json_free(&again);
    json_free(&doc);
  } else if (valid && strstr(err, "out of range") == NULL && strstr(err, "too long") == NULL) {
    abort(); /* the validator accepted what the reader refused for another reason */
  }
  return 0;
}
