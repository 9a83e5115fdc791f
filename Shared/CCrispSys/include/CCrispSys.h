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

#endif
