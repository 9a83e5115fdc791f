// Descriptor passing (SCM_RIGHTS) and a TCP connection made inside another network
// namespace: the CMSG macros and setns are not visible from Swift.
#define _GNU_SOURCE
#include "CCrispSys.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int crisp_accept_cloexec(int socket_fd) { return accept4(socket_fd, NULL, NULL, SOCK_CLOEXEC); }

int crisp_send_fd(int socket_fd, int fd, const void *data, size_t length) {
  struct iovec iov = {.iov_base = (void *)data, .iov_len = length};
  union {
    struct cmsghdr header;
    char space[CMSG_SPACE(sizeof(int))];
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr message = {.msg_iov = &iov, .msg_iovlen = 1};
  if (fd >= 0) {
    message.msg_control = control.space;
    message.msg_controllen = sizeof control.space;
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&message);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
  }
  ssize_t n;
  while ((n = sendmsg(socket_fd, &message, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  if (n < 0) return -1;
  if ((size_t)n != length) {
    errno = EMSGSIZE;
    return -1;
  }
  return 0;
}

ssize_t crisp_recv_fd_data(int socket_fd, void *data, size_t capacity, int *fd) {
  *fd = -1;
  struct iovec iov = {.iov_base = data, .iov_len = capacity};
  union {
    struct cmsghdr header;
    // Room for more than one: extra descriptors are received and closed, never leaked.
    char space[CMSG_SPACE(4 * sizeof(int))];
  } control;
  memset(&control, 0, sizeof control);
  struct msghdr message = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space, .msg_controllen = sizeof control.space};
  ssize_t n;
  while ((n = recvmsg(socket_fd, &message, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR) {
  }
  if (n < 0) return -1;
  for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&message); cmsg; cmsg = CMSG_NXTHDR(&message, cmsg)) {
    if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int received;
      memcpy(&received, CMSG_DATA(cmsg) + i * sizeof(int), sizeof received);
      if (*fd < 0) {
        *fd = received;
      } else {
        close(received);
      }
    }
  }
  return n;
}

struct netns_connect {
  const char *netns_path;
  unsigned short port;
  int timeout_ms;
  int fd;
  int error;
  int step;
};

static void *netns_connect_thread(void *context) {
  struct netns_connect *job = context;
  if (job->netns_path && job->netns_path[0]) {
    int ns = open(job->netns_path, O_RDONLY | O_CLOEXEC);
    if (ns < 0) {
      job->error = errno;
      job->step = 1;
      return NULL;
    }
    // This thread only: it ends right after, taking the namespace with it.
    int rc = setns(ns, CLONE_NEWNET);
    int saved = errno;
    close(ns);
    if (rc != 0) {
      job->error = saved;
      job->step = 2;
      return NULL;
    }
  }
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    job->error = errno;
    job->step = 3;
    return NULL;
  }
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(job->port)};
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int rc = connect(fd, (struct sockaddr *)&address, sizeof address);
  if (rc != 0 && errno == EINPROGRESS) {
    struct pollfd entry = {.fd = fd, .events = POLLOUT};
    int ready;
    while ((ready = poll(&entry, 1, job->timeout_ms)) < 0 && errno == EINTR) {
    }
    if (ready == 0) {
      errno = ETIMEDOUT;
    } else if (ready > 0) {
      int soerror = 0;
      socklen_t length = sizeof soerror;
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerror, &length) == 0) {
        rc = soerror == 0 ? 0 : -1;
        errno = soerror;
      }
    }
  }
  if (rc != 0) {
    job->error = errno;
    job->step = 4;
    close(fd);
    return NULL;
  }
  // The caller gets an ordinary blocking socket.
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  job->fd = fd;
  return NULL;
}

int crisp_connect_in_netns(const char *netns_path, unsigned short port, int timeout_ms, int *error, int *step) {
  struct netns_connect job = {.netns_path = netns_path, .port = port, .timeout_ms = timeout_ms, .fd = -1};
  pthread_t thread;
  int rc = pthread_create(&thread, NULL, netns_connect_thread, &job);
  if (rc != 0) {
    *error = rc;
    *step = 0;
    return -1;
  }
  pthread_join(thread, NULL);
  *error = job.error;
  *step = job.step;
  return job.fd;
}
