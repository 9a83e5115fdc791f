// Process set-up for a supervisor (shimd): detaching from the launcher, signals as a
// file descriptor, malloc settings for a small resident size, and receiving a
// descriptor over a unix socket (runc's console socket).
#define _GNU_SOURCE
#include "CCrispSys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int count_threads(void) {
  DIR *dir = opendir("/proc/self/task");
  if (!dir) return -1;
  int count = 0;
  struct dirent *entry;
  while ((entry = readdir(dir)) != NULL) {
    if (entry->d_name[0] != '.') count++;
  }
  closedir(dir);
  return count;
}

static void write_all(int fd, const char *buffer, size_t length) {
  while (length > 0) {
    ssize_t n = write(fd, buffer, length);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    buffer += n;
    length -= (size_t)n;
  }
}

// The launching process: waits for the report, reaps the intermediate child, exits.
static void _Noreturn wait_for_report(int read_fd, pid_t intermediate) {
  char report[4096];
  size_t used = 0;
  for (;;) {
    ssize_t n = read(read_fd, report + used, sizeof report - 1 - used);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    used += (size_t)n;
    if (used == sizeof report - 1) break;
  }
  report[used] = 0;
  int status = 0;
  while (waitpid(intermediate, &status, 0) < 0 && errno == EINTR) {
  }
  if (used >= 2 && strncmp(report, "ok", 2) == 0) _exit(0);
  if (used == 0) {
    static const char message[] = "shimd: the detached shim exited before it was ready\n";
    write_all(2, message, sizeof message - 1);
  } else {
    write_all(2, report, used);
    if (report[used - 1] != '\n') write_all(2, "\n", 1);
  }
  _exit(1);
}

int crisp_daemonize(int *ready_fd) {
  if (count_threads() != 1) {
    errno = EBUSY;
    return -1;
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  pid_t first = fork();
  if (first < 0) {
    int saved = errno;
    close(fds[0]);
    close(fds[1]);
    errno = saved;
    return -1;
  }
  if (first > 0) {
    close(fds[1]);
    wait_for_report(fds[0], first);
  }

  // The intermediate child: forks the shim and exits, so that the shim's parent is
  // the nearest subreaper (or init), never the launcher.
  close(fds[0]);
  pid_t second = fork();
  if (second < 0) {
    char message[128];
    int length = snprintf(message, sizeof message, "shimd: cannot fork: %s\n", strerror(errno));
    write_all(fds[1], message, (size_t)length);
    _exit(1);
  }
  if (second > 0) _exit(0);

  // The shim.
  if (setsid() < 0) {
    char message[128];
    int length = snprintf(message, sizeof message, "shimd: setsid: %s\n", strerror(errno));
    write_all(fds[1], message, (size_t)length);
    _exit(1);
  }
  umask(022);
  if (chdir("/") != 0) {
    // "/" always exists; nothing relies on the working directory.
  }
  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd >= 0) {
    dup2(null_fd, 0);
    dup2(null_fd, 1);
    dup2(null_fd, 2);
    if (null_fd > 2) close(null_fd);
  }
  // Descriptors the launcher leaked (without close-on-exec) must not keep its
  // sockets or pipes open for the shim's lifetime.
  DIR *dir = opendir("/proc/self/fd");
  if (dir) {
    int dir_fd = dirfd(dir);
    struct dirent *entry;
    int to_close[1024];
    int count = 0;
    while ((entry = readdir(dir)) != NULL && count < 1024) {
      int fd = atoi(entry->d_name);
      if (entry->d_name[0] == '.' || fd <= 2 || fd == dir_fd || fd == fds[1]) continue;
      to_close[count++] = fd;
    }
    closedir(dir);
    for (int i = 0; i < count; i++) close(to_close[i]);
  }
  *ready_fd = fds[1];
  return 0;
}

int crisp_signal_fd(const int *signals, int count) {
  sigset_t set;
  sigemptyset(&set);
  for (int i = 0; i < count; i++) sigaddset(&set, signals[i]);
  if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) return -1;
  return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

int crisp_read_signal(int fd) {
  struct signalfd_siginfo info;
  for (;;) {
    ssize_t n = read(fd, &info, sizeof info);
    if (n == (ssize_t)sizeof info) return (int)info.ssi_signo;
    if (n < 0 && errno == EINTR) continue;
    if (n >= 0) errno = EIO;
    return -1;
  }
}

void crisp_malloc_small(void) {
  // One arena for all threads (each extra arena keeps its own touched pages), and a
  // fixed mmap threshold: glibc otherwise raises it after a large buffer is freed,
  // and later large buffers then stay in the heap after they are freed.
  mallopt(M_ARENA_MAX, 1);
  mallopt(M_MMAP_THRESHOLD, 64 * 1024);
  mallopt(M_TRIM_THRESHOLD, 128 * 1024);
}

void crisp_malloc_trim(void) { malloc_trim(0); }

int crisp_recv_fd(int socket_fd) {
  // runc sends the console's name as data (up to 4 KiB) with the descriptor.
  char name[4096];
  struct iovec iov = {.iov_base = name, .iov_len = sizeof name};
  union {
    struct cmsghdr header;
    char space[CMSG_SPACE(sizeof(int))];
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr message = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space, .msg_controllen = sizeof control.space};
  ssize_t n;
  while ((n = recvmsg(socket_fd, &message, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  if (n < 0) return -1;
  for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&message); cmsg; cmsg = CMSG_NXTHDR(&message, cmsg)) {
    if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS && cmsg->cmsg_len == CMSG_LEN(sizeof(int))) {
      int fd;
      memcpy(&fd, CMSG_DATA(cmsg), sizeof fd);
      return fd;
    }
  }
  errno = EBADMSG;
  return -1;
}

void crisp_release_unused_stack(void) {
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) != 0) return;
  void *address = NULL;
  size_t size = 0;
  int rc = pthread_attr_getstack(&attr, &address, &size);
  pthread_attr_destroy(&attr);
  if (rc != 0) return;
  char marker = 0;
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  // Keep 16 KiB below this frame for what the thread calls next.
  uintptr_t high = (((uintptr_t)&marker) - 16 * 1024) & ~(page - 1);
  uintptr_t low = ((uintptr_t)address + page - 1) & ~(page - 1);
  // The range may begin below the mapped part of a growing main stack: the kernel
  // still releases the mapped pages (and reports ENOMEM for the hole).
  if (high > low) madvise((void *)low, high - low, MADV_DONTNEED);
}
