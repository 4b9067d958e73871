/* handshake: see handshake.h. */
#include "handshake.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

void hs_hello_set_candidates(struct hs_hello *h, const struct cand *c, int n) {
  free(h->cands);
  h->cands = NULL;
  h->n_cands = 0;
  h->cands_learned = false;
  if (n <= 0) return;
  h->cands = malloc((size_t)n * sizeof *c);
  if (h->cands == NULL) return;
  memcpy(h->cands, c, (size_t)n * sizeof *c);
  h->n_cands = n;
}

void hs_hello_write(struct buf *b, const struct identity *me, const char *network_id,
                    const uint8_t nonce[HS_NONCE_LEN], double time_ms, int listen_port,
                    bool listen_tls, const char *metadata_json, long long height,
                    const struct cand *c, int nc) {
  char pub[ID_PUBKEY_LEN * 2 + 1], n[HS_NONCE_LEN * 2 + 1];
  hex_encode(me->pub, ID_PUBKEY_LEN, pub);
  hex_encode(nonce, HS_NONCE_LEN, n);
  buf_appendf(b, "{\"step\":\"hello\",\"version\":%d,\"networkId\":", HS_PROTOCOL_VERSION);
  json_write_string(b, network_id, strlen(network_id));
  buf_appendf(b,
              ",\"nodeId\":\"%s\",\"publicKey\":\"%s\",\"nonce\":\"%s\",\"time\":%.0f,"
              "\"listenPort\":%d,%s\"metadata\":%s,\"height\":%lld",
              me->id_hex, pub, n, time_ms, listen_port, listen_tls ? "\"tls\":true," : "",
              metadata_json ? metadata_json : "{}", height);
  if (nc > 0) {
    buf_appendf(b, ",\"candidates\":");
    cand_write_json(b, c, nc);
  }
  buf_append(b, "}", 1);
}

void hs_auth_write(struct buf *b, const uint8_t sig[ID_SIG_LEN]) {
  char hex[ID_SIG_LEN * 2 + 1];
  hex_encode(sig, ID_SIG_LEN, hex);
  buf_appendf(b, "{\"step\":\"auth\",\"signature\":\"%s\"}", hex);
}

void hs_hello_free(struct hs_hello *h) {
  free(h->metadata_json);
  h->metadata_json = NULL;
  hs_hello_set_candidates(h, NULL, 0);
}

static int fail(int code, int *close_code, char *why, size_t cap, const char *msg) {
  *close_code = code;
  snprintf(why, cap, "%s", msg);
  return -1;
}

static bool hex_field(const struct json_value *o, const char *key, uint8_t *out, size_t n) {
  const struct json_value *v = json_get_string(o, key);
  return v && hex_decode(v->str, v->len, out, n) == 0;
}

/* metadata: an object of string, number and boolean values. */
static bool metadata_ok(const struct json_value *m) {
  if (m->type != JSON_OBJECT || m->len > 64) return false;
  for (size_t i = 0; i < m->len; i++) {
    enum json_type t = m->members[i].value->type;
    if (t != JSON_STRING && t != JSON_NUMBER && t != JSON_BOOL) return false;
  }
  return true;
}

int hs_parse(const uint8_t *payload, size_t len, const uint8_t origin[ENV_NODE_ID_LEN],
             struct hs_hello *h, uint8_t sig[ID_SIG_LEN], int *close_code, char *why,
             size_t whycap) {
  if (len > HS_MAX_PAYLOAD)
    return fail(4000, close_code, why, whycap, "handshake payload too large");
  struct json_doc doc;
  char err[96];
  if (json_parse((const char *)payload, len, &doc, err, sizeof err) != 0) {
    char msg[160];
    snprintf(msg, sizeof msg, "handshake is not valid JSON (%s)", err);
    return fail(4000, close_code, why, whycap, msg);
  }
  const struct json_value *root = doc.root;
  const struct json_value *step = json_get_string(root, "step");
  int rc = -1;
  if (step && strcmp(step->str, "auth") == 0) {
    if (!hex_field(root, "signature", sig, ID_SIG_LEN)) {
      fail(4000, close_code, why, whycap, "auth without a 128-hex-digit signature");
      goto out;
    }
    rc = HS_STEP_AUTH;
    goto out;
  }
  if (step == NULL || strcmp(step->str, "hello") != 0) {
    fail(4000, close_code, why, whycap, "handshake step must be \"hello\" or \"auth\"");
    goto out;
  }
  memset(h, 0, sizeof *h);
  long long v;
  const struct json_value *net = json_get_string(root, "networkId");
  const struct json_value *meta = json_get(root, "metadata");
  const struct json_value *t = json_get_number(root, "time");
  if (!json_get_int(root, "version", 0, 255, &v)) {
    fail(4000, close_code, why, whycap, "hello without an integer version");
  } else if (net == NULL || net->len == 0 || net->len > HS_MAX_NETWORK_ID ||
             strlen(net->str) != net->len) {
    fail(4000, close_code, why, whycap, "hello without a networkId of 1..64 characters");
  } else if (!hex_field(root, "publicKey", h->pub, ID_PUBKEY_LEN)) {
    fail(4000, close_code, why, whycap, "hello without a 64-hex-digit publicKey");
  } else if (!hex_field(root, "nodeId", h->node_id, ENV_NODE_ID_LEN)) {
    fail(4000, close_code, why, whycap, "hello without a 40-hex-digit nodeId");
  } else if (!hex_field(root, "nonce", h->nonce, HS_NONCE_LEN)) {
    fail(4000, close_code, why, whycap, "hello without a 64-hex-digit nonce");
  } else if (t == NULL) {
    fail(4000, close_code, why, whycap, "hello without a time");
  } else if (meta && !metadata_ok(meta)) {
    fail(4000, close_code, why, whycap,
         "hello metadata must be an object of string, number and boolean values");
  } else {
    h->version = (int)v;
    memcpy(h->network_id, net->str, net->len + 1);
    h->time_ms = t->num;
    long long port = 0, height = 0;
    if (json_get(root, "listenPort") && !json_get_int(root, "listenPort", 0, 65535, &port)) {
      fail(4000, close_code, why, whycap, "hello listenPort must be an integer 0..65535");
      goto out;
    }
    if (json_get(root, "height") && !json_get_int(root, "height", 0, (1LL << 53), &height)) {
      fail(4000, close_code, why, whycap, "hello height must be a non-negative integer");
      goto out;
    }
    h->listen_port = (int)port;
    const struct json_value *tls = json_get(root, "tls");
    if (tls && tls->type != JSON_BOOL) {
      fail(4000, close_code, why, whycap, "hello tls must be a boolean");
      goto out;
    }
    h->listen_tls = tls && tls->b;
    h->height = height;
    uint8_t derived[ENV_NODE_ID_LEN];
    identity_id_of(h->pub, derived);
    if (memcmp(derived, h->node_id, ENV_NODE_ID_LEN) != 0) {
      fail(4001, close_code, why, whycap, "nodeId is not derived from publicKey");
      goto out;
    }
    if (memcmp(origin, h->node_id, ENV_NODE_ID_LEN) != 0) {
      fail(4001, close_code, why, whycap, "envelope origin differs from nodeId");
      goto out;
    }
    struct buf m = {0};
    if (meta) json_write_value(&m, meta);
    else buf_append(&m, "{}", 2);
    if (m.len > HS_MAX_METADATA) {
      buf_free(&m);
      fail(4000, close_code, why, whycap, "hello metadata larger than 4 KiB");
      goto out;
    }
    const struct json_value *cv = json_get(root, "candidates");
    struct cand cands[CAND_MAX];
    int bad, nc = cv ? cand_parse_json(cv, cands, CAND_MAX, &bad) : 0;
    if (nc < 0) {
      buf_free(&m);
      fail(4000, close_code, why, whycap, "hello candidates must be an array of at most 32 entries");
      goto out;
    }
    h->metadata_json = m.data;
    const struct json_value *val = json_get(meta, "isValidator");
    h->claims_validator = val && val->type == JSON_BOOL && val->b;
    hs_hello_set_candidates(h, cands, nc); /* malformed entries are skipped */
    rc = HS_STEP_HELLO;
  }
out:
  json_free(&doc);
  return rc;
}

size_t hs_transcript(uint8_t out[HS_TRANSCRIPT_MAX], bool signer_is_dialer,
                     const char *network_id, const uint8_t dialer_id[ENV_NODE_ID_LEN],
                     const uint8_t listener_id[ENV_NODE_ID_LEN],
                     const uint8_t dialer_nonce[HS_NONCE_LEN],
                     const uint8_t listener_nonce[HS_NONCE_LEN]) {
  size_t n = 0, nl = strlen(network_id);
  if (nl > HS_MAX_NETWORK_ID) nl = HS_MAX_NETWORK_ID;
  memcpy(out, "bt2c/handshake/v1", 17);
  n = 17;
  out[n++] = signer_is_dialer ? 0x01 : 0x02;
  out[n++] = HS_PROTOCOL_VERSION;
  out[n++] = (uint8_t)nl;
  memcpy(out + n, network_id, nl);
  n += nl;
  memcpy(out + n, dialer_id, ENV_NODE_ID_LEN);
  n += ENV_NODE_ID_LEN;
  memcpy(out + n, listener_id, ENV_NODE_ID_LEN);
  n += ENV_NODE_ID_LEN;
  memcpy(out + n, dialer_nonce, HS_NONCE_LEN);
  n += HS_NONCE_LEN;
  memcpy(out + n, listener_nonce, HS_NONCE_LEN);
  n += HS_NONCE_LEN;
  return n;
}
