/* chain_jcs: the canonical JSON of RFC 8785 (JCS), the form in which
 * blocks and transactions are hashed and stored (docs/PROTOCOL.md 7.2):
 * members sorted by their UTF-16 code units, numbers as ECMAScript's
 * Number::toString writes them, strings with the minimal escapes.
 *
 * Must not: judge what a value means (chain.c's checks do), or accept an
 * object with a duplicate member name.
 */
#ifndef BT2C_CHAIN_JCS_H
#define BT2C_CHAIN_JCS_H

#include <stddef.h>

#include "buf.h"
#include "json.h"

/* Appends the canonical JSON (RFC 8785, JCS) of v to out. At the top level
 * of an object, the member `skip` (may be NULL) is left out. Returns 0, or -1
 * with a reason (a duplicate member name) in err. */
int jcs_canonical(struct buf *out, const struct json_value *v, const char *skip, char *err,
                  size_t errcap);
/* Appends the JCS form of a number (ECMAScript Number::toString). */
void jcs_number(struct buf *out, double x);

/* jcs_canonical with one more rule at the top level: the value of the member
 * override_key (may be NULL) is written as override_json, which must
 * already be canonical. */
int jcs_value(struct buf *b, const struct json_value *v, const char *skip,
              const char *override_key, const char *override_json, char *err, size_t errcap);

#endif
