/* Fuzz target: the WebSocket client codec (wsclient.c). The same bytes fed
 * at once and in pieces (split where the input's first byte says) must give
 * the same events and the same outcome, both for the upgrade response and
 * for the frame stream; data pieces never point outside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "wsclient.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct trace {
  struct buf b;
  const uint8_t *lo, *hi; /* the chunk being parsed */
};

static int on_data(void *ud, const uint8_t *p, size_t n, bool first, bool binary,
                   uint64_t frame_left, bool last) {
  struct trace *t = ud;
  if (n && (p < t->lo || p + n > t->hi)) abort(); /* a piece outside the input */
  /* pieces may be cut differently: record bytes, and the flags only where
   * they do not depend on the cut (start and end of a message) */
  if (first) buf_append(&t->b, binary ? "<B" : "<T", 2);
  buf_append(&t->b, p, n);
  if (last) buf_append(&t->b, ">", 1);
  (void)frame_left;
  return 0;
}

static int on_control(void *ud, unsigned opcode, const uint8_t *p, size_t n) {
  struct trace *t = ud;
  char tag[4] = {'[', (char)('0' + opcode), ':', 0};
  buf_append(&t->b, tag, 3);
  buf_append(&t->b, p, n);
  buf_append(&t->b, "]", 1);
  return 0;
}

static const struct wsc_handlers handlers = {on_data, on_control};

static int parse(const uint8_t *data, size_t size, size_t step, struct trace *t) {
  struct wsc_parser ps;
  wsc_parser_init(&ps);
  for (size_t off = 0; off < size;) {
    size_t n = size - off < step ? size - off : step;
    const char *why = NULL;
    t->lo = data + off;
    t->hi = data + off + n;
    int rc = wsc_parse(&ps, data + off, n, &handlers, t, &why);
    if (rc < 0) {
      if (why == NULL) abort();
      buf_append(&t->b, "!", 1);
      buf_append(&t->b, why, strlen(why));
      return -1;
    }
    off += n;
  }
  return 0;
}

static long respond(const uint8_t *data, size_t size, size_t step, size_t *used) {
  struct wsc_upgrade *u = calloc(1, sizeof *u);
  if (u == NULL) abort();
  memcpy(u->key, "dGhlIHNhbXBsZSBub25jZQ==", WSC_KEY_LEN + 1);
  long rc = 0;
  *used = 0;
  for (size_t off = 0; off < size && rc == 0;) {
    size_t n = size - off < step ? size - off : step;
    const char *why = NULL;
    rc = wsc_response(u, data + off, n, "bt2c.v1", &why);
    if (rc < 0 && why == NULL) abort();
    if (rc > (long)n) abort(); /* used more than it was given */
    if (rc > 0) *used = off + (size_t)rc;
    off += n;
  }
  free(u);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t step = size ? (size_t)(data[0] % 17) + 1 : 1;
  struct trace whole = {{0}, NULL, NULL}, split = {{0}, NULL, NULL};
  int a = parse(data, size, size ? size : 1, &whole);
  int b = parse(data, size, step, &split);
  if (a != b || whole.b.len != split.b.len ||
      (whole.b.len && memcmp(whole.b.data, split.b.data, whole.b.len) != 0))
    abort();
  buf_free(&whole.b);
  buf_free(&split.b);
  size_t used_a, used_b;
  long ra = respond(data, size, size ? size : 1, &used_a);
  long rb = respond(data, size, step, &used_b);
  if ((ra > 0) != (rb > 0) || (ra < 0) != (rb < 0) || used_a != used_b) abort();
  return 0;
}
