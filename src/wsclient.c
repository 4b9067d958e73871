/* wsclient: see wsclient.h. */
#include "wsclient.h"

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

/* ---- opening handshake ---------------------------------------------------- */

static const char WS_GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* A request field must not carry bytes that would end or split its line. */
static bool plain_token(const char *s) {
  if (s == NULL || *s == '\0') return false;
  for (; *s; s++)
    if ((unsigned char)*s <= 0x20 || *s == 0x7f) return false;
  return true;
}

int wsc_request(struct wsc_upgrade *u, const char *host, const char *path,
                const char *subprotocol, char *out, size_t cap) {
  u->len = 0;
  u->key[0] = '\0';
  if (!plain_token(host) || !plain_token(path) || !plain_token(subprotocol)) return -1;
  uint8_t nonce[16];
  if (RAND_bytes(nonce, sizeof nonce) != 1) return -1;
  EVP_EncodeBlock((unsigned char *)u->key, nonce, sizeof nonce); /* 24 chars and a NUL */
  int n = snprintf(out, cap,
                   "GET %s HTTP/1.1\r\n"
                   "Host: %s\r\n"
                   "Upgrade: websocket\r\n"
                   "Connection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\n"
                   "Sec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Protocol: %s\r\n"
                   "\r\n",
                   path, host, u->key, subprotocol);
  if (n < 0 || (size_t)n >= cap) return -1;
  return n;
}

/* base64(SHA-1(key || GUID)): 28 characters and a NUL. */
static bool expected_accept(const char *key, char out[29]) {
  char buf[WSC_KEY_LEN + sizeof WS_GUID];
  size_t klen = strnlen(key, WSC_KEY_LEN);
  memcpy(buf, key, klen);
  memcpy(buf + klen, WS_GUID, sizeof WS_GUID - 1);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int mdlen = 0;
  if (!EVP_Digest(buf, klen + sizeof WS_GUID - 1, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
    return false;
  EVP_EncodeBlock((unsigned char *)out, md, 20);
  return true;
}

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c; }

/* ASCII case-insensitive: s[0..n) equals the literal lit. Locale-free. */
static bool ieq(const char *s, size_t n, const char *lit) {
  size_t i = 0;
  for (; i < n; i++)
    if (lit[i] == '\0' || lower((unsigned char)s[i]) != lower((unsigned char)lit[i])) return false;
  return lit[i] == '\0';
}

static bool tchar(int c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool ows(int c) { return c == ' ' || c == '\t'; }

/* Connection is a comma-separated list; one element must be "upgrade". */
static bool has_upgrade_token(const char *v, size_t n) {
  size_t i = 0;
  while (i <= n) {
    size_t j = i;
    while (j < n && v[j] != ',') j++;
    size_t a = i, b = j;
    while (a < b && ows(v[a])) a++;
    while (b > a && ows(v[b - 1])) b--;
    if (ieq(v + a, b - a, "upgrade")) return true;
    i = j + 1;
  }
  return false;
}

/* Fixed strings so that the reason stays valid and the module reentrant. */
static const char *status_reason(const char *code) {
  static const char *const known[] = {
      "200", "status 200, not 101", "301", "status 301, not 101", "302", "status 302, not 101",
      "400", "status 400, not 101", "401", "status 401, not 101", "403", "status 403, not 101",
      "404", "status 404, not 101", "426", "status 426, not 101", "429", "status 429, not 101",
      "500", "status 500, not 101", "502", "status 502, not 101", "503", "status 503, not 101"};
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i += 2)
    if (memcmp(code, known[i], 3) == 0) return known[i + 1];
  return "status is not 101";
}

static bool digit(int c) { return c >= '0' && c <= '9'; }

/* The status line: "HTTP/1.1 101" then the end or a space and a reason. */
static const char *check_status(const char *s, size_t n) {
  if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || !digit(s[7]) || s[8] != ' ' || !digit(s[9]) ||
      !digit(s[10]) || !digit(s[11]) || (n > 12 && s[12] != ' '))
    return "malformed status line";
  if (memcmp(s + 9, "101", 3) != 0) return status_reason(s + 9);
  if (s[7] != '1') return "status line is not HTTP/1.1";
  return NULL;
}

/* Checks a complete head h[0..n) (it ends with the blank line). */
static const char *check_head(const char *h, size_t n, const char *key, const char *subprotocol) {
  const char *end = h + n - 2; /* the blank line's CRLF */
  const char *line = h, *eol;
  bool status_done = false, upgrade = false, connection = false;
  const char *accept = NULL, *proto = NULL;
  size_t accept_len = 0, proto_len = 0;
  for (; line < end; line = eol + 2) {
    eol = line;
    while (eol[0] != '\r' || eol[1] != '\n') { /* the head ends in CRLF: this stops */
      if (*eol == '\r' || *eol == '\n' || *eol == '\0') return "malformed header line";
      eol++;
    }
    size_t len = (size_t)(eol - line);
    if (!status_done) {
      const char *why = check_status(line, len);
      if (why) return why;
      status_done = true;
      continue;
    }
    size_t nl = 0;
    while (nl < len && tchar((unsigned char)line[nl])) nl++;
    if (nl == 0 || nl == len || line[nl] != ':') return "malformed header line";
    const char *v = line + nl + 1, *ve = eol;
    while (v < ve && ows(*v)) v++;
    while (ve > v && ows(ve[-1])) ve--;
    size_t vl = (size_t)(ve - v);
    if (ieq(line, nl, "upgrade")) {
      if (upgrade) return "duplicate Upgrade header";
      if (!ieq(v, vl, "websocket")) return "no Upgrade: websocket";
      upgrade = true;
    } else if (ieq(line, nl, "connection")) {
      connection = connection || has_upgrade_token(v, vl);
    } else if (ieq(line, nl, "sec-websocket-accept")) {
      if (accept) return "duplicate Sec-WebSocket-Accept";
      accept = v;
      accept_len = vl;
    } else if (ieq(line, nl, "sec-websocket-protocol")) {
      if (proto) return "duplicate Sec-WebSocket-Protocol";
      proto = v;
      proto_len = vl;
    } else if (ieq(line, nl, "sec-websocket-extensions")) {
      return "Sec-WebSocket-Extensions we did not offer";
    }
  }
  if (!status_done) return "malformed status line";
  if (!upgrade) return "no Upgrade: websocket";
  if (!connection) return "no upgrade token in Connection";
  char want[29];
  if (accept == NULL) return "no Sec-WebSocket-Accept";
  if (!expected_accept(key, want)) return "SHA-1 unavailable";
  if (accept_len != 28 || memcmp(accept, want, 28) != 0) return "wrong Sec-WebSocket-Accept";
  if (proto == NULL) return "no subprotocol in the response";
  if (proto_len != strlen(subprotocol) || memcmp(proto, subprotocol, proto_len) != 0)
    return "a subprotocol we did not ask for";
  return NULL;
}

long wsc_response(struct wsc_upgrade *u, const uint8_t *in, size_t len, const char *subprotocol,
                  const char **why) {
  size_t old = u->len, room = WSC_RESPONSE_MAX - old;
  size_t take = len < room ? len : room;
  if (take) memcpy(u->head + old, in, take);
  u->len = old + take;
  /* The terminator may straddle the previous feed: look back 3 bytes. */
  for (size_t i = old >= 3 ? old - 3 : 0; i + 4 <= u->len; i++) {
    if (memcmp(u->head + i, "\r\n\r\n", 4) != 0) continue;
    size_t end = i + 4;
    u->len = end;
    const char *bad = check_head(u->head, end, u->key, subprotocol);
    if (bad) {
      *why = bad;
      return -1;
    }
    return (long)(end - old);
  }
  if (take < len || u->len == WSC_RESPONSE_MAX) {
    *why = "response head too long";
    return -1;
  }
  return 0;
}

/* ---- frames ------------------------------------------------------------- */

void wsc_parser_init(struct wsc_parser *ps) { memset(ps, 0, sizeof *ps); }

/* What the first two header bytes alone can show to be wrong. */
static const char *check_start(const struct wsc_parser *ps) {
  uint8_t b0 = ps->head[0], b1 = ps->head[1];
  unsigned op = b0 & 0x0f, len7 = b1 & 0x7f;
  if (b0 & 0x70) return "reserved bit set";
  if (b1 & 0x80) return "masked frame from the server";
  switch (op) {
    case 0x0:
      if (!ps->in_message) return "continuation without a message";
      return NULL;
    case 0x1:
    case 0x2:
      if (ps->in_message) return "new data frame inside a fragmented message";
      return NULL;
    case 0x8:
    case 0x9:
    case 0xA:
      if (!(b0 & 0x80)) return "fragmented control frame";
      if (len7 > WSC_CONTROL_MAX) return "control frame longer than 125 bytes";
      if (op == 0x8 && len7 == 1) return "close frame with a 1-byte body";
      return NULL;
    default: return "unknown opcode";
  }
}

static size_t header_need(const uint8_t *h) {
  unsigned len7 = h[1] & 0x7f;
  return len7 == 126 ? 4 : len7 == 127 ? 10 : 2;
}

int wsc_parse(struct wsc_parser *ps, const uint8_t *in, size_t len, const struct wsc_handlers *h,
              void *ud, const char **why) {
  size_t i = 0;
  while (i < len) {
    if (!ps->in_payload) {
      /* Header bytes: at most 10 (a masked frame is refused at byte 2). */
      if (ps->head_len < 2) {
        size_t take = 2u - ps->head_len;
        if (take > len - i) take = len - i;
        memcpy(ps->head + ps->head_len, in + i, take);
        ps->head_len = (uint8_t)(ps->head_len + take);
        i += take;
        if (ps->head_len < 2) break;
        if ((*why = check_start(ps)) != NULL) return -1;
      }
      size_t need = header_need(ps->head);
      if (ps->head_len < need) {
        size_t take = need - ps->head_len;
        if (take > len - i) take = len - i;
        memcpy(ps->head + ps->head_len, in + i, take);
        ps->head_len = (uint8_t)(ps->head_len + take);
        i += take;
        if (ps->head_len < need) break;
      }
      uint64_t n = ps->head[1] & 0x7f;
      if (need == 4) {
        n = (uint64_t)ps->head[2] << 8 | ps->head[3];
      } else if (need == 10) {
        if (ps->head[2] & 0x80) {
          *why = "64-bit length with its top bit set";
          return -1;
        }
        n = 0;
        for (int k = 2; k < 10; k++) n = n << 8 | ps->head[k];
      }
      unsigned op = ps->head[0] & 0x0f;
      ps->opcode = (uint8_t)op;
      ps->fin = (ps->head[0] & 0x80) != 0;
      ps->left = n;
      ps->head_len = 0;
      if (op >= 0x8) {
        ps->ctrl_len = 0;
        if (n > 0) ps->in_payload = true;
        else if (h->control && h->control(ud, op, ps->ctrl, 0)) return 1;
        continue;
      }
      if (op != 0x0) {
        ps->binary = op == 0x2;
        ps->first_piece = true;
      }
      ps->in_message = !ps->fin;
      if (n > 0) {
        ps->in_payload = true;
        continue;
      }
      /* An empty data frame still marks a message's start or end. */
      bool first = ps->first_piece;
      ps->first_piece = false;
      if (h->data && h->data(ud, in + i, 0, first, ps->binary, 0, ps->fin)) return 1;
      continue;
    }

    size_t take = len - i;
    if (ps->left < take) take = (size_t)ps->left;
    const uint8_t *p = in + i;
    i += take;
    ps->left -= take;
    if (ps->opcode >= 0x8) {
      if (ps->ctrl_len == 0 && ps->left == 0) { /* whole in this read: no copy */
        ps->in_payload = false;
        if (h->control && h->control(ud, ps->opcode, p, take)) return 1;
        continue;
      }
      memcpy(ps->ctrl + ps->ctrl_len, p, take);
      ps->ctrl_len = (uint8_t)(ps->ctrl_len + take);
      if (ps->left > 0) continue;
      ps->in_payload = false;
      size_t cn = ps->ctrl_len;
      ps->ctrl_len = 0;
      if (h->control && h->control(ud, ps->opcode, ps->ctrl, cn)) return 1;
      continue;
    }
    bool first = ps->first_piece;
    ps->first_piece = false;
    if (ps->left == 0) ps->in_payload = false;
    if (h->data &&
        h->data(ud, p, take, first, ps->binary, ps->left, ps->fin && ps->left == 0))
      return 1;
  }
  return 0;
}
