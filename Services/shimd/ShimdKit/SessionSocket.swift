import CCrispSys
import CrispCore
import CrispIPC
import CrispLinux

#if canImport(Glibc)
  import Glibc
#endif

/// The session framing (`SessionFraming`, the contract with frontd's streaming server)
/// under the short name the shim's session code uses.
typealias SessionFrame = SessionFraming

/// The unix socket one session waits on: mode 0600, one connection accepted within a
/// deadline, the path unlinked once connected or given up.
final class SessionListener: Sendable {
  let path: String
  private let fd: Int32

  init(path: String) throws(CrispError) {
    self.path = path
    fd = try UnixSocket.listen(path: path, mode: 0o600, backlog: 1)
  }

  /// The connected socket, or nil when nobody connected within `timeoutMs`. Call once;
  /// the listening socket is closed and the path removed afterwards.
  func acceptOne(timeoutMs: Int64) -> Int32? {
    defer {
      unlink(path)
      close(fd)
    }
    let deadline = MonotonicClock.milliseconds() + timeoutMs
    while true {
      var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
      let left = Int32(clamping: max(0, deadline - MonotonicClock.milliseconds()))
      let ready = poll(&entry, 1, left)
      if ready < 0 && errno == EINTR { continue }
      guard ready > 0 else { return nil }
      let connection = crisp_accept_cloexec(fd)
      if connection >= 0 { return connection }
      if errno == EINTR || errno == EAGAIN || errno == ECONNABORTED { continue }
      return nil
    }
  }

  /// A socket path for session `number` of a container: in its bundle directory, or,
  /// when that path is too long for a unix socket, in the shims directory.
  static func path(bundle: String, runRoot: String, containerID: String, number: Int) -> String {
    let inBundle = bundle + "/stream-\(number).sock"
    if inBundle.utf8.count < 100 { return inBundle }
    return runRoot + "/shims/\(containerID.prefix(16))-\(getpid())-\(number).sock"
  }
}

/// Threads of shimd's own (sessions): a session blocks in poll for its whole life,
/// which must not hold a thread of Swift's cooperative pool.
enum ShimThread {
  private final class Box {
    let body: @Sendable () -> Void
    init(_ body: @escaping @Sendable () -> Void) { self.body = body }
  }

  static func detach(_ body: @escaping @Sendable () -> Void) throws(CrispError) {
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    defer { pthread_attr_destroy(&attributes) }
    // Only touched pages cost memory; a smaller reservation keeps the map tidy.
    pthread_attr_setstacksize(&attributes, 1 << 20)
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    var thread = pthread_t()
    let context = Unmanaged.passRetained(Box(body)).toOpaque()
    let rc = pthread_create(
      &thread, &attributes,
      { context in
        Unmanaged<Box>.fromOpaque(context!).takeRetainedValue().body()
        // glibc keeps the stacks of ended threads for reuse: give back the pages
        // this one touched, so that they do not stay counted as the shim's memory.
        crisp_release_unused_stack()
        return nil
      }, context)
    guard rc == 0 else {
      Unmanaged<Box>.fromOpaque(context).release()
      throw CrispError(.resourceExhausted, "cannot start a session thread: \(Files.errnoText(rc))")
    }
  }
}

/// Writes all of `bytes` to a (non-blocking) socket, waiting at most `timeoutMs` for
/// room; false when the peer is gone or too slow.
func writeAll(socket fd: Int32, _ bytes: [UInt8], timeoutMs: Int64) -> Bool {
  let deadline = MonotonicClock.milliseconds() + timeoutMs
  var offset = 0
  return bytes.withUnsafeBytes { buffer in
    while offset < buffer.count {
      let n = send(fd, buffer.baseAddress! + offset, buffer.count - offset, Int32(MSG_NOSIGNAL))
      if n > 0 {
        offset += n
        continue
      }
      guard n < 0, errno == EAGAIN || errno == EINTR else { return false }
      var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
      let left = deadline - MonotonicClock.milliseconds()
      guard left > 0, poll(&entry, 1, Int32(clamping: left)) >= 0 else { return false }
    }
    return true
  }
}
