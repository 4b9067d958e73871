/* loop: the single-threaded event loop, owned by libwebsockets.
 *
 * Provides the lws context, an internal vhost for descriptors that are not
 * WebSocket peers (the console socket, the signal pipe), watched descriptors
 * with callbacks, and timers. Everything runs on the one thread; no locks.
 *
 * Must not: know what the descriptors carry (console, peers); it only routes
 * readiness to the callbacks registered here.
 */
#ifndef BT2C_LOOP_H
#define BT2C_LOOP_H

#include <stdbool.h>
#include <stddef.h>

#include <libwebsockets.h>

struct loop {
  struct lws_context *ctx;
  struct lws_vhost *internal; /* raw descriptors */
  bool stop;                  /* loop_run returns once set */
};

/* A watched descriptor. Fill fd and the callbacks, then loop_watch().
 * on_readable must read what it can (descriptors are non-blocking).
 * on_writable runs once after each loop_want_write().
 * on_close runs once when the watch ends, whoever ended it; the descriptor is
 * closed by the loop and the struct may be freed inside on_close.
 * loop_detach() ends the callbacks without closing: the loop closes the
 * descriptor when it is destroyed. */
struct loop_io {
  int fd;
  void *user;
  void (*on_readable)(struct loop_io *io);
  void (*on_writable)(struct loop_io *io);
  void (*on_close)(struct loop_io *io);
  /* private */
  struct lws *wsi;
  bool closing;
};

int loop_init(struct loop *l);
void loop_free(struct loop *l);

/* Runs until l->stop; `after_each` (may be NULL) runs after every service pass. */
void loop_run(struct loop *l, void (*after_each)(void *), void *arg);

int loop_watch(struct loop *l, struct loop_io *io);
void loop_want_write(struct loop_io *io);
/* Ends the watch soon (from the loop, not inside this call). */
void loop_close(struct loop_io *io);
void loop_detach(struct loop_io *io);

struct loop_timer {
  lws_sorted_usec_list_t sul; /* first: the loop finds the timer from it */
  struct loop *l;
  void (*fn)(struct loop_timer *t);
  void *user;
};

/* (Re)arms t to call fn once after `ms` milliseconds. */
void loop_timer_start(struct loop *l, struct loop_timer *t, double ms,
                      void (*fn)(struct loop_timer *t));
void loop_timer_stop(struct loop_timer *t);

#endif
