/* main: command line, signals, and the run loop of bt2cd (skeleton). */
#include <stdio.h>
#include <string.h>

#include "log.h"

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "--version") == 0) {
    printf("bt2cd %s\n", BT2C_VERSION);
    return 0;
  }
  log_at(LV_INFO, "start", "version=%s", BT2C_VERSION);
  return 0;
}
