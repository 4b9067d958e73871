/* micro: per-message costs of the bt2c core that the throughput profiles
 * point at, timed in isolation against the sources in src/.
 *
 *   cc -O2 -D_GNU_SOURCE -Isrc -o /tmp/bt2c-micro tools/bench/micro.c \
 *      src/json.c src/buf.c src/envelope.c -lcrypto -lm && /tmp/bt2c-micro
 *
 * (from the repository root; the same flags as the RelWithDebInfo build but
 * without -g). Prints one line per case: nanoseconds per call, median of 5
 * batches. Use it to check a change to json_valid or env_message_id
 * (docs/BENCHMARKS.md, suggestions 1 and 4) before running tools/bench/run.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "envelope.h"
#include "json.h"

#define BATCHES 5
#define CALLS 100000

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static volatile unsigned sink;

static double time_valid(const char *doc, size_t len) {
  double t[BATCHES];
  for (int b = 0; b < BATCHES; b++) {
    double t0 = now_s();
    for (int i = 0; i < CALLS; i++) sink += json_valid(doc, len);
    t[b] = (now_s() - t0) / CALLS * 1e9;
  }
  qsort(t, BATCHES, sizeof t[0], cmp_double);
  return t[BATCHES / 2];
}

static double time_id(const char *doc, size_t len) {
  double t[BATCHES];
  uint8_t id[ENV_MSG_ID_LEN];
  for (int b = 0; b < BATCHES; b++) {
    double t0 = now_s();
    for (int i = 0; i < CALLS; i++) {
      env_message_id(MSG_BLOCK, doc, len, id);
      sink += id[0];
    }
    t[b] = (now_s() - t0) / CALLS * 1e9;
  }
  qsort(t, BATCHES, sizeof t[0], cmp_double);
  return t[BATCHES / 2];
}

int main(void) {
  /* the throughput benchmark's payload: 960 bytes, mostly one ASCII string */
  static char padded[2048];
  int n = snprintf(padded, sizeof padded, "{\"height\":1000001,\"pad\":\"");
  memset(padded + n, 'x', 933);
  n += 933;
  n += snprintf(padded + n, sizeof padded - (size_t)n, "\"}");

  /* a block shaped like PROTOCOL.md section 7: hashes, numbers, 6 transactions */
  static char block[4096];
  int m = snprintf(block, sizeof block,
                   "{\"hash\":\"%064d\",\"height\":12,\"previousHash\":\"%064d\","
                   "\"timestamp\":1764000000000,\"transactions\":[",
                   7, 6);
  for (int i = 0; i < 6; i++)
    m += snprintf(block + m, sizeof block - (size_t)m,
                  "%s{\"hash\":\"%064d\",\"from\":\"alice\",\"to\":\"bob\",\"amount\":1.5,"
                  "\"fee\":0.01,\"nonce\":%d,\"timestamp\":1764000000000}",
                  i ? "," : "", i, i);
  m += snprintf(block + m, sizeof block - (size_t)m, "]}");

  if (!json_valid(padded, (size_t)n) || !json_valid(block, (size_t)m)) {
    fprintf(stderr, "micro: a test document is not valid JSON\n");
    return 1;
  }
  printf("json_valid, %4d-byte padded payload: %7.0f ns\n", n, time_valid(padded, (size_t)n));
  printf("json_valid, %4d-byte block:          %7.0f ns\n", m, time_valid(block, (size_t)m));
  printf("env_message_id, %4d-byte payload:    %7.0f ns\n", n, time_id(padded, (size_t)n));
  return 0;
}
