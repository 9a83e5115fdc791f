// crisp-launcher: cri-frontd's privileged hand.
//
// cri-frontd serves the CRI with no capability and under a seccomp filter that
// refuses mount, setns and unshare. A filter is inherited by every child, so the
// programs that create containers (shimd, runc) cannot be started by frontd itself:
// frontd starts this launcher once, before it confines itself, and asks it to run
// them. The launcher keeps root's capabilities, runs only the executables named on
// its command line (shimd, the runtime handlers' binaries, umount), and exits when
// frontd closes its end.
//
// Protocol, on fd 3 (a SOCK_SEQPACKET socket; one message per request and reply):
//   request: u64 id, u32 timeout_ms, u32 argc, then argc NUL-terminated strings
//            (argv[0] is the executable's absolute path), then NUL-terminated
//            environment strings to the end of the message.
//   reply:   u64 id, i32 status (exit code; 128 + signal; -1 refused or not started,
//            with the reason in stderr; -2 timed out and killed), u32 stdout length,
//            stdout bytes, stderr bytes to the end. Each output is cut at 16 KiB.
// Requests run concurrently: a forked child per request, which writes its one reply.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { CHANNEL = 3, MAX_MESSAGE = 65536, MAX_OUTPUT = 16384, MAX_ARGS = 256 };

static char **allowed;
static int allowed_count;

static int is_allowed(const char *path) {
  for (int i = 0; i < allowed_count; i++)
    if (strcmp(allowed[i], path) == 0) return 1;
  return 0;
}

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void reply(uint64_t id, int32_t status, const char *out, uint32_t out_len, const char *err, uint32_t err_len) {
  static char message[16 + 2 * MAX_OUTPUT];
  memcpy(message, &id, 8);
  memcpy(message + 8, &status, 4);
  memcpy(message + 12, &out_len, 4);
  memcpy(message + 16, out, out_len);
  memcpy(message + 16 + out_len, err, err_len);
  send(CHANNEL, message, 16 + out_len + err_len, MSG_NOSIGNAL);
}

static void refuse(uint64_t id, const char *reason) { reply(id, -1, "", 0, reason, (uint32_t)strlen(reason)); }

// Runs one request in a forked child of the launcher and replies; never returns.
static void serve(const char *message, size_t length) {
  // The launcher lets the kernel reap its own children; this child waits for its own.
  struct sigaction wait_for_children = {.sa_handler = SIG_DFL};
  sigaction(SIGCHLD, &wait_for_children, NULL);
  uint64_t id;
  uint32_t timeout_ms, argc;
  memcpy(&id, message, 8);
  memcpy(&timeout_ms, message + 8, 4);
  memcpy(&argc, message + 12, 4);
  if (argc == 0 || argc > MAX_ARGS || message[length - 1] != '\0') {
    refuse(id, "crisp-launcher: malformed request");
    _exit(0);
  }
  char *argv[MAX_ARGS + 1];
  char *envp[MAX_ARGS + 1];
  int envc = 0;
  const char *p = message + 16, *end = message + length;
  for (uint32_t i = 0; i < argc; i++) {
    if (p >= end) {
      refuse(id, "crisp-launcher: malformed request");
      _exit(0);
    }
    argv[i] = (char *)p;
    p += strlen(p) + 1;
  }
  argv[argc] = NULL;
  while (p < end && envc < MAX_ARGS) {
    envp[envc++] = (char *)p;
    p += strlen(p) + 1;
  }
  envp[envc] = NULL;
  if (!is_allowed(argv[0])) {
    char reason[512];
    snprintf(reason, sizeof reason, "crisp-launcher: %s is not an executable it may run", argv[0]);
    refuse(id, reason);
    _exit(0);
  }

  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    refuse(id, "crisp-launcher: pipe failed");
    _exit(0);
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err[1], 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  pid_t pid;
  int rc = posix_spawn(&pid, argv[0], &actions, &attr, argv, envp);
  close(out[1]);
  close(err[1]);
  if (rc != 0) {
    char reason[512];
    snprintf(reason, sizeof reason, "crisp-launcher: cannot start %s: %s", argv[0], strerror(rc));
    refuse(id, reason);
    _exit(0);
  }

  static char outputs[2][MAX_OUTPUT];
  uint32_t lengths[2] = {0, 0};
  struct pollfd fds[2] = {{.fd = out[0], .events = POLLIN}, {.fd = err[0], .events = POLLIN}};
  int open_fds = 2, timed_out = 0;
  long long deadline = now_ms() + (timeout_ms ? timeout_ms : 60000);
  while (open_fds > 0) {
    long long left = deadline - now_ms();
    if (left <= 0) {
      timed_out = 1;
      kill(pid, SIGKILL);
      break;
    }
    if (poll(fds, 2, (int)left) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buffer[4096];
      ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        open_fds--;
        continue;
      }
      uint32_t room = MAX_OUTPUT - lengths[i];
      uint32_t take = (uint32_t)n < room ? (uint32_t)n : room;
      memcpy(outputs[i] + lengths[i], buffer, take);
      lengths[i] += take;
    }
  }
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  int32_t status = timed_out             ? -2
                   : WIFEXITED(wstatus)   ? WEXITSTATUS(wstatus)
                   : WIFSIGNALED(wstatus) ? 128 + WTERMSIG(wstatus)
                                          : -1;
  reply(id, status, outputs[0], lengths[0], outputs[1], lengths[1]);
  _exit(0);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: crisp-launcher EXECUTABLE... (requests on fd 3)\n");
    return 2;
  }
  allowed = argv + 1;
  allowed_count = argc - 1;
  if (fcntl(CHANNEL, F_SETFD, FD_CLOEXEC) != 0) {
    fprintf(stderr, "crisp-launcher: fd 3 is not open: %s\n", strerror(errno));
    return 2;
  }
  // Children are reaped as they finish; frontd's end closing ends the loop.
  struct sigaction reap = {.sa_handler = SIG_DFL, .sa_flags = SA_NOCLDWAIT};
  sigaction(SIGCHLD, &reap, NULL);
  signal(SIGPIPE, SIG_IGN);
  static char message[MAX_MESSAGE];
  for (;;) {
    ssize_t n = recv(CHANNEL, message, sizeof message, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    if (n < 17) continue;
    pid_t child = fork();
    if (child == 0) serve(message, (size_t)n);
    if (child < 0) {
      uint64_t id;
      memcpy(&id, message, 8);
      refuse(id, "crisp-launcher: fork failed");
    }
  }
}
