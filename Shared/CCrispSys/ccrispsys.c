#define _GNU_SOURCE
#include "CCrispSys.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int crisp_set_child_subreaper(int on) { return prctl(PR_SET_CHILD_SUBREAPER, on ? 1 : 0, 0, 0, 0); }

int crisp_get_child_subreaper(int *on) { return prctl(PR_GET_CHILD_SUBREAPER, on, 0, 0, 0); }

int crisp_set_no_new_privs(void) { return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); }

int crisp_get_no_new_privs(void) { return prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0); }

int crisp_set_pdeathsig(int signal) { return prctl(PR_SET_PDEATHSIG, signal, 0, 0, 0); }

int crisp_capbset_read(int capability) { return prctl(PR_CAPBSET_READ, capability, 0, 0, 0); }

int crisp_pipe2_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

pid_t crisp_gettid(void) { return (pid_t)syscall(SYS_gettid); }

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
int crisp_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int crisp_syncfs(int fd) { return syncfs(fd); }

int crisp_open_in_root(int root_fd, const char *path, int flags, int no_symlinks) {
  struct open_how how = {0};
  how.flags = (unsigned long long)(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | (no_symlinks ? RESOLVE_NO_SYMLINKS : 0);
  return (int)syscall(SYS_openat2, root_fd, path, &how, sizeof how);
}
