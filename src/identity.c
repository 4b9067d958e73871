/* identity: see identity.h. */
#include "identity.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

void hex_encode(const uint8_t *in, size_t len, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < len; i++) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 15];
  }
  out[2 * len] = '\0';
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int hex_decode(const char *hex, size_t hexlen, uint8_t *out, size_t len) {
  if (hexlen != 2 * len) return -1;
  for (size_t i = 0; i < len; i++) {
    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return -1;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}

void identity_id_of(const uint8_t pub[ID_PUBKEY_LEN], uint8_t id[ENV_NODE_ID_LEN]) {
  uint8_t digest[32];
  unsigned int n = 0;
  EVP_Digest(pub, ID_PUBKEY_LEN, digest, &n, EVP_sha256(), NULL);
  memcpy(id, digest, ENV_NODE_ID_LEN);
}

static int fill_public(struct identity *me) {
  size_t len = ID_PUBKEY_LEN;
  if (!EVP_PKEY_get_raw_public_key(me->pkey, me->pub, &len) || len != ID_PUBKEY_LEN) return -1;
  identity_id_of(me->pub, me->id);
  hex_encode(me->id, ENV_NODE_ID_LEN, me->id_hex);
  return 0;
}

int identity_generate(struct identity *me) {
  memset(me, 0, sizeof *me);
  EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
  EVP_PKEY *k = NULL;
  int ok = ctx && EVP_PKEY_keygen_init(ctx) > 0 && EVP_PKEY_keygen(ctx, &k) > 0;
  EVP_PKEY_CTX_free(ctx);
  if (!ok) return -1;
  me->pkey = k;
  if (fill_public(me) != 0) {
    identity_free(me);
    return -1;
  }
  return 0;
}

void identity_free(struct identity *me) {
  EVP_PKEY_free(me->pkey);
  me->pkey = NULL;
}

static int load_key(struct identity *me, const char *path, char *err, size_t errcap) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    snprintf(err, errcap, "%s: cannot open: %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || (st.st_mode & 077)) {
    close(fd);
    snprintf(err, errcap, "%s: the node key is readable by others; run: chmod 600 %s", path, path);
    return -1;
  }
  FILE *f = fdopen(fd, "r");
  EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
  if (f) fclose(f); else close(fd);
  if (k == NULL || EVP_PKEY_get_id(k) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(k);
    snprintf(err, errcap, "%s: not an Ed25519 private key in PEM form", path);
    return -1;
  }
  me->pkey = k;
  if (fill_public(me) != 0) {
    identity_free(me);
    snprintf(err, errcap, "%s: cannot read the public half of the key", path);
    return -1;
  }
  return 0;
}

int identity_load_or_create(struct identity *me, const char *dir, char *err, size_t errcap) {
  memset(me, 0, sizeof *me);
  char path[4096];
  snprintf(path, sizeof path, "%s/node.key", dir);
  if (access(path, F_OK) == 0) return load_key(me, path, err, errcap);

  if (identity_generate(me) != 0) {
    snprintf(err, errcap, "cannot generate an Ed25519 key");
    return -1;
  }
  /* Write to a temporary file created 0600, then rename: a crash never
   * leaves a half-written key behind. */
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  int ok = f && PEM_write_PrivateKey(f, me->pkey, NULL, NULL, 0, NULL, NULL) && fflush(f) == 0 &&
           fsync(fileno(f)) == 0;
  if (f) fclose(f); else if (fd >= 0) close(fd);
  if (!ok || rename(tmp, path) != 0) {
    snprintf(err, errcap, "%s: cannot write the node key: %s", path, strerror(errno));
    unlink(tmp);
    identity_free(me);
    return -1;
  }
  return 0;
}

int identity_sign(const struct identity *me, const void *msg, size_t len, uint8_t sig[ID_SIG_LEN]) {
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  size_t siglen = ID_SIG_LEN;
  int ok = c && EVP_DigestSignInit(c, NULL, NULL, NULL, me->pkey) > 0 &&
           EVP_DigestSign(c, sig, &siglen, msg, len) > 0 && siglen == ID_SIG_LEN;
  EVP_MD_CTX_free(c);
  return ok ? 0 : -1;
}

int identity_verify(const uint8_t pub[ID_PUBKEY_LEN], const void *msg, size_t len,
                    const uint8_t sig[ID_SIG_LEN]) {
  EVP_PKEY *k = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pub, ID_PUBKEY_LEN);
  EVP_MD_CTX *c = k ? EVP_MD_CTX_new() : NULL;
  int ok = c && EVP_DigestVerifyInit(c, NULL, NULL, NULL, k) > 0 &&
           EVP_DigestVerify(c, sig, ID_SIG_LEN, msg, len) == 1;
  EVP_MD_CTX_free(c);
  EVP_PKEY_free(k);
  return ok;
}
