/* resolve: one asynchronous host name lookup (glibc getaddrinfo_a,
 * GAI_NOWAIT) and its lifecycle, shared by the STUN client (nat_client.c)
 * and the TURN client (turn_alloc.c).
 *
 * Provides: start a lookup of host and port with the caller's hints; poll it
 * without blocking (pending, done with the addrinfo list, or failed with
 * gai_strerror's text); free it once it has finished; and abandon it at
 * stop or on a deadline, which cancels it and, when glibc's worker thread
 * is still writing into it, deliberately leaves its memory to that thread.
 * A handle is on the heap because that thread may outlive its owner.
 *
 * Must not: open sockets, start or know about timers and deadlines (the
 * owner polls from its own loop timer and decides when to give up), log,
 * choose among the addresses, or touch the owner's state.
 */
#ifndef BT2C_RESOLVE_H
#define BT2C_RESOLVE_H

#include <stdbool.h>
#include <stdint.h>

struct addrinfo;
struct resolve;

enum resolve_status {
  RESOLVE_PENDING, /* glibc is still working on it */
  RESOLVE_DONE,    /* *list is the answer (owned by the handle) */
  RESOLVE_FAILED,  /* *err is gai_strerror's text */
};

/* The error resolve_start gives when it cannot allocate the handle; compare
 * the pointer to tell it from getaddrinfo_a's own refusals. */
extern const char resolve_no_memory[];

/* Starts a lookup of host (truncated to 255 bytes) and port (a numeric
 * service: the hints should carry AI_NUMERICSERV). Only the hints' flags,
 * family, socktype and protocol are used. Returns the handle, or NULL with
 * *err set to resolve_no_memory or to gai_strerror's text. */
struct resolve *resolve_start(const char *host, uint16_t port, const struct addrinfo *hints,
                              const char **err);

/* Where the lookup is; never blocks. On RESOLVE_DONE *list is the answer
 * (it may be NULL), valid until resolve_free; on RESOLVE_FAILED *err is a
 * static text. */
enum resolve_status resolve_poll(struct resolve *r, const struct addrinfo **list,
                                 const char **err);

/* Frees a finished lookup (poll said done or failed) and its answer. */
void resolve_free(struct resolve *r);

/* Cancels a lookup, pending or not, and frees it. One a glibc thread is
 * working on cannot be cancelled: wait up to wait_s seconds for it, and if
 * it is still running return true, having left its memory to it rather
 * than freeing what it will write to. Returns false once freed. r may be
 * NULL. */
bool resolve_abandon(struct resolve *r, int wait_s);

#endif
