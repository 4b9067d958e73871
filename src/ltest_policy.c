/* ltest_policy: spec bindings for policy (placeholder until written). */
#include "ltest.h"

void ltest_policy(lua_State *L) { (void)L; }
