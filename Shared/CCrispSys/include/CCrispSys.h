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

#endif
