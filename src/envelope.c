/* envelope: see envelope.h. Integers on the wire are big-endian. */
#include "envelope.h"

#include <string.h>

#include <openssl/evp.h>

static const char *const type_names[MSG_TYPE_COUNT] = {
    NULL,
    "peer_handshake",
    "peer_exchange",
    "peer_ping",
    "block",
    "transaction",
    "block_request",
    "transaction_request",
    "consensus_vote",
    "consensus_proposal",
    "validator_set",
    "nat_traversal",
    "relay",
    "network_status",
};

const char *env_type_name(int type) {
  return (type > 0 && type < MSG_TYPE_COUNT) ? type_names[type] : NULL;
}

int env_type_from_name(const char *name) {
  for (int t = 1; t < MSG_TYPE_COUNT; t++)
    if (strcmp(type_names[t], name) == 0) return t;
  return 0;
}

static uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

size_t env_wire_len(unsigned path_len, int has_target, size_t payload_len) {
  return ENV_HEADER_LEN + (size_t)path_len * ENV_NODE_ID_LEN +
         (has_target ? ENV_NODE_ID_LEN : 0) + payload_len;
}

size_t env_decode(const uint8_t *buf, size_t len, struct envelope *e, const char **why) {
  if (len < ENV_HEADER_LEN) {
    *why = "truncated header";
    return 0;
  }
  if (buf[0] != ENV_VERSION) {
    *why = "unsupported envelope version";
    return 0;
  }
  if (buf[1] == 0 || buf[1] >= MSG_TYPE_COUNT) {
    *why = "unknown message type";
    return 0;
  }
  if (buf[2] & ~ENV_F_KNOWN) {
    *why = "unknown flags set";
    return 0;
  }
  if (buf[5] | buf[6] | buf[7]) {
    *why = "reserved bytes not zero";
    return 0;
  }
  if (buf[4] > ENV_MAX_PATH) {
    *why = "relay path too long";
    return 0;
  }
  e->version = buf[0];
  e->type = buf[1];
  e->flags = buf[2];
  e->hops = buf[3];
  e->path_len = buf[4];
  e->payload_len = get_u32(buf + 8);
  memcpy(e->origin, buf + 12, ENV_NODE_ID_LEN);
  memcpy(e->id, buf + 32, ENV_MSG_ID_LEN);
  int has_target = (e->flags & ENV_F_TARGET) != 0;
  if ((e->flags & ENV_F_DIRECT) && !has_target) {
    *why = "direct message without a target";
    return 0;
  }
  if (has_target && !(e->flags & ENV_F_DIRECT)) {
    *why = "target without the direct flag";
    return 0;
  }
  if ((e->flags & ENV_F_RELAY) && (e->flags & ENV_F_DIRECT)) {
    *why = "relay and direct flags together";
    return 0;
  }
  if (e->hops != e->path_len) {
    *why = "hops differ from the path length";
    return 0;
  }
  /* Compare in size_t: payload_len comes from the peer. */
  size_t fixed = env_wire_len(e->path_len, has_target, 0);
  if (fixed > len || e->payload_len > len - fixed) {
    *why = "lengths exceed the message";
    return 0;
  }
  e->path = e->path_len ? buf + ENV_HEADER_LEN : NULL;
  e->target = has_target ? buf + ENV_HEADER_LEN + (size_t)e->path_len * ENV_NODE_ID_LEN : NULL;
  e->payload = buf + fixed;
  return fixed + e->payload_len;
}

size_t env_encode(uint8_t *out, const struct envelope *e) {
  int has_target = e->target != NULL;
  out[0] = ENV_VERSION;
  out[1] = e->type;
  out[2] = (uint8_t)((e->flags & ~ENV_F_TARGET) | (has_target ? ENV_F_TARGET : 0));
  out[3] = e->hops;
  out[4] = e->path_len;
  out[5] = out[6] = out[7] = 0;
  put_u32(out + 8, e->payload_len);
  memcpy(out + 12, e->origin, ENV_NODE_ID_LEN);
  memcpy(out + 32, e->id, ENV_MSG_ID_LEN);
  uint8_t *p = out + ENV_HEADER_LEN;
  if (e->path_len) {
    memcpy(p, e->path, (size_t)e->path_len * ENV_NODE_ID_LEN);
    p += (size_t)e->path_len * ENV_NODE_ID_LEN;
  }
  if (has_target) {
    memcpy(p, e->target, ENV_NODE_ID_LEN);
    p += ENV_NODE_ID_LEN;
  }
  if (e->payload_len) memcpy(p, e->payload, e->payload_len);
  return (size_t)(p - out) + e->payload_len;
}

void env_message_id(uint8_t type, const void *payload, size_t len, uint8_t out[ENV_MSG_ID_LEN]) {
  /* Fetching the algorithm is most of the cost of a small digest: do it once
   * (a read-only cache; nothing else is shared). */
  static EVP_MD *sha256;
  if (sha256 == NULL) sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  unsigned int n = 0;
  if (c == NULL || !EVP_DigestInit_ex(c, sha256, NULL) || !EVP_DigestUpdate(c, &type, 1) ||
      !EVP_DigestUpdate(c, payload, len) || !EVP_DigestFinal_ex(c, out, &n))
    memset(out, 0, ENV_MSG_ID_LEN); /* only on allocation failure: the id then matches nothing */
  EVP_MD_CTX_free(c);
}

int env_batch_each(const uint8_t *buf, size_t len,
                   int (*fn)(const struct envelope *e, void *ud), void *ud, const char **why) {
  if (len == 0) {
    *why = "empty message";
    return -1;
  }
  int n = 0;
  size_t off = 0;
  while (off < len) {
    struct envelope e;
    size_t used = env_decode(buf + off, len - off, &e, why);
    if (used == 0) return -1;
    n++;
    off += used;
    if (fn(&e, ud)) break;
  }
  return n;
}
