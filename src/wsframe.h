/* wsframe: the WebSocket frame header and client-side masking of RFC 6455
 * section 5.2/5.3, for the frames bt2cd sends on connections it dialled.
 *
 * libwebsockets 4.1.6 masks a client's payload one byte per iteration
 * through its connection state (~2 ns/byte, 40% of a relaying node's CPU);
 * transport.c frames and masks its packed batches here instead, 8 bytes at
 * a time, and hands lws the finished frame to send as it is.
 *
 * Must not: know about lws, peers or envelopes.
 */
#ifndef BT2C_WSFRAME_H
#define BT2C_WSFRAME_H

#include <stddef.h>
#include <stdint.h>

/* The longest header: 2 bytes, a 64-bit length, a 4-byte masking key. */
#define WSFRAME_MAX_HEADER 14
#define WSFRAME_OP_BINARY 0x2

/* Writes the header of a final frame (FIN set) with `opcode` for a payload
 * of `len` bytes so that it ends exactly at `payload` (the caller keeps at
 * least WSFRAME_MAX_HEADER bytes before it); with `key` non-NULL the mask
 * bit and key are included. Returns the header length (2 to 14). */
size_t wsframe_header(uint8_t *payload, size_t len, unsigned opcode, const uint8_t key[4]);

/* XORs p[0..len) with the repeating 4-byte key, key[0] on p[0] (the
 * operation masks and unmasks alike). */
void wsframe_mask(uint8_t *p, size_t len, const uint8_t key[4]);

#endif
