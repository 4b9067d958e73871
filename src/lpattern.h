/* lpattern: the worst-case cost of a Lua pattern match, so a policy's
 * string.find/match/gmatch/gsub can be refused before C runs it (pattern
 * matching executes no VM instructions, so the instruction budget cannot
 * stop it). Pure arithmetic over the pattern text.
 *
 * Must not: match anything itself, or know about Lua states.
 */
#ifndef BT2C_LPATTERN_H
#define BT2C_LPATTERN_H

#include <stdbool.h>
#include <stddef.h>

/* Calls above this estimate are refused. */
#define LPATTERN_LIMIT 1e7

/* Estimated steps for subject length `len` and pattern p; an anchored
 * pattern counts as anchored only if honour_anchor (not for gmatch).
 * INFINITY for a pattern longer than 1024 bytes. */
double lpattern_cost(size_t len, const char *p, size_t plen, bool honour_anchor);

#endif
