// crisp-pause: PID 1 of a pod whose containers share one PID namespace.
//
// It holds the namespace open while containers come and go, reaps the orphans the
// kernel re-parents to it (a shared PID namespace's init must, or zombies pile up),
// and exits cleanly on SIGINT/SIGTERM. It is linked statically so that the infra
// container's root filesystem needs nothing but this one file.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_terminate(int signal) {
  (void)signal;
  _exit(0);
}

static void reap(int signal) {
  (void)signal;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "-v") == 0) {
    puts("crisp-pause");
    return 0;
  }
  if (getpid() != 1) {
    // Not fatal: runc may be run with a PID namespace joined by path in tests.
    fprintf(stderr, "crisp-pause: warning: not PID 1\n");
  }
  struct sigaction terminate = {.sa_handler = on_terminate};
  struct sigaction child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP | SA_RESTART};
  if (sigaction(SIGINT, &terminate, NULL) < 0 || sigaction(SIGTERM, &terminate, NULL) < 0 ||
      sigaction(SIGCHLD, &child, NULL) < 0) {
    fprintf(stderr, "crisp-pause: sigaction: %s\n", strerror(errno));
    return 1;
  }
  for (;;) pause();
}
