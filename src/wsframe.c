/* wsframe: see wsframe.h. */
#include "wsframe.h"

#include <string.h>

size_t wsframe_header(uint8_t *payload, size_t len, unsigned opcode, const uint8_t key[4]) {
  uint8_t h[WSFRAME_MAX_HEADER];
  size_t n = 0;
  uint8_t masked = key ? 0x80 : 0;
  h[n++] = (uint8_t)(0x80 | (opcode & 0x0f));
  if (len < 126) {
    h[n++] = (uint8_t)(masked | len);
  } else if (len < 65536) {
    h[n++] = masked | 126;
    h[n++] = (uint8_t)(len >> 8);
    h[n++] = (uint8_t)len;
  } else {
    h[n++] = masked | 127;
    for (int shift = 56; shift >= 0; shift -= 8) h[n++] = (uint8_t)((uint64_t)len >> shift);
  }
  if (key) {
    memcpy(h + n, key, 4);
    n += 4;
  }
  memcpy(payload - n, h, n);
  return n;
}

void wsframe_mask(uint8_t *p, size_t len, const uint8_t key[4]) {
  uint32_t k4;
  memcpy(&k4, key, 4);
  uint64_t k8 = (uint64_t)k4 << 32 | k4; /* byte i of the word is key[i & 3] either endianness */
  size_t i = 0;
  for (; len - i >= 8; i += 8) { /* memcpy: unaligned-safe, compiles to plain loads */
    uint64_t w;
    memcpy(&w, p + i, 8);
    w ^= k8;
    memcpy(p + i, &w, 8);
  }
  for (; i < len; i++) p[i] ^= key[i & 3];
}
