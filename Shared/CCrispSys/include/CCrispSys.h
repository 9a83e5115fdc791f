// Linux calls that Glibc's Swift overlay does not expose (prctl and syscall are
// variadic, pipe2 needs _GNU_SOURCE). Each returns -1 and sets errno on failure,
// like the call it wraps.
#ifndef CRISP_CCRISPSYS_H
#define CRISP_CCRISPSYS_H

#include <sys/types.h>

int crisp_set_child_subreaper(int on);
int crisp_get_child_subreaper(int *on);
int crisp_set_no_new_privs(void);
int crisp_get_no_new_privs(void);
int crisp_set_pdeathsig(int signal);
int crisp_capbset_read(int capability);
int crisp_pipe2_cloexec(int fds[2]);
pid_t crisp_gettid(void);
int crisp_pidfd_open(pid_t pid);
/// syncfs(2): flushes the filesystem that holds `fd` (a GNU extension Swift cannot see).
int crisp_syncfs(int fd);
/// openat2(2) with RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS (and RESOLVE_NO_SYMLINKS when
/// `no_symlinks`): `path` is resolved as if `root_fd` were `/`, so neither `..` nor a
/// symlink can lead out of it, whatever an image put there.
int crisp_open_in_root(int root_fd, const char *path, int flags, int no_symlinks);

/// seccomp_rule_add with one comparison on one argument (the C call is variadic).
int crisp_seccomp_rule_arg_eq(void *ctx, unsigned int action, int syscall, unsigned int arg, unsigned long long value);


/// posix_spawn with what a child of a crisp daemon needs: every signal back to its
/// default disposition (daemons ignore SIGPIPE/SIGTERM/SIGINT, and ignored signals
/// survive exec), an empty signal mask, optionally a process group of its own (so a
/// timeout can kill everything it started), and stdin/stdout/stderr from the given
/// descriptors. Returns 0 or an errno value.
int crisp_spawn(const char *path, char *const argv[], char *const envp[], int stdin_fd, int stdout_fd,
                int stderr_fd, int new_process_group, pid_t *pid);

/// Capabilities are per thread, and a Swift daemon has threads long before it has read
/// its configuration. So a daemon re-executes itself with CRISP_KEEP_CAPS set to the
/// capability numbers to keep (comma-separated); a constructor in this library applies
/// them before main, while the process has one thread: bounding set reduced, ambient
/// cleared, effective/permitted/inheritable set to the list, no_new_privs on. It then
/// sets CRISP_CAPS_APPLIED to "ok" or to "error:<errno>:<step>".
/// Returns the result the constructor recorded, or NULL when it did nothing.
const char *crisp_startup_caps_result(void);

/// Namespaces to create for a pod (CLONE_NEWNET, CLONE_NEWIPC, CLONE_NEWUTS as bits).
enum {
  CRISP_NS_NET = 1,
  CRISP_NS_IPC = 2,
  CRISP_NS_UTS = 4,
};

/// Where a failed crisp_pin_namespaces stopped: which step and errno.
typedef struct crisp_pin_error {
  int step;   // 1 clone, 2 sethostname, 3 open sysctl, 4 write sysctl, 5 bind mount, 6 stack
  int index;  // sysctl index for steps 3-4, namespace bit for step 5
  int error;  // errno
} crisp_pin_error;

/// Creates the requested namespaces in a short-lived child (clone with CLONE_VFORK,
/// so no process is left holding them), sets the hostname in the new UTS namespace,
/// writes the sysctls (paths under /proc/sys, relative) in the new namespaces, and
/// bind-mounts each new namespace onto its existing empty file. Returns 0, or -1
/// with *err filled in. Nothing is left mounted on failure.
int crisp_pin_namespaces(int kinds, const char *net_path, const char *ipc_path, const char *uts_path,
                         const char *hostname, const char *const *sysctl_paths,
                         const char *const *sysctl_values, int sysctl_count, crisp_pin_error *err);

/// Detaches the mount pinning a namespace (idempotent: a file that is not mounted is fine).
int crisp_unpin_namespace(const char *path);

/// Detaches a supervisor from the process that launched it (shimd --daemonize). The
/// caller must still be single-threaded (refused with EBUSY otherwise). Forks twice:
/// the calling process never returns: it waits on a pipe for the detached process's
/// report and exits 0 when the report starts with "ok", or 1 after copying the report
/// (or, if the pipe closes empty, a note that the shim died) to stderr. Returns 0 in
/// the detached grandchild (a new session and process group, not the launcher's
/// child, stdio on /dev/null, umask 022, cwd "/", every other inherited descriptor
/// closed) with the pipe's write end (close-on-exec) in *ready_fd. Returns -1 with
/// errno in the calling process if it cannot fork.
int crisp_daemonize(int *ready_fd);

/// Blocks `signals` in the calling thread (call it before any thread starts, so every
/// thread inherits the mask) and returns a non-blocking, close-on-exec signalfd for them.
int crisp_signal_fd(const int *signals, int count);
/// The next pending signal's number from a signalfd; -1 with errno EAGAIN when none.
int crisp_read_signal(int fd);

/// mallopt settings that keep a long-lived small process small: one arena, a fixed
/// mmap threshold (64 KiB) and trim threshold (128 KiB).
void crisp_malloc_small(void);
/// Returns freed heap memory to the kernel (malloc_trim(0)).
void crisp_malloc_trim(void);

/// Gives back the pages of the calling thread's stack that lie more than 16 KiB below
/// the caller's frame (touched once by deep calls, idle afterwards): for a thread
/// that from now on only waits.
void crisp_release_unused_stack(void);

/// Receives one descriptor sent with SCM_RIGHTS on a connected unix socket (runc's
/// --console-socket protocol); close-on-exec. Returns -1 with errno on failure.
int crisp_recv_fd(int socket_fd);

/// accept4 with SOCK_CLOEXEC: a descriptor never open without close-on-exec, even for an
/// instant, in a process that spawns programs from other threads.
int crisp_accept_cloexec(int socket_fd);
/// Sends `length` bytes of `data` on a connected unix socket, with `fd` attached as an
/// SCM_RIGHTS descriptor unless it is -1. Returns 0, or -1 with errno.
int crisp_send_fd(int socket_fd, int fd, const void *data, size_t length);
/// Receives up to `capacity` bytes and at most one descriptor (close-on-exec; further
/// ones are closed) into *fd, -1 when none came. Returns the byte count (0 at EOF), or
/// -1 with errno.
ssize_t crisp_recv_fd_data(int socket_fd, void *data, size_t capacity, int *fd);

/// A TCP socket connected to 127.0.0.1:`port` inside the network namespace pinned at
/// `netns_path` (the caller's own when empty): a short-lived thread enters the
/// namespace, makes the socket and connects (waiting at most `timeout_ms`), then ends,
/// so no thread of the caller ever changes namespace. Returns the socket (blocking,
/// close-on-exec), or -1 with *error (an errno value) and *step (0 thread, 1 open the
/// namespace, 2 setns, 3 socket, 4 connect).
int crisp_connect_in_netns(const char *netns_path, unsigned short port, int timeout_ms, int *error, int *step);

/// TIOCSWINSZ / TIOCGWINSZ on a terminal (a pty master): its size in character cells.
int crisp_set_window_size(int fd, unsigned short columns, unsigned short rows);
int crisp_get_window_size(int fd, unsigned short *columns, unsigned short *rows);

/// Reads up to `capacity` bytes of `file` (`/proc/thread-self/net/dev`) from inside the
/// network namespace pinned at `netns_path` (the caller's own when empty), on a
/// short-lived thread that enters the namespace and ends, so no thread of the caller
/// ever changes namespace. Returns the byte count, or -1 with *error (an errno value)
/// and *step (0 thread, 1 open the namespace, 2 setns, 3 open the file, 4 read).
ssize_t crisp_read_in_netns(const char *netns_path, const char *file, char *buffer, size_t capacity, int *error,
                            int *step);

/// PR_SET_DUMPABLE / PR_GET_DUMPABLE. A process that is not dumpable can be traced, and
/// its /proc/<pid>/mem opened, only by a holder of CAP_SYS_PTRACE. Returns 0 / the
/// flag, or -1 with errno.
int crisp_set_dumpable(int on);
int crisp_get_dumpable(void);
/// Makes the process dumpable again when it crashes (SIGSEGV, SIGBUS, SIGILL, SIGFPE,
/// SIGTRAP, SIGABRT), then runs the handler that was installed before (the Swift
/// runtime's backtracer): call it after the runtime has installed its own.
int crisp_dumpable_when_crashing(void);

/// Test hook (`debug.syscall`, daemons started with --test-hooks only): makes the system
/// call named `name` (ptrace, bpf, reboot, mount, socket:packet, ... see debug_probe.c)
/// with arguments the kernel refuses on its own, so it can change nothing. Returns 0 if
/// it succeeded, the errno it failed with, or -1 for a name it does not know; *result
/// is the call's return value.
int crisp_debug_probe(const char *name, long *result);
/// "EPERM" for EPERM; "" for a number glibc has no name for.
const char *crisp_errno_name(int error);

#endif
