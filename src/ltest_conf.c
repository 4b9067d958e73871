/* ltest_conf: spec bindings for conf (placeholder until written). */
#include "ltest.h"

void ltest_conf(lua_State *L) { (void)L; }
