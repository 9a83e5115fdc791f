#define _GNU_SOURCE
#include "CCrispSys.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

// What the child is asked to do; it shares our memory (CLONE_VM) and writes back `err`.
struct pin_request {
  int kinds;
  const char *paths[3];  // net, ipc, uts
  const char *hostname;
  const char *const *sysctl_paths;
  const char *const *sysctl_values;
  int sysctl_count;
  crisp_pin_error err;
};

static int fail(struct pin_request *req, int step, int index) {
  req->err.step = step;
  req->err.index = index;
  req->err.error = errno;
  return 1;
}

static void unmount_pins(struct pin_request *req, int upto) {
  for (int i = 0; i < upto; i++) {
    if ((req->kinds & (1 << i)) && req->paths[i]) umount2(req->paths[i], MNT_DETACH);
  }
}

// Runs in the new namespaces. Only system calls: it shares the parent's memory.
static int pin_child(void *arg) {
  struct pin_request *req = arg;
  if ((req->kinds & CRISP_NS_UTS) && req->hostname && req->hostname[0]) {
    if (sethostname(req->hostname, strlen(req->hostname)) != 0) return fail(req, 2, 0);
  }
  for (int i = 0; i < req->sysctl_count; i++) {
    int dirfd = open("/proc/sys", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0) return fail(req, 3, i);
    int fd = openat(dirfd, req->sysctl_paths[i], O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
    close(dirfd);
    if (fd < 0) return fail(req, 3, i);
    size_t len = strlen(req->sysctl_values[i]);
    ssize_t n = write(fd, req->sysctl_values[i], len);
    int saved = errno;
    close(fd);
    if (n != (ssize_t)len) {
      errno = n < 0 ? saved : EIO;
      return fail(req, 4, i);
    }
  }
  static const char *const sources[3] = {"/proc/self/ns/net", "/proc/self/ns/ipc", "/proc/self/ns/uts"};
  for (int i = 0; i < 3; i++) {
    if (!(req->kinds & (1 << i))) continue;
    if (mount(sources[i], req->paths[i], NULL, MS_BIND, NULL) != 0) {
      int saved = errno;
      unmount_pins(req, i);
      errno = saved;
      return fail(req, 5, 1 << i);
    }
  }
  return 0;
}

int crisp_pin_namespaces(int kinds, const char *net_path, const char *ipc_path, const char *uts_path,
                         const char *hostname, const char *const *sysctl_paths,
                         const char *const *sysctl_values, int sysctl_count, crisp_pin_error *err) {
  struct pin_request req = {
      .kinds = kinds,
      .paths = {net_path, ipc_path, uts_path},
      .hostname = hostname,
      .sysctl_paths = sysctl_paths,
      .sysctl_values = sysctl_values,
      .sysctl_count = sysctl_count,
  };
  memset(err, 0, sizeof(*err));
  int flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
  if (kinds & CRISP_NS_NET) flags |= CLONE_NEWNET;
  if (kinds & CRISP_NS_IPC) flags |= CLONE_NEWIPC;
  if (kinds & CRISP_NS_UTS) flags |= CLONE_NEWUTS;

  const size_t stack_size = 64 * 1024;
  char *stack = malloc(stack_size);
  if (!stack) {
    err->step = 6;
    err->error = ENOMEM;
    return -1;
  }
  pid_t pid = clone(pin_child, stack + stack_size, flags, &req);
  if (pid < 0) {
    err->step = 1;
    err->error = errno;
    free(stack);
    return -1;
  }
  int status = 0;
  pid_t waited;
  while ((waited = waitpid(pid, &status, __WALL)) < 0 && errno == EINTR) {
  }
  int wait_errno = errno;
  free(stack);
  if (waited != pid) {
    // Someone else reaped the child: whether it pinned anything is unknown.
    unmount_pins(&req, 3);
    err->step = 1;
    err->error = waited < 0 ? wait_errno : ECHILD;
    return -1;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    *err = req.err;
    if (err->step == 0) {
      err->step = 1;
      err->error = ECHILD;
    }
    return -1;
  }
  return 0;
}

int crisp_unpin_namespace(const char *path) {
  // Mounts may be stacked (a pin repeated after a crash): detach until none is left.
  for (int i = 0; i < 64; i++) {
    if (umount2(path, MNT_DETACH) != 0) return (errno == EINVAL || errno == ENOENT) ? 0 : -1;
  }
  return -1;
}
