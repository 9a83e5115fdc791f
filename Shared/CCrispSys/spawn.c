#define _GNU_SOURCE
#include "CCrispSys.h"

#include <signal.h>
#include <spawn.h>

int crisp_spawn(const char *path, char *const argv[], char *const envp[], int stdin_fd, int stdout_fd,
                int stderr_fd, int new_process_group, pid_t *pid) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  int rc = posix_spawn_file_actions_init(&actions);
  if (rc != 0) return rc;
  rc = posix_spawnattr_init(&attr);
  if (rc != 0) {
    posix_spawn_file_actions_destroy(&actions);
    return rc;
  }
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
  if (new_process_group) flags |= POSIX_SPAWN_SETPGROUP;
  if ((rc = posix_spawnattr_setflags(&attr, flags)) == 0 && (rc = posix_spawnattr_setsigdefault(&attr, &all)) == 0 &&
      (rc = posix_spawnattr_setsigmask(&attr, &none)) == 0 && (rc = posix_spawnattr_setpgroup(&attr, 0)) == 0 &&
      (rc = posix_spawn_file_actions_adddup2(&actions, stdin_fd, 0)) == 0 &&
      (rc = posix_spawn_file_actions_adddup2(&actions, stdout_fd, 1)) == 0 &&
      (rc = posix_spawn_file_actions_adddup2(&actions, stderr_fd, 2)) == 0) {
    rc = posix_spawn(pid, path, &actions, &attr, argv, envp);
  }
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  return rc;
}
