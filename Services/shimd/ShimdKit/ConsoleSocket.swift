import CCrispSys
import CrispCore
import CrispLinux

#if canImport(Glibc)
  import Glibc
#endif

/// runc's `--console-socket`: runc creates the container's pty and sends its master
/// over this unix socket (SCM_RIGHTS); shimd reads the container's output from it.
final class ConsoleSocket {
  let path: String
  private let fd: Int32

  init(path: String) throws(CrispError) {
    self.path = path
    fd = try UnixSocket.listen(path: path, mode: 0o600, backlog: 1)
  }

  deinit {
    close(fd)
    unlink(path)
  }

  /// The pty master runc sent. runc connects and sends it before `runc create`
  /// exits, so after a successful create it waits in the socket's queue. `unlessReadable`
  /// (runc's pidfd, for an exec) stops the wait early when runc exits without sending.
  func receiveMaster(timeoutMs: Int32 = 5_000, unlessReadable abortFD: Int32 = -1) throws(CrispError) -> Int32 {
    var entries = [pollfd(fd: fd, events: Int16(POLLIN), revents: 0)]
    if abortFD >= 0 { entries.append(pollfd(fd: abortFD, events: Int16(POLLIN), revents: 0)) }
    var ready: Int32
    repeat {
      ready = poll(&entries, nfds_t(entries.count), timeoutMs)
    } while ready < 0 && errno == EINTR
    guard ready > 0, entries[0].revents != 0 else {
      throw CrispError(.internal, "runc did not connect to the console socket \(path)")
    }
    let connection = accept(fd, nil, nil)
    guard connection >= 0 else { throw CrispError(.internal, "accept on \(path): \(Files.errnoText())") }
    _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
    defer { close(connection) }
    let master = crisp_recv_fd(connection)
    guard master >= 0 else {
      throw CrispError(.internal, "no pty master received on \(path): \(Files.errnoText())")
    }
    return master
  }
}
