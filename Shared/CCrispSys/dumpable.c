// PR_SET_DUMPABLE for the daemons: prctl is variadic, hidden from Swift.
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>

#include "CCrispSys.h"

int crisp_set_dumpable(int on) { return prctl(PR_SET_DUMPABLE, on ? 1 : 0, 0, 0, 0); }

int crisp_get_dumpable(void) { return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0); }

// A crashing daemon becomes dumpable again before the Swift runtime's handler runs: its
// backtracer, a child without capabilities, must read the crashed process's memory to
// name the functions, which a process that is not dumpable refuses it.
static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGABRT};
#define CRASH_SIGNALS (sizeof(crash_signals) / sizeof(crash_signals[0]))
static struct sigaction previous[CRASH_SIGNALS];

static void on_crash(int sig, siginfo_t *info, void *context) {
  prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
  for (unsigned i = 0; i < CRASH_SIGNALS; i++) {
    if (crash_signals[i] != sig) continue;
    struct sigaction *old = &previous[i];
    if (old->sa_flags & SA_SIGINFO) {
      if (old->sa_sigaction) {
        old->sa_sigaction(sig, info, context);
        return;
      }
    } else if (old->sa_handler != SIG_DFL && old->sa_handler != SIG_IGN) {
      old->sa_handler(sig);
      return;
    }
    // No handler before ours: the default action, with the signal raised again on return.
    signal(sig, SIG_DFL);
    return;
  }
}

int crisp_dumpable_when_crashing(void) {
  for (unsigned i = 0; i < CRASH_SIGNALS; i++) {
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_sigaction = on_crash;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    if (sigaction(crash_signals[i], &action, &previous[i]) != 0) return -1;
  }
  return 0;
}
