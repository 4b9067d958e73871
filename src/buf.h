/* buf: a growable byte buffer (always NUL-terminated for convenience).
 * Allocation failure aborts: a node out of memory cannot do anything safe. */
#ifndef BT2C_BUF_H
#define BT2C_BUF_H

#include <stddef.h>

struct buf {
  char *data;
  size_t len, cap;
};

void buf_append(struct buf *b, const void *p, size_t n);
void buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes. */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

#endif
