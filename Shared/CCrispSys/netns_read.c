#define _GNU_SOURCE
#include "CCrispSys.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>

// What the reading thread is asked to do, and what it answers.
struct netns_read {
  const char *netns_path;
  const char *file;
  char *buffer;
  size_t capacity;
  ssize_t length;
  int error;
  int step;
};

// Runs on a thread of its own: the namespace change dies with it, so no thread of
// the caller (a Swift executor thread among them) ever lives in a pod's namespace.
static void *read_in_netns(void *arg) {
  struct netns_read *req = arg;
  req->length = -1;
  if (req->netns_path && req->netns_path[0]) {
    int ns = open(req->netns_path, O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
      req->error = errno;
      req->step = 1;
      return NULL;
    }
    int rv = setns(ns, CLONE_NEWNET);
    int saved = errno;
    close(ns);
    if (rv != 0) {
      req->error = saved;
      req->step = 2;
      return NULL;
    }
  }
  int fd = open(req->file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    req->error = errno;
    req->step = 3;
    return NULL;
  }
  size_t total = 0;
  while (total < req->capacity) {
    ssize_t n = read(fd, req->buffer + total, req->capacity - total);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      req->error = errno;
      req->step = 4;
      close(fd);
      return NULL;
    }
    if (n == 0) break;
    total += (size_t)n;
  }
  close(fd);
  req->length = (ssize_t)total;
  return NULL;
}

ssize_t crisp_read_in_netns(const char *netns_path, const char *file, char *buffer, size_t capacity, int *error,
                            int *step) {
  struct netns_read req = {netns_path, file, buffer, capacity, -1, 0, 0};
  pthread_t thread;
  int rv = pthread_create(&thread, NULL, read_in_netns, &req);
  if (rv != 0) {
    *error = rv;
    *step = 0;
    return -1;
  }
  pthread_join(thread, NULL);
  *error = req.error;
  *step = req.step;
  return req.length;
}
