// Test hook: one system call a daemon's seccomp filter must refuse, made from the
// daemon's own process. Reached only through the `debug.syscall` IPC method, which a
// daemon registers only when started with --test-hooks (see CrispDaemon/TestHooks).
//
// Every call is made with arguments the kernel rejects on its own (a bad magic, a bad
// flag, a NULL path, descriptor -1, socket type 15), so that without the filter, or
// with a filter that forgot the call, it fails with EINVAL, EFAULT, EBADF, ESRCH or
// ENOSYS and changes nothing: it never reboots, loads, swaps, mounts or traces. The
// checks that run before those (capabilities: CAP_SYS_BOOT for reboot, CAP_SYS_MODULE,
// CAP_SYS_ADMIN for swapoff and pivot_root) answer EPERM too, so a test that must tell
// the filter's EPERM from the kernel's gives the daemon every capability.
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "CCrispSys.h"

// A socket type past SOCK_MAX: the kernel refuses it (EINVAL) after the family check a
// seccomp rule on the first argument makes, and before any family's own checks.
#define CRISP_PROBE_BAD_SOCKET_TYPE 15

static long probe_socket(int family) { return socket(family, CRISP_PROBE_BAD_SOCKET_TYPE, 0); }

static long probe(const char *name, int *known) {
  *known = 1;
  // ptrace(<no such request>, pid 0): no task has pid 0 -> ESRCH.
  if (strcmp(name, "ptrace") == 0) return syscall(SYS_ptrace, -1L, 0L, 0L, 0L);
  // kexec_load with an undefined flag bit and too many segments -> EINVAL.
  if (strcmp(name, "kexec_load") == 0) return syscall(SYS_kexec_load, 0UL, ~0UL, NULL, 0x8000UL);
  // kexec_file_load with an undefined flag and no files -> EINVAL / EBADF.
  if (strcmp(name, "kexec_file_load") == 0) return syscall(SYS_kexec_file_load, -1, -1, 0UL, NULL, 0x8000UL);
  // init_module of an empty image -> ENOEXEC.
  if (strcmp(name, "init_module") == 0) return syscall(SYS_init_module, NULL, 0UL, "");
  // finit_module of no file -> EBADF.
  if (strcmp(name, "finit_module") == 0) return syscall(SYS_finit_module, -1, "", 0);
  // delete_module of a NULL name -> EFAULT.
  if (strcmp(name, "delete_module") == 0) return syscall(SYS_delete_module, NULL, 0);
  // bpf(<no such command>) -> EINVAL.
  if (strcmp(name, "bpf") == 0) return syscall(SYS_bpf, -1, NULL, 0);
  // perf_event_open(NULL attributes) -> EFAULT.
  if (strcmp(name, "perf_event_open") == 0) return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0UL);
  // reboot without the magic numbers -> EINVAL (the kernel insists on them "for safety").
  if (strcmp(name, "reboot") == 0) return syscall(SYS_reboot, 0, 0, 0, NULL);
  // io_uring_setup with NULL parameters -> EFAULT (no ring is made).
  if (strcmp(name, "io_uring_setup") == 0) return syscall(SYS_io_uring_setup, 1U, NULL);
  // swapon with every flag bit set -> EINVAL, checked before anything else.
  if (strcmp(name, "swapon") == 0) return syscall(SYS_swapon, NULL, -1);
  // swapoff(NULL) -> EFAULT.
  if (strcmp(name, "swapoff") == 0) return syscall(SYS_swapoff, NULL);
  // pivot_root(NULL, NULL) -> EFAULT.
  if (strcmp(name, "pivot_root") == 0) return syscall(SYS_pivot_root, NULL, NULL);
  // mount onto a NULL target -> EFAULT.
  if (strcmp(name, "mount") == 0) return syscall(SYS_mount, NULL, NULL, NULL, 0UL, NULL);
  // umount2 with an undefined flag -> EINVAL, checked before the path and capabilities.
  if (strcmp(name, "umount2") == 0) return syscall(SYS_umount2, NULL, 0x80000000);
  // setns(-1) -> EBADF.
  if (strcmp(name, "setns") == 0) return syscall(SYS_setns, -1, 0);
  // unshare with an exit-signal bit, which unshare does not take -> EINVAL.
  if (strcmp(name, "unshare") == 0) return syscall(SYS_unshare, 0x1);
  if (strcmp(name, "socket:packet") == 0) return probe_socket(AF_PACKET);
  if (strcmp(name, "socket:bluetooth") == 0) return probe_socket(AF_BLUETOOTH);
  if (strcmp(name, "socket:netlink") == 0) return probe_socket(AF_NETLINK);
  // An allowed family, for contrast: EINVAL with the filter too.
  if (strcmp(name, "socket:inet") == 0) return probe_socket(AF_INET);
  *known = 0;
  return -1;
}

int crisp_debug_probe(const char *name, long *result) {
  int known = 0;
  errno = 0;
  long rv = probe(name, &known);
  int saved = errno;
  if (!known) return -1;
  *result = rv;
  // Nothing above can succeed; if something did (a socket), give it back.
  if (rv >= 0 && strncmp(name, "socket:", 7) == 0) close((int)rv);
  return rv < 0 ? saved : 0;
}

const char *crisp_errno_name(int error) {
  const char *name = strerrorname_np(error);
  return name ? name : "";
}
