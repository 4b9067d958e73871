/* Fuzz target: handshake payloads (handshake.c). */
#include <stdint.h>
#include <string.h>

#include "handshake.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t origin[ENV_NODE_ID_LEN] = {0};
  struct hs_hello h;
  uint8_t sig[ID_SIG_LEN];
  int code = 0;
  char why[160];
  int step = hs_parse(data, size, origin, &h, sig, &code, why, sizeof why);
  if (step == HS_STEP_HELLO) {
    if (h.metadata_json == NULL) __builtin_trap();
    hs_hello_free(&h);
  } else if (step < 0 && code != 4000 && code != 4001) {
    __builtin_trap();
  }
  return 0;
}
