/* policy: PLACEHOLDER (being written) so the rest links. */
#include "policy.h"

#include <stdlib.h>

struct policy_host { unsigned long generation; };

struct policy_host *policy_host_new(const struct policy_limits *limits, const char *config_literal) {
  (void)limits; (void)config_literal;
  return calloc(1, sizeof(struct policy_host));
}
void policy_host_free(struct policy_host *h) { free(h); }
int policy_reload(struct policy_host *h, const char *dir, struct conf_errors *errs) {
  (void)dir; (void)errs; h->generation++; return 0;
}
unsigned long policy_generation(const struct policy_host *h) { return h->generation; }
int policy_check_dir(const struct policy_limits *limits, const char *config_literal,
                     const char *dir, struct conf_errors *errs) {
  (void)limits; (void)config_literal; (void)dir; (void)errs; return 0;
}
void policy_push_stats(lua_State *L, const struct policy_host *h) { (void)h; lua_newtable(L); }
