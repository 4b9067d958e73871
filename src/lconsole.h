/* lconsole: the node's trusted Lua state and its bindings.
 *
 * The state the console (and node-side Lua such as event handlers) runs in:
 * the full standard library, node Lua modules (lua/NAME.lua) on require, cjson,
 * and the operator's tables: `policy`, `node`, `config` (and, as the node
 * grows, `network`, `scoring`, `relay`, `nat`, `peerstore`).
 *
 * Must not: be reachable from the policies' sandboxes, or call into the
 * transport except through the node's public functions.
 */
#ifndef BT2C_LCONSOLE_H
#define BT2C_LCONSOLE_H

#include <stddef.h>

#include <lua.h>

struct node;

/* Creates the trusted state for n, or returns NULL after logging why. */
lua_State *lconsole_open(struct node *n);
void lconsole_close(lua_State *L);

/* Where `print` goes while a console command runs; NULL sends it to the log. */
typedef void (*lconsole_sink)(void *ud, const char *s, size_t len);
void lconsole_set_sink(lua_State *L, lconsole_sink sink, void *ud);

/* [-(nargs + 1), +(nres or 1), -] Calls the function below the nargs
 * arguments in protected mode, with a traceback on error, under a wall-clock
 * budget of timeout_ms that a pcall inside the code cannot escape. Returns a
 * lua_pcall status; on error the message is on the stack (a timeout says so). */
int lconsole_pcall(lua_State *L, int nargs, int nres, int timeout_ms);

#endif
