import CCrispSys

#if canImport(Glibc)
  import Glibc
#endif

/// A pidfd held on a process another program started: it keeps naming that process
/// even after its pid is reused, and says without a system call per question to
/// anyone else whether the process still runs. Needs no privilege (pidfd_open asks
/// for none, unlike ptrace or kill).
public final class ProcessWatch: Sendable {
  public let pid: Int32
  private let fd: Int32

  /// nil when the process is gone (reaped) or the kernel has no pidfds.
  public init?(pid: Int32) {
    guard pid > 0 else { return nil }
    let fd = crisp_pidfd_open(pid)
    guard fd >= 0 else { return nil }
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    self.pid = pid
    self.fd = fd
  }

  deinit { close(fd) }

  /// The process has exited (a zombie, or reaped): its pidfd polls readable.
  public var hasExited: Bool {
    var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    while true {
      let ready = poll(&entry, 1, 0)
      if ready >= 0 { return ready > 0 }
      if errno != EINTR { return true }
    }
  }
}
