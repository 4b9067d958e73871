/* Fuzz target: the STUN/TURN codec (stun.c). Whatever the bytes, the parser
 * must stay inside them; what it accepts must be walkable, every value
 * reader must hold up on every attribute, and re-encoding the attributes
 * must give a message of the same length (the same bytes when the padding
 * was zero). ChannelData framing is checked the same way. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "stun.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_stun(const uint8_t *data, size_t size) {
  struct stun_msg m;
  if (stun_parse(&m, data, size) != STUN_OK) return;
  static const uint8_t key[16] = {0xbf, 0x5b, 0x15, 0x34, 0xd2, 0x60, 0xe1, 0x59,
                                  0x32, 0x62, 0xde, 0x92, 0xee, 0x8c, 0x79, 0x55};
  if (stun_check_integrity(&m, key, sizeof key) == -1 && m.mi_off) abort();
  if (stun_check_integrity_sha256(&m, key, sizeof key) == -1 && m.mi256_off) abort();

  uint8_t out[65536 + 64];
  struct stun_writer w;
  if (stun_begin(&w, out, sizeof out, m.method, m.cls, m.txid) != 0) abort();
  bool zero_pad = true;
  size_t pos = 0, n = 0;
  struct stun_attr a;
  while (stun_next_attr(&m, &pos, &a)) {
    n++;
    if (a.off + 4 + a.len > m.len) abort();
    for (size_t i = a.len; i % 4; i++)
      if (a.val[i] != 0) zero_pad = false;
    struct stun_addr addr;
    uint32_t u;
    int code;
    const uint8_t *r;
    size_t rl, nt;
    uint16_t types[8];
    if (stun_attr_addr(&m, &a, &addr) == 0) {
      char s[STUN_ADDR_STRLEN];
      stun_addr_str(&addr, s, sizeof s);
    }
    (void)stun_attr_u32(&a, &u);
    if (stun_attr_error(&a, &code, &r, &rl) == 0 && (code < 300 || code > 699 || rl > a.len))
      abort();
    (void)stun_attr_unknown_list(&a, types, 8, &nt);
    struct stun_attr f;
    if (!stun_find(&m, a.type, &f) && a.off < m.auth_end && a.type != STUN_A_MESSAGE_INTEGRITY &&
        a.type != STUN_A_MESSAGE_INTEGRITY_SHA256)
      abort(); /* a counted attribute must be findable */
    /* Copy the attribute as it is (stun_put would refuse what follows
     * M-I, which a receiver ignores but a sender must not produce). */
    if (w.len + 4 + ((a.len + 3u) & ~3u) > sizeof out) abort();
    uint8_t *p = out + w.len;
    p[0] = (uint8_t)(a.type >> 8);
    p[1] = (uint8_t)a.type;
    p[2] = (uint8_t)(a.len >> 8);
    p[3] = (uint8_t)a.len;
    memcpy(p + 4, a.val, a.len);
    memset(p + 4 + a.len, 0, ((a.len + 3u) & ~3u) - a.len);
    w.len += 4 + ((a.len + 3u) & ~3u);
  }
  if (n != m.n_attrs || w.len != m.len) abort();
  out[2] = (uint8_t)((w.len - STUN_HEADER_LEN) >> 8);
  out[3] = (uint8_t)(w.len - STUN_HEADER_LEN);
  if (zero_pad && memcmp(out, data, size) != 0) abort();
  if (stun_frame_len(data, size) != (long)size) abort();
}

static void check_channel(const uint8_t *data, size_t size) {
  uint16_t ch;
  const uint8_t *d;
  size_t dl;
  if (stun_channel_parse(data, size, &ch, &d, &dl) != 0) return;
  if (d != data + 4 || dl > size - 4) abort();
  uint8_t out[65536 + 8];
  size_t n = stun_channel_write(out, sizeof out, ch, d, dl, true);
  if (n == 0 || n % 4 || memcmp(out + 4, d, dl) != 0) abort();
  if (stun_frame_len(out, n) != (long)n) abort();
}

/* Most mutations break the length field or the CRC, which would stop them
 * at the door: repair both in a copy so they reach the attribute readers. */
static void check_repaired(const uint8_t *data, size_t size) {
  static uint8_t copy[65536 + 64];
  struct stun_msg m;
  if (size < STUN_HEADER_LEN || size > sizeof copy || (size - STUN_HEADER_LEN) % 4 ||
      size - STUN_HEADER_LEN > 0xFFFF)
    return;
  enum stun_status st = stun_parse(&m, data, size);
  if (st != STUN_E_LENGTH && st != STUN_E_FINGERPRINT) return;
  memcpy(copy, data, size);
  copy[2] = (uint8_t)((size - STUN_HEADER_LEN) >> 8);
  copy[3] = (uint8_t)(size - STUN_HEADER_LEN);
  if (stun_parse(&m, copy, size) == STUN_E_FINGERPRINT) {
    size_t fp = size - 8; /* FINGERPRINT is last: its value is the final 4 bytes */
    uint32_t crc = stun_crc32(0, copy, fp) ^ STUN_FINGERPRINT_XOR;
    copy[fp + 4] = (uint8_t)(crc >> 24);
    copy[fp + 5] = (uint8_t)(crc >> 16);
    copy[fp + 6] = (uint8_t)(crc >> 8);
    copy[fp + 7] = (uint8_t)crc;
    if (stun_parse(&m, copy, size) != STUN_OK) abort();
  }
  check_stun(copy, size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  switch (stun_demux(data, size)) {
    case STUN_KIND_STUN:
      check_stun(data, size);
      check_repaired(data, size);
      break;
    case STUN_KIND_CHANNEL_DATA: check_channel(data, size); break;
    default: break;
  }
  long f = stun_frame_len(data, size);
  if (f < -1) abort();
  return 0;
}
