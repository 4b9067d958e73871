/* standalone: runs a libFuzzer target without libFuzzer, so the suite
 * exercises every fuzz target with any compiler: each seed file given on the
 * command line, then N deterministic mutations of them (byte flips, inserts,
 * deletions, splices). `make fuzz` builds the real coverage-guided fuzzers. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next(void) { /* xorshift64* */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 2685821657736338717ULL;
}

static uint8_t *read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *b = malloc(n > 0 ? (size_t)n : 1);
  *len = b && n > 0 ? fread(b, 1, (size_t)n, f) : 0;
  fclose(f);
  return b;
}

int main(int argc, char **argv) {
  long iterations = 20000;
  int first = 1;
  if (argc > 2 && strcmp(argv[1], "-n") == 0) {
    iterations = atol(argv[2]);
    first = 3;
  }
  int nseeds = argc - first;
  uint8_t **seeds = calloc((size_t)(nseeds ? nseeds : 1), sizeof *seeds);
  size_t *lens = calloc((size_t)(nseeds ? nseeds : 1), sizeof *lens);
  for (int i = 0; i < nseeds; i++) {
    seeds[i] = read_file(argv[first + i], &lens[i]);
    if (!seeds[i]) {
      fprintf(stderr, "cannot read %s\n", argv[first + i]);
      return 2;
    }
    LLVMFuzzerTestOneInput(seeds[i], lens[i]);
  }
  size_t cap = 1 << 16;
  uint8_t *buf = malloc(cap);
  for (long it = 0; it < iterations; it++) {
    size_t n = 0;
    if (nseeds) {
      int s = (int)(next() % (uint64_t)nseeds);
      n = lens[s] < cap ? lens[s] : cap;
      memcpy(buf, seeds[s], n);
    }
    int edits = 1 + (int)(next() % 8);
    for (int e = 0; e < edits; e++) {
      uint64_t r = next();
      size_t pos = n ? (size_t)(r >> 8) % n : 0;
      switch (r % 5) {
        case 0: if (n) buf[pos] ^= (uint8_t)(1u << ((r >> 40) % 8)); break;
        case 1: if (n) buf[pos] = (uint8_t)(r >> 32); break;
        case 2: if (n < cap) { memmove(buf + pos + 1, buf + pos, n - pos); buf[pos] = (uint8_t)(r >> 24); n++; } break;
        case 3: if (n) { memmove(buf + pos, buf + pos + 1, n - pos - 1); n--; } break;
        case 4: if (n) n = pos; break; /* truncate */
      }
    }
    LLVMFuzzerTestOneInput(buf, n);
  }
  printf("%ld inputs, no crash\n", iterations + nseeds);
  free(buf);
  for (int i = 0; i < nseeds; i++) free(seeds[i]);
  free(seeds);
  free(lens);
  return 0;
}
