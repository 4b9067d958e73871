/* resolve: see resolve.h. */
#include "resolve.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A pending getaddrinfo_a request. glibc's worker thread writes into it, so
 * it is on the heap and, if it cannot be cancelled at stop, left there. */
struct resolve {
  struct gaicb cb;
  struct addrinfo hints;
  char host[256];
  char service[8];
};

const char resolve_no_memory[] = "out of memory";

struct resolve *resolve_start(const char *host, uint16_t port, const struct addrinfo *hints,
                              const char **err) {
  struct resolve *r = calloc(1, sizeof *r);
  if (r == NULL) {
    *err = resolve_no_memory;
    return NULL;
  }
  snprintf(r->host, sizeof r->host, "%s", host);
  snprintf(r->service, sizeof r->service, "%u", (unsigned)port);
  r->hints.ai_flags = hints->ai_flags;
  r->hints.ai_family = hints->ai_family;
  r->hints.ai_socktype = hints->ai_socktype;
  r->hints.ai_protocol = hints->ai_protocol;
  r->cb.ar_name = r->host;
  r->cb.ar_service = r->service;
  r->cb.ar_request = &r->hints;
  struct gaicb *list[1] = {&r->cb};
  int e = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
  if (e != 0) {
    free(r);
    *err = gai_strerror(e);
    return NULL;
  }
  return r;
}

enum resolve_status resolve_poll(struct resolve *r, const struct addrinfo **list,
                                 const char **err) {
  int e = gai_error(&r->cb);
  if (e == EAI_INPROGRESS) return RESOLVE_PENDING;
  if (e != 0) {
    *err = gai_strerror(e);
    return RESOLVE_FAILED;
  }
  *list = r->cb.ar_result;
  return RESOLVE_DONE;
}

void resolve_free(struct resolve *r) {
  if (r == NULL) return;
  if (gai_error(&r->cb) == 0 && r->cb.ar_result) freeaddrinfo(r->cb.ar_result);
  free(r);
}

/* Cancels a lookup at stop. One that a glibc thread is working on cannot be
 * cancelled: wait a little, and if it is still running leave its memory to
 * it rather than free what it will write to. */
bool resolve_abandon(struct resolve *r, int wait_s) {
  if (r == NULL) return false;
  if (gai_cancel(&r->cb) == EAI_NOTCANCELED) {
    const struct gaicb *list[1] = {&r->cb};
    struct timespec ts = {wait_s, 0};
    gai_suspend(list, 1, &ts);
  }
  if (gai_error(&r->cb) == EAI_INPROGRESS) return true;
  resolve_free(r);
  return false;
}
