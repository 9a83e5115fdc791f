import Foundation

/// A child process started with posix_spawn and reaped with waitpid, for the shim
/// tests. Foundation's Process learns that a child exited when a socket it hands
/// the child closes, so a child whose descendants outlive it (a launcher whose
/// shim goes on) never counts as exited; and its children inherit every descriptor
/// of the test process. These children get only stdin, stdout and stderr.
final class Child: @unchecked Sendable {
  let pid: pid_t
  private let lock = NSLock()
  private var waitStatus: Int32?

  private init(pid: pid_t) { self.pid = pid }

  /// Starts `path` with stdin on /dev/null and stdout and stderr on `output` (a
  /// descriptor), or on /dev/null.
  static func spawn(_ path: String, _ arguments: [String], output: Int32? = nil) throws -> Child {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    if let output {
      posix_spawn_file_actions_adddup2(&actions, output, 1)
      posix_spawn_file_actions_adddup2(&actions, output, 2)
    } else {
      posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
      posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
    }
    closeFrom3(&actions)
    var pid: pid_t = 0
    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + arguments).map { strdup($0) } + [nil]
    defer { argv.forEach { free($0) } }
    let rc = posix_spawn(&pid, path, &actions, nil, argv, environ)
    guard rc == 0 else { throw FixtureError("posix_spawn \(path): \(String(cString: strerror(rc)))") }
    return Child(pid: pid)
  }

  /// glibc's posix_spawn_file_actions_addclosefrom_np, which Swift's Glibc module does not show.
  private static func closeFrom3(_ actions: inout posix_spawn_file_actions_t) {
    typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np")
    else { return }
    _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
  }

  /// The wait status once reaped.
  var status: Int32? {
    lock.lock()
    defer { lock.unlock() }
    if waitStatus == nil {
      var status: Int32 = 0
      if waitpid(pid, &status, WNOHANG) == pid { waitStatus = status }
    }
    return waitStatus
  }

  var isRunning: Bool { status == nil }

  /// The exit code, 128 + signal when killed; nil while running.
  var exitCode: Int32? {
    guard let status else { return nil }
    return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
  }

  func signal(_ signo: Int32) {
    if isRunning { kill(pid, signo) }
  }

  /// Waits up to `timeout` for the exit; SIGKILL after that.
  @discardableResult
  func wait(timeout: TimeInterval = 30) -> Int32 {
    let deadline = Date().addingTimeInterval(timeout)
    while isRunning && Date() < deadline { usleep(10_000) }
    if isRunning {
      kill(pid, SIGKILL)
      lock.lock()
      var status: Int32 = 0
      if waitStatus == nil, waitpid(pid, &status, 0) == pid { waitStatus = status }
      lock.unlock()
    }
    return exitCode ?? 137
  }

  func killAndWait() {
    signal(SIGKILL)
    wait(timeout: 10)
  }

  /// Runs a program to completion (killed after `timeout`): exit code and output.
  static func run(_ path: String, _ arguments: [String], timeout: TimeInterval = 30) throws -> (
    status: Int32, output: String
  ) {
    var fds: [Int32] = [-1, -1]
    guard pipe(&fds) == 0 else { throw FixtureError("pipe: \(String(cString: strerror(errno)))") }
    let child: Child
    do {
      child = try spawn(path, arguments, output: fds[1])
    } catch {
      close(fds[0])
      close(fds[1])
      throw error
    }
    close(fds[1])
    defer { close(fds[0]) }
    var output: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    let deadline = Date().addingTimeInterval(timeout)
    while true {
      let remaining = deadline.timeIntervalSinceNow
      if remaining <= 0 {
        child.signal(SIGKILL)
        break
      }
      var entry = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
      let ready = poll(&entry, 1, Int32(min(remaining, 1) * 1000))
      if ready < 0 && errno != EINTR { break }
      if ready <= 0 {
        // A grandchild may hold the pipe after the child exited: stop with the child.
        if !child.isRunning { break }
        continue
      }
      let n = read(fds[0], &buffer, buffer.count)
      if n <= 0 { break }
      output += buffer[0..<n]
    }
    let status = child.wait(timeout: max(1, deadline.timeIntervalSinceNow))
    return (status, String(decoding: output, as: UTF8.self))
  }
}
