/* Fuzz target: batches of envelopes (envelope.c). Checks that every decoded
 * envelope lies within the input and re-encodes to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ctx {
  const uint8_t *base;
  size_t size, off;
};

static int check(const struct envelope *e, void *ud) {
  struct ctx *c = ud;
  size_t n = env_wire_len(e->path_len, e->target != NULL, e->payload_len);
  if (c->off + n > c->size) abort();
  if (e->payload < c->base || e->payload + e->payload_len > c->base + c->size) abort();
  uint8_t *out = malloc(n);
  if (env_encode(out, e) != n || memcmp(out, c->base + c->off, n) != 0) abort();
  free(out);
  c->off += n;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct ctx c = {data, size, 0};
  const char *why = NULL;
  int n = env_batch_each(data, size, check, &c, &why);
  if (n >= 0 && c.off != size) abort();
  if (n < 0 && why == NULL) abort();
  return 0;
}
