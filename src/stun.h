/* stun: the STUN message codec (RFC 8489) with the attributes of TURN
 * (RFC 8656, RFC 6062) and NAT behaviour discovery (RFC 5780).
 *
 * Provides an encoder that writes one message into the caller's buffer
 * (header, attributes padded to 4 bytes, XOR addresses, MESSAGE-INTEGRITY,
 * FINGERPRINT), a decoder that checks a datagram and lets the caller walk
 * or look up its attributes, readers for the attribute values TURN needs
 * (addresses, ERROR-CODE, UNKNOWN-ATTRIBUTES, u32s), the long-term
 * credential key, and ChannelData framing (RFC 8656 §12.4).
 *
 * Must not: open sockets, keep state between calls, allocate (OpenSSL's
 * own HMAC and MD5 contexts aside: the parser, the encoder and FINGERPRINT
 * use the caller's memory only), or read a byte outside the buffer it was
 * given. Apart from the CSPRNG behind new transaction ids, every function is
 * a pure function of its arguments, so the fuzz target and the specs
 * exercise it without a network.
 *
 * The caller's part: a TURN client keeps its own realm, nonce and key, and
 * encodes XOR-PEER-ADDRESS again for every retransmission with a new txid
 * (the XOR depends on the txid of the message carrying it).
 */
#ifndef BT2C_STUN_H
#define BT2C_STUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#define STUN_MAGIC 0x2112A442u
#define STUN_HEADER_LEN 20
#define STUN_TXID_LEN 12
#define STUN_FINGERPRINT_XOR 0x5354554Eu
#define STUN_MI_LEN 20        /* HMAC-SHA1 */
#define STUN_MI256_LEN 32     /* HMAC-SHA256 */
#define STUN_LONGTERM_KEY_LEN 16 /* MD5 */
#define STUN_MAX_UNKNOWN 16   /* unknown attributes remembered per message */

/* Methods (RFC 8489 §18.2, RFC 8656 §17, RFC 6062 §6.1). */
enum stun_method {
  STUN_BINDING = 0x001,
  STUN_ALLOCATE = 0x003,
  STUN_REFRESH = 0x004,
  STUN_SEND = 0x006,
  STUN_DATA = 0x007,
  STUN_CREATE_PERMISSION = 0x008,
  STUN_CHANNEL_BIND = 0x009,
  STUN_CONNECT = 0x00A,
  STUN_CONNECTION_BIND = 0x00B,
  STUN_CONNECTION_ATTEMPT = 0x00C,
};

enum stun_class {
  STUN_REQUEST = 0,
  STUN_INDICATION = 1,
  STUN_SUCCESS = 2,
  STUN_ERROR = 3,
};

/* Attribute types. Below 0x8000 a receiver must understand the attribute
 * (comprehension-required); from 0x8000 it may ignore it. */
enum stun_attr_type {
  STUN_A_MAPPED_ADDRESS = 0x0001,
  STUN_A_RESPONSE_ADDRESS = 0x0002, /* RFC 3489, reserved */
  STUN_A_CHANGE_REQUEST = 0x0003,   /* RFC 5780 */
  STUN_A_SOURCE_ADDRESS = 0x0004,   /* RFC 3489, reserved */
  STUN_A_CHANGED_ADDRESS = 0x0005,  /* RFC 3489, reserved */
  STUN_A_USERNAME = 0x0006,
  STUN_A_MESSAGE_INTEGRITY = 0x0008,
  STUN_A_ERROR_CODE = 0x0009,
  STUN_A_UNKNOWN_ATTRIBUTES = 0x000A,
  STUN_A_CHANNEL_NUMBER = 0x000C,
  STUN_A_LIFETIME = 0x000D,
  STUN_A_XOR_PEER_ADDRESS = 0x0012,
  STUN_A_DATA = 0x0013,
  STUN_A_REALM = 0x0014,
  STUN_A_NONCE = 0x0015,
  STUN_A_XOR_RELAYED_ADDRESS = 0x0016,
  STUN_A_REQUESTED_ADDRESS_FAMILY = 0x0017,
  STUN_A_EVEN_PORT = 0x0018,
  STUN_A_REQUESTED_TRANSPORT = 0x0019,
  STUN_A_DONT_FRAGMENT = 0x001A,
  STUN_A_MESSAGE_INTEGRITY_SHA256 = 0x001C,
  STUN_A_PASSWORD_ALGORITHM = 0x001D,
  STUN_A_USERHASH = 0x001E,
  STUN_A_XOR_MAPPED_ADDRESS = 0x0020,
  STUN_A_RESERVATION_TOKEN = 0x0022,
  STUN_A_PRIORITY = 0x0024,
  STUN_A_USE_CANDIDATE = 0x0025,
  STUN_A_PADDING = 0x0026,       /* RFC 5780 */
  STUN_A_RESPONSE_PORT = 0x0027, /* RFC 5780 */
  STUN_A_CONNECTION_ID = 0x002A, /* RFC 6062 */
  STUN_A_PASSWORD_ALGORITHMS = 0x8002,
  STUN_A_ALTERNATE_DOMAIN = 0x8003,
  STUN_A_SOFTWARE = 0x8022,
  STUN_A_ALTERNATE_SERVER = 0x8023,
  STUN_A_FINGERPRINT = 0x8028,
  STUN_A_ICE_CONTROLLED = 0x8029,
  STUN_A_ICE_CONTROLLING = 0x802A,
  STUN_A_RESPONSE_ORIGIN = 0x802B, /* RFC 5780 */
  STUN_A_OTHER_ADDRESS = 0x802C,   /* RFC 5780 */
};

/* CHANGE-REQUEST flags (RFC 5780 §7.2). */
#define STUN_CHANGE_IP 0x04u
#define STUN_CHANGE_PORT 0x02u

/* REQUESTED-TRANSPORT protocol numbers (first byte of the value). */
#define STUN_TRANSPORT_UDP 17
#define STUN_TRANSPORT_TCP 6

/* ChannelData channel numbers (RFC 8656 §12). */
#define STUN_CHANNEL_MIN 0x4000
#define STUN_CHANNEL_MAX 0x4FFF

/* An IP address and port as STUN carries them. family is 1 (IPv4, ip[0..3])
 * or 2 (IPv6, ip[0..15]); IPv4-mapped IPv6 addresses are stored as IPv4. */
enum { STUN_FAMILY_IPV4 = 1, STUN_FAMILY_IPV6 = 2 };
struct stun_addr {
  uint8_t family;
  uint16_t port;
  uint8_t ip[16];
};

/* Parses a numeric IPv4 or IPv6 address (no brackets). Returns 0 or -1. */
int stun_addr_set(struct stun_addr *a, const char *ip, uint16_t port);
/* From a sockaddr (AF_INET or AF_INET6; v4-mapped becomes IPv4). 0 or -1. */
int stun_addr_from_sockaddr(struct stun_addr *a, const struct sockaddr *sa, socklen_t len);
/* Into a sockaddr for a socket of family af (IPv4 becomes v4-mapped on an
 * AF_INET6 socket). Returns the length, or 0 when it cannot be expressed. */
socklen_t stun_addr_to_sockaddr(const struct stun_addr *a, int af, struct sockaddr_storage *ss);
bool stun_addr_equal(const struct stun_addr *a, const struct stun_addr *b);
bool stun_addr_same_ip(const struct stun_addr *a, const struct stun_addr *b);
/* "192.0.2.1" / "2001:db8::1" into buf; returns buf. */
const char *stun_addr_ip(const struct stun_addr *a, char *buf, size_t cap);
/* "192.0.2.1:3478" / "[2001:db8::1]:3478" into buf; returns buf. */
const char *stun_addr_str(const struct stun_addr *a, char *buf, size_t cap);
#define STUN_ADDR_STRLEN 56

/* ---- names and types --------------------------------------------------- */

uint16_t stun_msg_type(uint16_t method, enum stun_class cls);
uint16_t stun_type_method(uint16_t type);
enum stun_class stun_type_class(uint16_t type);
/* "Binding", "Allocate", ...; NULL when unknown. */
const char *stun_method_name(uint16_t method);
/* "request", "indication", "success", "error". */
const char *stun_class_name(enum stun_class cls);
/* "XOR-MAPPED-ADDRESS", ...; NULL when unknown. */
const char *stun_attr_name(uint16_t type);
/* The attribute type of a name as above, or -1. */
int stun_attr_by_name(const char *name);
/* Whether this codec knows the attribute (its value can be read). */
bool stun_attr_known(uint16_t type);
/* Whether the attribute's address is XORed (XOR-MAPPED/PEER/RELAYED). */
bool stun_attr_is_xor(uint16_t type);
/* Whether the attribute's value is an address (plain or XOR). */
bool stun_attr_is_addr(uint16_t type);

/* 12 bytes from the CSPRNG. Returns 0, or -1 when OpenSSL fails. */
int stun_txid_random(uint8_t txid[STUN_TXID_LEN]);

/* CRC-32 (IEEE 802.3, the same as zlib's crc32): start with crc = 0 and
 * feed the result back to continue. */
uint32_t stun_crc32(uint32_t crc, const void *data, size_t len);

/* MD5(username ":" realm ":" password), the long-term credential key
 * (RFC 8489 §9.2.2; OpaqueString is the identity for ASCII). 0 or -1. */
int stun_longterm_key(const char *user, size_t user_len, const char *realm, size_t realm_len,
                      const char *pass, size_t pass_len, uint8_t key[STUN_LONGTERM_KEY_LEN]);

/* ---- encoder ----------------------------------------------------------- */

/* Writes into buf. Every call after a failure (buffer too small, value too
 * long, an attribute after FINGERPRINT, anything but FINGERPRINT after
 * MESSAGE-INTEGRITY) does nothing, so a message can be built with
 * unchecked calls and judged once by stun_finish(). */
struct stun_writer {
  uint8_t *buf;
  size_t cap, len;
  bool failed, has_mi, has_fp;
};

/* Starts a message. txid: 12 bytes, or NULL for fresh random ones (read
 * them back at buf + 8). Returns 0 or -1. */
int stun_begin(struct stun_writer *w, void *buf, size_t cap, uint16_t method,
               enum stun_class cls, const uint8_t *txid);
/* Any attribute: value bytes as given, zero padding added. 0 or -1. */
int stun_put(struct stun_writer *w, uint16_t type, const void *val, size_t len);
int stun_put_u32(struct stun_writer *w, uint16_t type, uint32_t v);
int stun_put_str(struct stun_writer *w, uint16_t type, const char *s);
/* An address attribute, XORed when stun_attr_is_xor(type). */
int stun_put_addr(struct stun_writer *w, uint16_t type, const struct stun_addr *a);
/* ERROR-CODE: code 300..699, reason UTF-8 (at most 763 bytes). */
int stun_put_error(struct stun_writer *w, int code, const char *reason);
/* UNKNOWN-ATTRIBUTES listing n types. */
int stun_put_unknown(struct stun_writer *w, const uint16_t *types, size_t n);
/* MESSAGE-INTEGRITY (HMAC-SHA1) / MESSAGE-INTEGRITY-SHA256 over the message
 * so far, with the header length counting the attribute itself. */
int stun_put_integrity(struct stun_writer *w, const uint8_t *key, size_t key_len);
int stun_put_integrity_sha256(struct stun_writer *w, const uint8_t *key, size_t key_len);
/* FINGERPRINT; must be the last attribute. */
int stun_put_fingerprint(struct stun_writer *w);
/* The message's length, or 0 if any step failed. */
size_t stun_finish(const struct stun_writer *w);

/* ---- decoder ----------------------------------------------------------- */

enum stun_status {
  STUN_OK = 0,
  STUN_E_SHORT,          /* fewer than 20 bytes */
  STUN_E_NOT_STUN,       /* the first two bits are not 00 */
  STUN_E_COOKIE,         /* not 0x2112A442 (RFC 3489 messages land here) */
  STUN_E_LENGTH,         /* length not a multiple of 4, or not the bytes present */
  STUN_E_ATTR_TRUNCATED, /* an attribute runs past the end */
  STUN_E_ATTR_LENGTH,    /* MESSAGE-INTEGRITY(-SHA256) or FINGERPRINT of the wrong size */
  STUN_E_FINGERPRINT_POS, /* something follows FINGERPRINT */
  STUN_E_FINGERPRINT,    /* the CRC does not match */
};
const char *stun_strerror(enum stun_status s);

/* A checked message. Pointers point into the caller's buffer, which must
 * outlive it. Attributes after MESSAGE-INTEGRITY other than
 * MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are ignored (RFC 8489 §14.5):
 * stun_find() does not see them and they are not reported as unknown. */
struct stun_msg {
  const uint8_t *raw;
  size_t len; /* 20 + the length field */
  uint16_t type, method;
  enum stun_class cls;
  const uint8_t *txid;
  size_t n_attrs;
  size_t mi_off, mi256_off, fp_off; /* attribute header offsets, 0: absent */
  size_t auth_end;                  /* attributes from here on are ignored */
  /* Comprehension-required types the codec does not know: a request
   * carrying any gets 420 with these in UNKNOWN-ATTRIBUTES; a response
   * carrying any is a failed transaction. */
  uint16_t unknown[STUN_MAX_UNKNOWN];
  unsigned n_unknown;
};

/* Checks buf as one whole STUN message (a UDP datagram, or a frame cut by
 * stun_frame_len): header, cookie, length, every attribute's bounds, the
 * FINGERPRINT when present. Never reads outside [buf, buf + len). */
enum stun_status stun_parse(struct stun_msg *m, const void *buf, size_t len);

struct stun_attr {
  uint16_t type;
  uint16_t len;
  const uint8_t *val;
  size_t off; /* of the attribute header in the message */
};

/* Walks every attribute in order, ignored ones included; *pos starts at 0. */
bool stun_next_attr(const struct stun_msg *m, size_t *pos, struct stun_attr *a);
/* The first attribute of this type that counts. */
bool stun_find(const struct stun_msg *m, uint16_t type, struct stun_attr *a);

/* Readers return 0, or -1 when the value is malformed. */
int stun_attr_addr(const struct stun_msg *m, const struct stun_attr *a, struct stun_addr *out);
/* Finds type and reads its address: 0, or -1 when absent or malformed. */
int stun_get_addr(const struct stun_msg *m, uint16_t type, struct stun_addr *out);
int stun_attr_u32(const struct stun_attr *a, uint32_t *v);
/* ERROR-CODE: code = class * 100 + number; the reason with trailing NULs
 * stripped (coturn counts them in the length). Not NUL-terminated. */
int stun_attr_error(const struct stun_attr *a, int *code, const uint8_t **reason,
                    size_t *reason_len);
/* UNKNOWN-ATTRIBUTES: the number of types present (up to cap written). */
int stun_attr_unknown_list(const struct stun_attr *a, uint16_t *types, size_t cap,
                           size_t *n);

/* 1: MESSAGE-INTEGRITY (or -SHA256) is present and right for key; 0: it is
 * present and wrong; -1: absent. */
int stun_check_integrity(const struct stun_msg *m, const uint8_t *key, size_t key_len);
int stun_check_integrity_sha256(const struct stun_msg *m, const uint8_t *key, size_t key_len);

/* ---- demultiplexing and ChannelData ------------------------------------ */

enum stun_kind {
  STUN_KIND_STUN,         /* first two bits 00 */
  STUN_KIND_CHANNEL_DATA, /* first two bits 01 */
  STUN_KIND_OTHER,        /* 10 / 11, or empty */
};
enum stun_kind stun_demux(const void *buf, size_t len);

/* ChannelData: channel 0x4000..0x4FFF, data length within the bytes
 * present (trailing padding accepted). 0 or -1. */
int stun_channel_parse(const void *buf, size_t len, uint16_t *channel, const uint8_t **data,
                       size_t *data_len);
/* Writes a ChannelData frame, padded to 4 bytes when pad (TCP, §12.5).
 * Returns its length, or 0 when it does not fit or the channel is invalid. */
size_t stun_channel_write(void *buf, size_t cap, uint16_t channel, const void *data, size_t len,
                          bool pad);

/* On a stream: the length of the frame starting at buf (a STUN message, or
 * ChannelData with its padding), 0 when more bytes are needed to tell, -1
 * when the bytes are neither. */
long stun_frame_len(const void *buf, size_t avail);

#endif
