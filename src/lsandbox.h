/* lsandbox: a sandboxed lua_State and running code in it under limits.
 *
 * Provides: a state with a growth-capped allocator, only the safe libraries
 * (base without dofile/loadfile/load/collectgarbage/warn and with a
 * rate-limited print; string without dump and with guarded pattern matching;
 * table; math; utf8), text chunks only, read-only library tables, sealed
 * globals, and a protected call that enforces an instruction budget and a
 * wall-clock deadline which a pcall inside the sandboxed code cannot swallow
 * (checked every 1000 instructions and at every function call).
 *
 * Must not: know about policies, files or the node. It never raises into its
 * caller: every entry point that can allocate inside the sandbox runs
 * protected, so an exhausted sandbox never reaches the panic handler.
 */
#ifndef BT2C_LSANDBOX_H
#define BT2C_LSANDBOX_H

#include <stdbool.h>
#include <stddef.h>

#include <lua.h>

struct lsandbox_limits {
  long instructions; /* VM instructions per call */
  double time_ms;    /* wall clock per call */
};

enum lsandbox_status {
  LSANDBOX_OK,
  LSANDBOX_ERROR,   /* the code raised an error (or could not be loaded) */
  LSANDBOX_TIMEOUT, /* instruction budget or deadline exceeded */
  LSANDBOX_OOM      /* the allocator refused to grow the state */
};

/* A pattern whose estimated worst-case matching cost exceeds this is refused
 * by string.find/match/gmatch/gsub (see lsandbox.c, pattern_cost). */

struct lsandbox;

/* Creates a state capped at `memory` bytes. `name` labels print()/log lines.
 * `setup`, when not NULL, runs protected before the globals are sealed with
 * `ud` as a light userdata argument: the only moment new globals can be
 * added (with lua_setglobal). Returns NULL (and fills err) on failure. */
struct lsandbox *lsandbox_new(const char *name, size_t memory, lua_CFunction setup, void *ud,
                              char *err, size_t errcap);
void lsandbox_free(struct lsandbox *sb);
lua_State *lsandbox_state(struct lsandbox *sb);
const char *lsandbox_name(const struct lsandbox *sb);

/* The sandbox that owns L (for C functions running inside it). */
struct lsandbox *lsandbox_from_state(lua_State *L);

/* Bytes currently allocated by the state, and its cap. */
size_t lsandbox_memory(const struct lsandbox *sb);
size_t lsandbox_memory_cap(const struct lsandbox *sb);

/* [-0, +1, -] Loads a text chunk (binary chunks are refused). Pushes the
 * function, or nothing on failure (the message is in lsandbox_message()).
 * `chunkname` follows lua_load's convention ("@path", "=name"). */
enum lsandbox_status lsandbox_load(struct lsandbox *sb, const char *text, size_t len,
                                   const char *chunkname);

/* [-(nargs+1), +(nresults|0), -] Calls the function below the nargs arguments
 * under `lim`. On LSANDBOX_OK the results are pushed; otherwise nothing is,
 * the message (with a traceback for errors) is in lsandbox_message(), and if
 * the allocator refused, a full collection has run. Allocator refusals during
 * the call classify it as LSANDBOX_OOM even when the code caught them. */
enum lsandbox_status lsandbox_pcall(struct lsandbox *sb, int nargs, int nresults,
                                    const struct lsandbox_limits *lim, double *elapsed_ms);

/* The message of the last failed load or call ("" after a success). */
const char *lsandbox_message(const struct lsandbox *sb);
const char *lsandbox_status_name(enum lsandbox_status st);

/* [-0, +1, e] Pushes a read-only proxy for the table at idx. Nested tables
 * are proxied too (the original's fields are replaced by their proxies), so
 * nothing reachable from the proxy can be written. pairs, ipairs and # work. */
void lsandbox_readonly(lua_State *L, int idx, const char *name);

/* [-0, +1, -] Pushes the table behind a read-only proxy, or the value at idx
 * itself when it is not one. For C code that must read without metamethods. */
void lsandbox_unproxy(lua_State *L, int idx);

/* [-0, +0, -] on from; [-0, +1, m] on to. Pushes onto `to` an array of
 * copies of the n values at from[first..]: nil, booleans, numbers and
 * strings as they are, tables copied raw (no metamethods) two levels deep,
 * anything else as "<type>". For tests and diagnostics. */
void lsandbox_copy_out(lua_State *from, int first, int n, lua_State *to);

#endif
