/* stun: see stun.h. Everything reads through the bounds-checked helpers
 * below; offsets are size_t and compared against the remaining length
 * before any addition, so no overflow can carry a read past the end. */
#include "stun.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static void wr16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static void wr32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}
static size_t pad4(size_t n) { return (n + 3) & ~(size_t)3; }

/* ---- addresses ----------------------------------------------------------- */

int stun_addr_set(struct stun_addr *a, const char *ip, uint16_t port) {
  memset(a, 0, sizeof *a);
  a->port = port;
  if (inet_pton(AF_INET, ip, a->ip) == 1) {
    a->family = STUN_FAMILY_IPV4;
    return 0;
  }
  struct in6_addr v6;
  if (inet_pton(AF_INET6, ip, &v6) != 1) return -1;
  if (IN6_IS_ADDR_V4MAPPED(&v6)) {
    a->family = STUN_FAMILY_IPV4;
    memcpy(a->ip, v6.s6_addr + 12, 4);
  } else {
    a->family = STUN_FAMILY_IPV6;
    memcpy(a->ip, v6.s6_addr, 16);
  }
  return 0;
}

int stun_addr_from_sockaddr(struct stun_addr *a, const struct sockaddr *sa, socklen_t len) {
  memset(a, 0, sizeof *a);
  if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    a->family = STUN_FAMILY_IPV4;
    a->port = ntohs(s4->sin_port);
    memcpy(a->ip, &s4->sin_addr, 4);
    return 0;
  }
  if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    a->port = ntohs(s6->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
      a->family = STUN_FAMILY_IPV4;
      memcpy(a->ip, s6->sin6_addr.s6_addr + 12, 4);
    } else {
      a->family = STUN_FAMILY_IPV6;
      memcpy(a->ip, s6->sin6_addr.s6_addr, 16);
    }
    return 0;
  }
  return -1;
}

socklen_t stun_addr_to_sockaddr(const struct stun_addr *a, int af, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (af == AF_INET) {
    if (a->family != STUN_FAMILY_IPV4) return 0;
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(a->port);
    memcpy(&s4->sin_addr, a->ip, 4);
    return sizeof *s4;
  }
  if (af != AF_INET6) return 0;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
  s6->sin6_family = AF_INET6;
  s6->sin6_port = htons(a->port);
  if (a->family == STUN_FAMILY_IPV4) { /* ::ffff:a.b.c.d on a dual-stack socket */
    s6->sin6_addr.s6_addr[10] = 0xff;
    s6->sin6_addr.s6_addr[11] = 0xff;
    memcpy(s6->sin6_addr.s6_addr + 12, a->ip, 4);
  } else if (a->family == STUN_FAMILY_IPV6) {
    memcpy(s6->sin6_addr.s6_addr, a->ip, 16);
  } else {
    return 0;
  }
  return sizeof *s6;
}

static size_t ip_len(uint8_t family) { return family == STUN_FAMILY_IPV6 ? 16 : 4; }

bool stun_addr_same_ip(const struct stun_addr *a, const struct stun_addr *b) {
  return a->family == b->family && memcmp(a->ip, b->ip, ip_len(a->family)) == 0;
}

bool stun_addr_equal(const struct stun_addr *a, const struct stun_addr *b) {
  return stun_addr_same_ip(a, b) && a->port == b->port;
}

const char *stun_addr_ip(const struct stun_addr *a, char *buf, size_t cap) {
  if (cap == 0) return buf;
  int af = a->family == STUN_FAMILY_IPV6 ? AF_INET6 : AF_INET;
  if (inet_ntop(af, a->ip, buf, (socklen_t)cap) == NULL) snprintf(buf, cap, "?");
  return buf;
}

const char *stun_addr_str(const struct stun_addr *a, char *buf, size_t cap) {
  char ip[INET6_ADDRSTRLEN];
  stun_addr_ip(a, ip, sizeof ip);
  if (a->family == STUN_FAMILY_IPV6)
    snprintf(buf, cap, "[%s]:%u", ip, (unsigned)a->port);
  else
    snprintf(buf, cap, "%s:%u", ip, (unsigned)a->port);
  return buf;
}

/* ---- names --------------------------------------------------------------- */

uint16_t stun_msg_type(uint16_t method, enum stun_class cls) {
  unsigned m = method, c = (unsigned)cls;
  return (uint16_t)((m & 0x000F) | (m & 0x0070) << 1 | (m & 0x0F80) << 2 | (c & 1) << 4 |
                    (c & 2) << 7);
}

uint16_t stun_type_method(uint16_t t) {
  return (uint16_t)((t & 0x000F) | (t >> 1 & 0x0070) | (t >> 2 & 0x0F80));
}

enum stun_class stun_type_class(uint16_t t) {
  return (enum stun_class)((t >> 4 & 1) | (t >> 7 & 2));
}

const char *stun_method_name(uint16_t method) {
  switch (method) {
    case STUN_BINDING: return "Binding";
    case STUN_ALLOCATE: return "Allocate";
    case STUN_REFRESH: return "Refresh";
    case STUN_SEND: return "Send";
    case STUN_DATA: return "Data";
    case STUN_CREATE_PERMISSION: return "CreatePermission";
    case STUN_CHANNEL_BIND: return "ChannelBind";
    case STUN_CONNECT: return "Connect";
    case STUN_CONNECTION_BIND: return "ConnectionBind";
    case STUN_CONNECTION_ATTEMPT: return "ConnectionAttempt";
    default: return NULL;
  }
}

const char *stun_class_name(enum stun_class cls) {
  static const char *const names[] = {"request", "indication", "success", "error"};
  return names[(unsigned)cls & 3];
}

static const struct {
  uint16_t type;
  const char *name;
} attr_names[] = {
    {STUN_A_MAPPED_ADDRESS, "MAPPED-ADDRESS"},
    {STUN_A_RESPONSE_ADDRESS, "RESPONSE-ADDRESS"},
    {STUN_A_CHANGE_REQUEST, "CHANGE-REQUEST"},
    {STUN_A_SOURCE_ADDRESS, "SOURCE-ADDRESS"},
    {STUN_A_CHANGED_ADDRESS, "CHANGED-ADDRESS"},
    {STUN_A_USERNAME, "USERNAME"},
    {STUN_A_MESSAGE_INTEGRITY, "MESSAGE-INTEGRITY"},
    {STUN_A_ERROR_CODE, "ERROR-CODE"},
    {STUN_A_UNKNOWN_ATTRIBUTES, "UNKNOWN-ATTRIBUTES"},
    {STUN_A_CHANNEL_NUMBER, "CHANNEL-NUMBER"},
    {STUN_A_LIFETIME, "LIFETIME"},
    {STUN_A_XOR_PEER_ADDRESS, "XOR-PEER-ADDRESS"},
    {STUN_A_DATA, "DATA"},
    {STUN_A_REALM, "REALM"},
    {STUN_A_NONCE, "NONCE"},
    {STUN_A_XOR_RELAYED_ADDRESS, "XOR-RELAYED-ADDRESS"},
    {STUN_A_REQUESTED_ADDRESS_FAMILY, "REQUESTED-ADDRESS-FAMILY"},
    {STUN_A_EVEN_PORT, "EVEN-PORT"},
    {STUN_A_REQUESTED_TRANSPORT, "REQUESTED-TRANSPORT"},
    {STUN_A_DONT_FRAGMENT, "DONT-FRAGMENT"},
    {STUN_A_MESSAGE_INTEGRITY_SHA256, "MESSAGE-INTEGRITY-SHA256"},
    {STUN_A_PASSWORD_ALGORITHM, "PASSWORD-ALGORITHM"},
    {STUN_A_USERHASH, "USERHASH"},
    {STUN_A_XOR_MAPPED_ADDRESS, "XOR-MAPPED-ADDRESS"},
    {STUN_A_RESERVATION_TOKEN, "RESERVATION-TOKEN"},
    {STUN_A_PRIORITY, "PRIORITY"},
    {STUN_A_USE_CANDIDATE, "USE-CANDIDATE"},
    {STUN_A_PADDING, "PADDING"},
    {STUN_A_RESPONSE_PORT, "RESPONSE-PORT"},
    {STUN_A_CONNECTION_ID, "CONNECTION-ID"},
    {STUN_A_PASSWORD_ALGORITHMS, "PASSWORD-ALGORITHMS"},
    {STUN_A_ALTERNATE_DOMAIN, "ALTERNATE-DOMAIN"},
    {STUN_A_SOFTWARE, "SOFTWARE"},
    {STUN_A_ALTERNATE_SERVER, "ALTERNATE-SERVER"},
    {STUN_A_FINGERPRINT, "FINGERPRINT"},
    {STUN_A_ICE_CONTROLLED, "ICE-CONTROLLED"},
    {STUN_A_ICE_CONTROLLING, "ICE-CONTROLLING"},
    {STUN_A_RESPONSE_ORIGIN, "RESPONSE-ORIGIN"},
    {STUN_A_OTHER_ADDRESS, "OTHER-ADDRESS"},
};
#define N_ATTR_NAMES (sizeof attr_names / sizeof attr_names[0])

const char *stun_attr_name(uint16_t type) {
  for (size_t i = 0; i < N_ATTR_NAMES; i++)
    if (attr_names[i].type == type) return attr_names[i].name;
  return NULL;
}

int stun_attr_by_name(const char *name) {
  for (size_t i = 0; i < N_ATTR_NAMES; i++)
    if (strcmp(attr_names[i].name, name) == 0) return attr_names[i].type;
  return -1;
}

bool stun_attr_known(uint16_t type) { return stun_attr_name(type) != NULL; }

bool stun_attr_is_xor(uint16_t type) {
  return type == STUN_A_XOR_MAPPED_ADDRESS || type == STUN_A_XOR_PEER_ADDRESS ||
         type == STUN_A_XOR_RELAYED_ADDRESS;
}

bool stun_attr_is_addr(uint16_t type) {
  switch (type) {
    case STUN_A_MAPPED_ADDRESS:
    case STUN_A_RESPONSE_ADDRESS:
    case STUN_A_SOURCE_ADDRESS:
    case STUN_A_CHANGED_ADDRESS:
    case STUN_A_ALTERNATE_SERVER:
    case STUN_A_RESPONSE_ORIGIN:
    case STUN_A_OTHER_ADDRESS:
      return true;
    default:
      return stun_attr_is_xor(type);
  }
}

/* ---- crypto -------------------------------------------------------------- */

int stun_txid_random(uint8_t txid[STUN_TXID_LEN]) {
  return RAND_bytes(txid, STUN_TXID_LEN) == 1 ? 0 : -1;
}

/* The reflected IEEE 802.3 polynomial 0xEDB88320, one entry per byte value. */
static const uint32_t crc_table[256] = {
    0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u, 0x706af48fu,
    0xe963a535u, 0x9e6495a3u, 0x0edb8832u, 0x79dcb8a4u, 0xe0d5e91eu, 0x97d2d988u,
    0x09b64c2bu, 0x7eb17cbdu, 0xe7b82d07u, 0x90bf1d91u, 0x1db71064u, 0x6ab020f2u,
    0xf3b97148u, 0x84be41deu, 0x1adad47du, 0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u,
    0x136c9856u, 0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu, 0x14015c4fu, 0x63066cd9u,
    0xfa0f3d63u, 0x8d080df5u, 0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u, 0xa2677172u,
    0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu, 0x35b5a8fau, 0x42b2986cu,
    0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u, 0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u,
    0x26d930acu, 0x51de003au, 0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u,
    0xcfba9599u, 0xb8bda50fu, 0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u,
    0x2f6f7c87u, 0x58684c11u, 0xc1611dabu, 0xb6662d3du, 0x76dc4190u, 0x01db7106u,
    0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu, 0x9fbfe4a5u, 0xe8b8d433u,
    0x7807c9a2u, 0x0f00f934u, 0x9609a88eu, 0xe10e9818u, 0x7f6a0dbbu, 0x086d3d2du,
    0x91646c97u, 0xe6635c01u, 0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu,
    0x6c0695edu, 0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u, 0x65b0d9c6u, 0x12b7e950u,
    0x8bbeb8eau, 0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u, 0xfbd44c65u,
    0x4db26158u, 0x3ab551ceu, 0xa3bc0074u, 0xd4bb30e2u, 0x4adfa541u, 0x3dd895d7u,
    0xa4d1c46du, 0xd3d6f4fbu, 0x4369e96au, 0x346ed9fcu, 0xad678846u, 0xda60b8d0u,
    0x44042d73u, 0x33031de5u, 0xaa0a4c5fu, 0xdd0d7cc9u, 0x5005713cu, 0x270241aau,
    0xbe0b1010u, 0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u, 0xce61e49fu,
    0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u, 0x2eb40d81u,
    0xb7bd5c3bu, 0xc0ba6cadu, 0xedb88320u, 0x9abfb3b6u, 0x03b6e20cu, 0x74b1d29au,
    0xead54739u, 0x9dd277afu, 0x04db2615u, 0x73dc1683u, 0xe3630b12u, 0x94643b84u,
    0x0d6d6a3eu, 0x7a6a5aa8u, 0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u,
    0xf00f9344u, 0x8708a3d2u, 0x1e01f268u, 0x6906c2feu, 0xf762575du, 0x806567cbu,
    0x196c3671u, 0x6e6b06e7u, 0xfed41b76u, 0x89d32be0u, 0x10da7a5au, 0x67dd4accu,
    0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u, 0xd6d6a3e8u, 0xa1d1937eu,
    0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u, 0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu,
    0xd80d2bdau, 0xaf0a1b4cu, 0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u,
    0x316e8eefu, 0x4669be79u, 0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u,
    0xcc0c7795u, 0xbb0b4703u, 0x220216b9u, 0x5505262fu, 0xc5ba3bbeu, 0xb2bd0b28u,
    0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u, 0xb5d0cf31u, 0x2cd99e8bu, 0x5bdeae1du,
    0x9b64c2b0u, 0xec63f226u, 0x756aa39cu, 0x026d930au, 0x9c0906a9u, 0xeb0e363fu,
    0x72076785u, 0x05005713u, 0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu, 0x0cb61b38u,
    0x92d28e9bu, 0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u, 0x86d3d2d4u, 0xf1d4e242u,
    0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u, 0x18b74777u,
    0x88085ae6u, 0xff0f6a70u, 0x66063bcau, 0x11010b5cu, 0x8f659effu, 0xf862ae69u,
    0x616bffd3u, 0x166ccf45u, 0xa00ae278u, 0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u,
    0xa7672661u, 0xd06016f7u, 0x4969474du, 0x3e6e77dbu, 0xaed16a4au, 0xd9d65adcu,
    0x40df0b66u, 0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u, 0x47b2cf7fu, 0x30b5ffe9u,
    0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u, 0xcdd70693u,
    0x54de5729u, 0x23d967bfu, 0xb3667a2eu, 0xc4614ab8u, 0x5d681b02u, 0x2a6f2b94u,
    0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu, 0x2d02ef8du,
};

uint32_t stun_crc32(uint32_t crc, const void *data, size_t len) {
  const uint8_t *p = data;
  crc = ~crc;
  for (size_t i = 0; i < len; i++) crc = crc_table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

int stun_longterm_key(const char *user, size_t user_len, const char *realm, size_t realm_len,
                      const char *pass, size_t pass_len, uint8_t key[STUN_LONGTERM_KEY_LEN]) {
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  unsigned int n = 0;
  int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
           EVP_DigestUpdate(ctx, user, user_len) == 1 && EVP_DigestUpdate(ctx, ":", 1) == 1 &&
           EVP_DigestUpdate(ctx, realm, realm_len) == 1 && EVP_DigestUpdate(ctx, ":", 1) == 1 &&
           EVP_DigestUpdate(ctx, pass, pass_len) == 1 && EVP_DigestFinal_ex(ctx, key, &n) == 1 &&
           n == STUN_LONGTERM_KEY_LEN;
  EVP_MD_CTX_free(ctx);
  return ok ? 0 : -1;
}

/* HMAC(digest, key) over a || b into out (outcap >= the digest size). The
 * message is hashed in two parts so the decoder can substitute the header
 * (with the length M-I demands) without copying the message. */
static int hmac2(const char *digest, const uint8_t *key, size_t key_len, const uint8_t *a,
                 size_t alen, const uint8_t *b, size_t blen, uint8_t *out, size_t outcap) {
  static const uint8_t empty_key = 0; /* OpenSSL wants a pointer even for "" */
  EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
  OSSL_PARAM params[2] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)digest, 0),
      OSSL_PARAM_construct_end()};
  size_t n = 0;
  int ok = ctx != NULL && EVP_MAC_init(ctx, key_len ? key : &empty_key, key_len, params) == 1 &&
           EVP_MAC_update(ctx, a, alen) == 1 && (blen == 0 || EVP_MAC_update(ctx, b, blen) == 1) &&
           EVP_MAC_final(ctx, out, &n, outcap) == 1;
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  return ok ? (int)n : -1;
}

/* ---- encoder ------------------------------------------------------------- */

static int fail(struct stun_writer *w) {
  w->failed = true;
  return -1;
}

static void set_length(struct stun_writer *w, size_t body) { wr16(w->buf + 2, (uint16_t)body); }

int stun_begin(struct stun_writer *w, void *buf, size_t cap, uint16_t method,
               enum stun_class cls, const uint8_t *txid) {
  memset(w, 0, sizeof *w);
  w->buf = buf;
  w->cap = cap;
  if (buf == NULL || cap < STUN_HEADER_LEN || method > 0x0FFF) return fail(w);
  wr16(w->buf, stun_msg_type(method, cls));
  wr16(w->buf + 2, 0);
  wr32(w->buf + 4, STUN_MAGIC);
  if (txid)
    memcpy(w->buf + 8, txid, STUN_TXID_LEN);
  else if (stun_txid_random(w->buf + 8) != 0)
    return fail(w);
  w->len = STUN_HEADER_LEN;
  return 0;
}

/* Appends without the ordering rules; the callers enforce them. */
static int put_raw(struct stun_writer *w, uint16_t type, const void *val, size_t len) {
  if (w->failed) return -1;
  size_t need = 4 + pad4(len);
  if (len > 0xFFFF || need > w->cap - w->len || w->len - STUN_HEADER_LEN + need > 0xFFFC)
    return fail(w);
  uint8_t *p = w->buf + w->len;
  wr16(p, type);
  wr16(p + 2, (uint16_t)len);
  if (len) memcpy(p + 4, val, len);
  memset(p + 4 + len, 0, pad4(len) - len);
  w->len += need;
  set_length(w, w->len - STUN_HEADER_LEN);
  return 0;
}

int stun_put(struct stun_writer *w, uint16_t type, const void *val, size_t len) {
  if (w->failed) return -1;
  if (w->has_fp) return fail(w); /* FINGERPRINT is last */
  if (w->has_mi && type != STUN_A_FINGERPRINT && type != STUN_A_MESSAGE_INTEGRITY_SHA256)
    return fail(w); /* a receiver would ignore it */
  if (put_raw(w, type, val, len) != 0) return -1;
  if (type == STUN_A_MESSAGE_INTEGRITY || type == STUN_A_MESSAGE_INTEGRITY_SHA256) w->has_mi = true;
  if (type == STUN_A_FINGERPRINT) w->has_fp = true;
  return 0;
}

int stun_put_u32(struct stun_writer *w, uint16_t type, uint32_t v) {
  uint8_t b[4];
  wr32(b, v);
  return stun_put(w, type, b, 4);
}

int stun_put_str(struct stun_writer *w, uint16_t type, const char *s) {
  return stun_put(w, type, s, strlen(s));
}

int stun_put_addr(struct stun_writer *w, uint16_t type, const struct stun_addr *a) {
  if (w->failed) return -1;
  if (a->family != STUN_FAMILY_IPV4 && a->family != STUN_FAMILY_IPV6) return fail(w);
  uint8_t v[20] = {0};
  size_t n = ip_len(a->family);
  bool x = stun_attr_is_xor(type);
  v[1] = a->family;
  wr16(v + 2, x ? (uint16_t)(a->port ^ (STUN_MAGIC >> 16)) : a->port);
  memcpy(v + 4, a->ip, n);
  if (x) { /* cookie, then the txid for IPv6 */
    uint8_t pad[16];
    wr32(pad, STUN_MAGIC);
    memcpy(pad + 4, w->buf + 8, STUN_TXID_LEN);
    for (size_t i = 0; i < n; i++) v[4 + i] ^= pad[i];
  }
  return stun_put(w, type, v, 4 + n);
}

int stun_put_error(struct stun_writer *w, int code, const char *reason) {
  size_t rl = reason ? strlen(reason) : 0;
  if (code < 300 || code > 699 || rl > 763) return fail(w);
  uint8_t v[4 + 763];
  v[0] = v[1] = 0;
  v[2] = (uint8_t)(code / 100);
  v[3] = (uint8_t)(code % 100);
  if (rl) memcpy(v + 4, reason, rl);
  return stun_put(w, STUN_A_ERROR_CODE, v, 4 + rl);
}

int stun_put_unknown(struct stun_writer *w, const uint16_t *types, size_t n) {
  uint8_t v[2 * STUN_MAX_UNKNOWN];
  if (n > STUN_MAX_UNKNOWN) return fail(w);
  for (size_t i = 0; i < n; i++) wr16(v + 2 * i, types[i]);
  return stun_put(w, STUN_A_UNKNOWN_ATTRIBUTES, v, 2 * n);
}

static int put_mac(struct stun_writer *w, uint16_t type, const char *digest, size_t maclen,
                   const uint8_t *key, size_t key_len) {
  if (w->failed) return -1;
  if (w->has_fp || (w->has_mi && type == STUN_A_MESSAGE_INTEGRITY)) return fail(w);
  if (4 + maclen > w->cap - w->len) return fail(w);
  /* The length the header has once this attribute is appended (§14.5). */
  set_length(w, w->len - STUN_HEADER_LEN + 4 + maclen);
  uint8_t mac[EVP_MAX_MD_SIZE];
  if (hmac2(digest, key, key_len, w->buf, w->len, NULL, 0, mac, sizeof mac) != (int)maclen) {
    set_length(w, w->len - STUN_HEADER_LEN);
    return fail(w);
  }
  return stun_put(w, type, mac, maclen);
}

int stun_put_integrity(struct stun_writer *w, const uint8_t *key, size_t key_len) {
  return put_mac(w, STUN_A_MESSAGE_INTEGRITY, "SHA1", STUN_MI_LEN, key, key_len);
}

int stun_put_integrity_sha256(struct stun_writer *w, const uint8_t *key, size_t key_len) {
  return put_mac(w, STUN_A_MESSAGE_INTEGRITY_SHA256, "SHA256", STUN_MI256_LEN, key, key_len);
}

int stun_put_fingerprint(struct stun_writer *w) {
  if (w->failed) return -1;
  if (w->has_fp || 8 > w->cap - w->len) return fail(w);
  set_length(w, w->len - STUN_HEADER_LEN + 8); /* the CRC covers a header that counts it */
  uint8_t v[4];
  wr32(v, stun_crc32(0, w->buf, w->len) ^ STUN_FINGERPRINT_XOR);
  return stun_put(w, STUN_A_FINGERPRINT, v, 4);
}

size_t stun_finish(const struct stun_writer *w) { return w->failed ? 0 : w->len; }

/* ---- decoder ------------------------------------------------------------- */

const char *stun_strerror(enum stun_status s) {
  switch (s) {
    case STUN_OK: return "ok";
    case STUN_E_SHORT: return "shorter than the 20-byte STUN header";
    case STUN_E_NOT_STUN: return "not STUN (the first two bits are not 00)";
    case STUN_E_COOKIE: return "bad magic cookie (not 0x2112A442)";
    case STUN_E_LENGTH: return "length field not a multiple of 4 or not the datagram's size";
    case STUN_E_ATTR_TRUNCATED: return "an attribute runs past the end of the message";
    case STUN_E_ATTR_LENGTH: return "MESSAGE-INTEGRITY or FINGERPRINT has the wrong size";
    case STUN_E_FINGERPRINT_POS: return "an attribute follows FINGERPRINT";
    case STUN_E_FINGERPRINT: return "FINGERPRINT does not match";
  }
  return "unknown error";
}

enum stun_status stun_parse(struct stun_msg *m, const void *buf, size_t len) {
  const uint8_t *p = buf;
  memset(m, 0, sizeof *m);
  if (buf == NULL || len < STUN_HEADER_LEN) return STUN_E_SHORT;
  if (p[0] & 0xC0) return STUN_E_NOT_STUN;
  if (rd32(p + 4) != STUN_MAGIC) return STUN_E_COOKIE;
  size_t body = rd16(p + 2);
  if (body % 4 != 0 || body != len - STUN_HEADER_LEN) return STUN_E_LENGTH;
  m->raw = p;
  m->len = len;
  m->type = rd16(p);
  m->method = stun_type_method(m->type);
  m->cls = stun_type_class(m->type);
  m->txid = p + 8;
  m->auth_end = len;
  size_t off = STUN_HEADER_LEN;
  while (off < len) {
    if (len - off < 4) return STUN_E_ATTR_TRUNCATED;
    uint16_t type = rd16(p + off), alen = rd16(p + off + 2);
    if (pad4(alen) > len - off - 4) return STUN_E_ATTR_TRUNCATED;
    if (m->fp_off) return STUN_E_FINGERPRINT_POS;
    bool counts = off < m->auth_end;
    m->n_attrs++;
    switch (type) {
      case STUN_A_MESSAGE_INTEGRITY:
        if (alen != STUN_MI_LEN) return STUN_E_ATTR_LENGTH;
        if (counts && !m->mi256_off) {
          m->mi_off = off;
          m->auth_end = off + 4 + alen;
        }
        break;
      case STUN_A_MESSAGE_INTEGRITY_SHA256: /* may be truncated to 16 bytes (§14.6) */
        if (alen < 16 || alen > STUN_MI256_LEN || alen % 4) return STUN_E_ATTR_LENGTH;
        if (!m->mi256_off) {
          m->mi256_off = off;
          if (counts) m->auth_end = off + 4 + alen;
        }
        break;
      case STUN_A_FINGERPRINT:
        if (alen != 4) return STUN_E_ATTR_LENGTH;
        m->fp_off = off;
        break;
      default:
        if (counts && type < 0x8000 && !stun_attr_known(type) && m->n_unknown < STUN_MAX_UNKNOWN)
          m->unknown[m->n_unknown++] = type;
    }
    off += 4 + pad4(alen);
  }
  if (m->fp_off) { /* last, so the header length already counts it */
    uint32_t want = stun_crc32(0, p, m->fp_off) ^ STUN_FINGERPRINT_XOR;
    if (rd32(p + m->fp_off + 4) != want) return STUN_E_FINGERPRINT;
  }
  return STUN_OK;
}

bool stun_next_attr(const struct stun_msg *m, size_t *pos, struct stun_attr *a) {
  size_t off = *pos < STUN_HEADER_LEN ? STUN_HEADER_LEN : *pos;
  if (m->raw == NULL || off >= m->len || m->len - off < 4) return false;
  uint16_t alen = rd16(m->raw + off + 2);
  if (pad4(alen) > m->len - off - 4) return false;
  a->type = rd16(m->raw + off);
  a->len = alen;
  a->val = m->raw + off + 4;
  a->off = off;
  *pos = off + 4 + pad4(alen);
  return true;
}

static bool attr_at(const struct stun_msg *m, size_t off, struct stun_attr *a) {
  size_t pos = off;
  return off != 0 && stun_next_attr(m, &pos, a);
}

bool stun_find(const struct stun_msg *m, uint16_t type, struct stun_attr *a) {
  if (type == STUN_A_MESSAGE_INTEGRITY) return attr_at(m, m->mi_off, a);
  if (type == STUN_A_MESSAGE_INTEGRITY_SHA256) return attr_at(m, m->mi256_off, a);
  if (type == STUN_A_FINGERPRINT) return attr_at(m, m->fp_off, a);
  size_t pos = 0;
  while (stun_next_attr(m, &pos, a)) {
    if (a->off >= m->auth_end) break;
    if (a->type == type) return true;
  }
  return false;
}

int stun_attr_addr(const struct stun_msg *m, const struct stun_attr *a, struct stun_addr *out) {
  memset(out, 0, sizeof *out);
  if (a->len < 4) return -1;
  uint8_t family = a->val[1];
  bool v4 = family == STUN_FAMILY_IPV4 && a->len == 8;
  bool v6 = family == STUN_FAMILY_IPV6 && a->len == 20;
  if (!v4 && !v6) return -1;
  size_t n = ip_len(family);
  out->family = family;
  out->port = rd16(a->val + 2);
  memcpy(out->ip, a->val + 4, n);
  if (stun_attr_is_xor(a->type)) {
    uint8_t pad[16];
    wr32(pad, STUN_MAGIC);
    memcpy(pad + 4, m->txid, STUN_TXID_LEN);
    out->port ^= (uint16_t)(STUN_MAGIC >> 16);
    for (size_t i = 0; i < n; i++) out->ip[i] ^= pad[i];
  }
  return 0;
}

int stun_get_addr(const struct stun_msg *m, uint16_t type, struct stun_addr *out) {
  struct stun_attr a;
  if (!stun_find(m, type, &a)) return -1;
  return stun_attr_addr(m, &a, out);
}

int stun_attr_u32(const struct stun_attr *a, uint32_t *v) {
  if (a->len != 4) return -1;
  *v = rd32(a->val);
  return 0;
}

int stun_attr_error(const struct stun_attr *a, int *code, const uint8_t **reason,
                    size_t *reason_len) {
  if (a->len < 4) return -1;
  int cls = a->val[2] & 7, num = a->val[3];
  if (cls < 3 || cls > 6 || num > 99) return -1;
  *code = cls * 100 + num;
  size_t n = a->len - 4u;
  while (n > 0 && a->val[4 + n - 1] == '\0') n--;
  *reason = a->val + 4;
  *reason_len = n;
  return 0;
}

int stun_attr_unknown_list(const struct stun_attr *a, uint16_t *types, size_t cap, size_t *n) {
  if (a->len % 2) return -1;
  *n = a->len / 2u;
  for (size_t i = 0; i < *n && i < cap; i++) types[i] = rd16(a->val + 2 * i);
  return 0;
}

static int check_mac(const struct stun_msg *m, size_t off, const char *digest, const uint8_t *key,
                     size_t key_len) {
  struct stun_attr a;
  if (!attr_at(m, off, &a)) return -1;
  uint8_t hdr[STUN_HEADER_LEN], mac[EVP_MAX_MD_SIZE];
  memcpy(hdr, m->raw, sizeof hdr);
  wr16(hdr + 2, (uint16_t)(off + 4 + a.len - STUN_HEADER_LEN)); /* ends with this attribute */
  int n = hmac2(digest, key, key_len, hdr, sizeof hdr, m->raw + STUN_HEADER_LEN,
                off - STUN_HEADER_LEN, mac, sizeof mac);
  if (n < (int)a.len) return 0;
  return CRYPTO_memcmp(mac, a.val, a.len) == 0 ? 1 : 0;
}

int stun_check_integrity(const struct stun_msg *m, const uint8_t *key, size_t key_len) {
  return check_mac(m, m->mi_off, "SHA1", key, key_len);
}

int stun_check_integrity_sha256(const struct stun_msg *m, const uint8_t *key, size_t key_len) {
  return check_mac(m, m->mi256_off, "SHA256", key, key_len);
}

/* ---- demultiplexing and ChannelData -------------------------------------- */

enum stun_kind stun_demux(const void *buf, size_t len) {
  if (buf == NULL || len == 0) return STUN_KIND_OTHER;
  switch (((const uint8_t *)buf)[0] >> 6) {
    case 0: return STUN_KIND_STUN;
    case 1: return STUN_KIND_CHANNEL_DATA;
    default: return STUN_KIND_OTHER;
  }
}

int stun_channel_parse(const void *buf, size_t len, uint16_t *channel, const uint8_t **data,
                       size_t *data_len) {
  const uint8_t *p = buf;
  if (buf == NULL || len < 4) return -1;
  uint16_t ch = rd16(p), dl = rd16(p + 2);
  if (ch < STUN_CHANNEL_MIN || ch > STUN_CHANNEL_MAX || dl > len - 4) return -1;
  *channel = ch;
  *data = p + 4;
  *data_len = dl;
  return 0;
}

size_t stun_channel_write(void *buf, size_t cap, uint16_t channel, const void *data, size_t len,
                          bool pad) {
  size_t total = 4 + (pad ? pad4(len) : len);
  if (channel < STUN_CHANNEL_MIN || channel > STUN_CHANNEL_MAX || len > 0xFFFF || total > cap)
    return 0;
  uint8_t *p = buf;
  wr16(p, channel);
  wr16(p + 2, (uint16_t)len);
  if (len) memcpy(p + 4, data, len);
  memset(p + 4 + len, 0, total - 4 - len);
  return total;
}

long stun_frame_len(const void *buf, size_t avail) {
  const uint8_t *p = buf;
  if (buf == NULL || avail < 1) return 0;
  enum stun_kind k = stun_demux(buf, avail);
  if (k == STUN_KIND_OTHER) return -1;
  if (avail < 4) return 0;
  size_t n = rd16(p + 2);
  if (k == STUN_KIND_CHANNEL_DATA) {
    uint16_t ch = rd16(p);
    if (ch < STUN_CHANNEL_MIN || ch > STUN_CHANNEL_MAX) return -1;
    return (long)(4 + pad4(n));
  }
  if (n % 4) return -1;
  if (avail >= 8 && rd32(p + 4) != STUN_MAGIC) return -1;
  return (long)(STUN_HEADER_LEN + n);
}
