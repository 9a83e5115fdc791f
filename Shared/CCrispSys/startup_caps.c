#define _GNU_SOURCE
#include "CCrispSys.h"

#include <errno.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>

static char caps_result[64];
static int caps_ran = 0;

const char *crisp_startup_caps_result(void) { return caps_ran ? caps_result : NULL; }

static void record(const char *step, int err) {
  if (err == 0)
    snprintf(caps_result, sizeof caps_result, "ok");
  else
    snprintf(caps_result, sizeof caps_result, "error:%d:%s", err, step);
  caps_ran = 1;
}

__attribute__((constructor)) static void crisp_apply_startup_caps(void) {
  const char *spec = getenv("CRISP_KEEP_CAPS");
  if (!spec) return;
  int keep[64] = {0};
  char copy[512];
  snprintf(copy, sizeof copy, "%s", spec);
  for (char *save = NULL, *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int value = atoi(tok);
    if (value >= 0 && value < 64) keep[value] = 1;
  }
  // The variable must not reach the children (CNI plugins, runc).
  unsetenv("CRISP_KEEP_CAPS");

  int max = (int)cap_max_bits();
  for (int cap = 0; cap < max; cap++) {
    if (!keep[cap] && prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1 && cap_drop_bound((cap_value_t)cap) != 0) {
      record("bounding", errno);
      return;
    }
  }
  if (cap_reset_ambient() != 0) {
    record("ambient", errno);
    return;
  }
  cap_t caps = cap_init();
  if (!caps) {
    record("init", errno);
    return;
  }
  cap_value_t list[64];
  int count = 0;
  for (int cap = 0; cap < max; cap++)
    if (keep[cap]) list[count++] = (cap_value_t)cap;
  int rc = 0;
  if (count > 0) {
    rc = cap_set_flag(caps, CAP_EFFECTIVE, count, list, CAP_SET);
    if (rc == 0) rc = cap_set_flag(caps, CAP_PERMITTED, count, list, CAP_SET);
    if (rc == 0) rc = cap_set_flag(caps, CAP_INHERITABLE, count, list, CAP_SET);
  }
  if (rc == 0) rc = cap_set_proc(caps);
  int err = errno;
  cap_free(caps);
  if (rc != 0) {
    record("set", err);
    return;
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    record("no_new_privs", errno);
    return;
  }
  record("ok", 0);
}

int crisp_seccomp_rule_arg_eq(void *ctx, unsigned int action, int syscall, unsigned int arg, unsigned long long value) {
  struct scmp_arg_cmp cmp = {.arg = arg, .op = SCMP_CMP_EQ, .datum_a = value, .datum_b = 0};
  return seccomp_rule_add_array((scmp_filter_ctx)ctx, action, syscall, 1, &cmp);
}
