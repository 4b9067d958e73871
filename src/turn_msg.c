/* turn_msg: see turn_msg.h. */
#include "turn_msg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_TURN_PORT 3478

static void copy_text(char *dst, size_t cap, const uint8_t *src, size_t n) {
  size_t k = 0;
  for (size_t i = 0; i < n && k + 1 < cap; i++)
    dst[k++] = (src[i] < 0x20 || src[i] >= 0x7f) ? '?' : (char)src[i];
  dst[k] = '\0';
}

const char *turnmsg_verdict_name(enum turn_verdict v) {
  static const char *const names[] = {"success",           "error",     "challenge",
                                      "stale_nonce",       "wrong_credentials",
                                      "integrity",         "malformed", "timeout"};
  return names[v];
}

int turnmsg_parse_url(const char *url, char *host, size_t hostcap, uint16_t *port,
                      unsigned *transports, char *why, size_t whycap) {
  if (strncmp(url, "turns:", 6) == 0) {
    snprintf(why, whycap, "turns: (TLS to the TURN server) is not supported; use turn:");
    return -1;
  }
  if (strncmp(url, "turn:", 5) != 0) {
    snprintf(why, whycap, "it must start with turn:");
    return -1;
  }
  const char *rest = url + 5, *q = strchr(rest, '?');
  size_t end = q ? (size_t)(q - rest) : strlen(rest);
  const char *p = NULL;
  size_t hl;
  if (rest[0] == '[') {
    const char *close = memchr(rest, ']', end);
    if (close == NULL) {
      snprintf(why, whycap, "an IPv6 address must end with ']'");
      return -1;
    }
    hl = (size_t)(close - rest - 1);
    rest++;
    if ((size_t)(close + 1 - (rest - 1)) < end) {
      if (close[1] != ':') {
        snprintf(why, whycap, "unexpected text after ']'");
        return -1;
      }
      p = close + 2;
    }
  } else {
    const char *colon = memchr(rest, ':', end);
    hl = colon ? (size_t)(colon - rest) : end;
    if (colon) p = colon + 1;
  }
  if (hl == 0 || hl >= hostcap) {
    snprintf(why, whycap, "the host is empty or too long");
    return -1;
  }
  memcpy(host, rest, hl);
  host[hl] = '\0';
  long pv = DEFAULT_TURN_PORT;
  if (p) {
    char digits[8];
    size_t dl = (size_t)((q ? q : url + strlen(url)) - p);
    if (dl == 0 || dl >= sizeof digits) {
      snprintf(why, whycap, "the port must be 1..65535");
      return -1;
    }
    memcpy(digits, p, dl);
    digits[dl] = '\0';
    char *e;
    pv = strtol(digits, &e, 10);
    if (*e != '\0' || pv < 1 || pv > 65535) {
      snprintf(why, whycap, "the port must be 1..65535");
      return -1;
    }
  }
  *port = (uint16_t)pv;
  *transports = 3;
  if (q) {
    if (strcasecmp(q, "?transport=udp") == 0) *transports = 1;
    else if (strcasecmp(q, "?transport=tcp") == 0) *transports = 2;
    else {
      snprintf(why, whycap, "the only parameter is ?transport=udp or ?transport=tcp");
      return -1;
    }
  }
  return 0;
}

size_t turnmsg_encode(uint8_t *buf, size_t cap, const uint8_t *txid, const struct turn_req *r,
                      const struct turn_auth *auth) {
  struct stun_writer w;
  if (stun_begin(&w, buf, cap, r->method, r->cls, txid) != 0) return 0;
  if (r->transport) {
    uint8_t v[4] = {r->transport, 0, 0, 0};
    stun_put(&w, STUN_A_REQUESTED_TRANSPORT, v, sizeof v);
  }
  if (r->channel) {
    uint8_t v[4] = {(uint8_t)(r->channel >> 8), (uint8_t)r->channel, 0, 0};
    stun_put(&w, STUN_A_CHANNEL_NUMBER, v, sizeof v);
  }
  if (r->peer) stun_put_addr(&w, STUN_A_XOR_PEER_ADDRESS, r->peer);
  if (r->has_lifetime) stun_put_u32(&w, STUN_A_LIFETIME, r->lifetime);
  if (r->has_conn_id) stun_put_u32(&w, STUN_A_CONNECTION_ID, r->conn_id);
  if (r->data) stun_put(&w, STUN_A_DATA, r->data, r->data_len);
  if (auth) {
    stun_put_str(&w, STUN_A_USERNAME, auth->username);
    stun_put_str(&w, STUN_A_REALM, auth->realm);
    stun_put(&w, STUN_A_NONCE, auth->nonce, auth->nonce_len);
    stun_put_integrity(&w, auth->key, STUN_LONGTERM_KEY_LEN);
  }
  stun_put_fingerprint(&w);
  return stun_finish(&w);
}

enum turn_verdict turnmsg_classify(const struct stun_msg *m, const uint8_t *key,
                                   struct turn_answer *out) {
  memset(out, 0, sizeof *out);
  struct stun_attr a;
  if (stun_find(m, STUN_A_REALM, &a) && a.len < sizeof out->realm) {
    memcpy(out->realm, a.val, a.len);
    out->realm[a.len] = '\0';
  }
  if (stun_find(m, STUN_A_NONCE, &a) && a.len <= sizeof out->nonce) {
    memcpy(out->nonce, a.val, a.len);
    out->nonce_len = a.len;
  }
  if (m->cls == STUN_SUCCESS) {
    if (key && stun_check_integrity(m, key, STUN_LONGTERM_KEY_LEN) != 1) return TV_INTEGRITY;
    return TV_SUCCESS;
  }
  if (m->cls != STUN_ERROR) return TV_MALFORMED;
  const uint8_t *r;
  size_t rl;
  if (!stun_find(m, STUN_A_ERROR_CODE, &a) || stun_attr_error(&a, &out->code, &r, &rl) != 0)
    return TV_MALFORMED;
  copy_text(out->reason, sizeof out->reason, r, rl);
  if (out->code == 401) {
    if (key) return TV_WRONG_CREDENTIALS;
    return out->realm[0] && out->nonce_len ? TV_CHALLENGE : TV_MALFORMED;
  }
  if (out->code == 438) return out->nonce_len ? TV_STALE_NONCE : TV_MALFORMED;
  /* coturn signs some errors (437 to an authenticated Refresh): a present
   * MESSAGE-INTEGRITY must be right; an absent one is accepted. */
  if (key && m->mi_off && stun_check_integrity(m, key, STUN_LONGTERM_KEY_LEN) == 0)
    return TV_INTEGRITY;
  return TV_ERROR;
}
