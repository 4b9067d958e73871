/* console: the node's interactive Lua console on a Unix socket.
 *
 * Serves the framed protocol below to `bt2cd console` (cli_console.c) and
 * evaluates what it receives in the node's trusted Lua state with Lua's REPL
 * rules (lua/repl.lua), under a time budget per command. The state is shared
 * by every session and lives as long as the node. Every command is echoed to
 * the log.
 *
 * Protocol: both directions carry frames "<kind> <length>\n<length bytes>".
 *   client -> node: "line" (one interactive line; the node keeps an incomplete
 *                   chunk per session and answers "more" until it completes;
 *                   "jline" is the same with JSON results),
 *                   "eval" (a whole chunk, results pretty-printed),
 *                   "json" (a whole chunk, results as one JSON document).
 *   node -> client: zero or one "out" (what the command printed), then one of
 *                   "ok" (results), "err" (error text) or "more".
 *
 * Must not: evaluate anything outside the trusted state, or block the loop
 * beyond a command's budget.
 */
#ifndef BT2C_CONSOLE_H
#define BT2C_CONSOLE_H

#include <lua.h>

#include "loop.h"

struct console;

/* Listens on `path` (mode 0600, only the node's own user and root may talk to
 * it). Returns NULL after logging why. */
struct console *console_start(struct loop *l, lua_State *L, const char *path, int timeout_ms);

/* Closes every session and the listener, and removes the socket file. */
void console_stop(struct console *c);

/* Number of open sessions. */
int console_sessions(const struct console *c);

/* Limits one console frame (request or response) so a client cannot make the
 * node buffer without bound. */
#define CONSOLE_MAX_FRAME (16u << 20)

#endif
