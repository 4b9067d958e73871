/* wstls: TLS for wss:// dials under bt2cd's own WebSocket client.
 *
 * lws 4.1.6's raw role cannot carry a client TLS session (it starts the
 * handshake before the socket is connected: EBADF), and its WebSocket
 * client parses byte by byte. So a wss:// dial is a raw connection with an
 * OpenSSL session over memory BIOs: ciphertext read from the socket goes
 * into the session, plaintext comes out to wsdial.c; what wsdial.c sends is
 * encrypted into the session's output BIO and written raw. As with lws's
 * own wss dials, the server's certificate is not checked: a node's identity
 * comes from the bt2c handshake (docs/PROTOCOL.md section 4).
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "transport_int.h"

static SSL_CTX *client_ctx(struct transport *t) {
  if (t->tls_client) return t->tls_client;
  SSL_CTX *c = SSL_CTX_new(TLS_client_method());
  if (c == NULL) return NULL;
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  t->tls_client = c;
  return c;
}

void wstls_free_ctx(struct transport *t) {
  SSL_CTX_free(t->tls_client);
  t->tls_client = NULL;
}

/* OpenSSL's reason for the first queued error (a static string, e.g. "wrong
 * version number"), or `otherwise`; clears the queue. */
static const char *reason(const char *otherwise) {
  const char *r = ERR_reason_error_string(ERR_peek_error());
  ERR_clear_error();
  return r ? r : otherwise;
}

/* Writes what the session produced (handshake records, encrypted data). */
static int flush(struct peer *p, struct lws *wsi) {
  BIO *out = SSL_get_wbio(p->ws_tls);
  uint8_t buf[LWS_PRE + 16384];
  for (;;) {
    int n = BIO_read(out, buf + LWS_PRE, sizeof buf - LWS_PRE);
    if (n <= 0) return 0;
    if (lws_write(wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_RAW) < n) return -1;
  }
}

int wstls_start(struct transport *t, struct peer *p, struct lws *wsi, const char *host) {
  SSL_CTX *ctx = client_ctx(t);
  if (ctx == NULL) return -1;
  SSL *s = SSL_new(ctx);
  BIO *in = BIO_new(BIO_s_mem()), *out = BIO_new(BIO_s_mem());
  if (s == NULL || in == NULL || out == NULL) {
    SSL_free(s);
    BIO_free(in);
    BIO_free(out);
    return -1;
  }
  SSL_set_bio(s, in, out); /* s owns them now */
  SSL_set_connect_state(s);
  if (host[0] && strchr(host, ':') == NULL) SSL_set_tlsext_host_name(s, host); /* SNI: names only */
  p->ws_tls = s;
  int rc = SSL_do_handshake(s);
  if (rc != 1 && SSL_get_error(s, rc) != SSL_ERROR_WANT_READ) return -1;
  return flush(p, wsi);
}

int wstls_write(struct peer *p, struct lws *wsi, const uint8_t *buf, size_t n) {
  while (n) { /* into a memory BIO: it takes everything */
    size_t done = 0;
    if (SSL_write_ex(p->ws_tls, buf, n, &done) != 1) return -1;
    buf += done;
    n -= done;
  }
  return flush(p, wsi);
}

int wstls_read(struct peer *p, struct lws *wsi, const uint8_t *in, size_t len,
               int (*plain)(void *ud, const uint8_t *buf, size_t n), void *ud, bool *ready,
               const char **why) {
  SSL *s = p->ws_tls;
  *ready = false;
  if (len && BIO_write(SSL_get_rbio(s), in, (int)len) != (int)len) {
    *why = "out of memory";
    return -1;
  }
  if (!SSL_is_init_finished(s)) {
    int rc = SSL_do_handshake(s);
    if (rc != 1) {
      int e = SSL_get_error(s, rc);
      if (e != SSL_ERROR_WANT_READ) {
        *why = reason("handshake failed");
        return -1;
      }
      return flush(p, wsi);
    }
    *ready = true; /* the caller sends its request; the server says nothing before it */
    if (flush(p, wsi) != 0) return -1;
  }
  static uint8_t buf[65536]; /* plaintext: handed on synchronously */
  for (;;) {
    size_t n = 0;
    if (SSL_read_ex(s, buf, sizeof buf, &n) == 1) {
      int r = plain(ud, buf, n);
      if (r != 0) return r;
      continue;
    }
    int e = SSL_get_error(s, 0);
    if (flush(p, wsi) != 0) return -1; /* a read may produce records too */
    if (e == SSL_ERROR_WANT_READ) return 0;
    if (e == SSL_ERROR_ZERO_RETURN) {
      *why = "the server closed the session";
      return -1;
    }
    *why = reason("protocol error");
    return -1;
  }
}
