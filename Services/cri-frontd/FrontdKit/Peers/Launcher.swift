import CrispCore
import CrispLinux
import Foundation
import Logging

/// The client of crisp-launcher (Services/crisp-launcher/main.c), cri-frontd's
/// privileged hand: frontd serves with no capability and under a seccomp filter that
/// its children would inherit, so shimd and the OCI runtime are started by the
/// launcher, which frontd starts before it confines itself. Requests and replies are
/// single SOCK_SEQPACKET messages (the format is in main.c); each carries an ID, so
/// many run at once.
final class Launcher: Sendable {
  /// The channel crosses frontd's re-execution for its capability drop under this name.
  static let environmentKey = "CRISP_LAUNCHER_FD"
  private static let maxMessage = 65536

  private let fd: Int32
  private let logger: Logger
  /// Requests awaiting their reply, by ID; nil: the launcher is gone.
  private let replies = Waiters<UInt64, ChildProcess.Output?>()

  /// Starts crisp-launcher, allowed to run `allowed` only, or adopts the one started
  /// before frontd re-executed itself.
  static func startOrAdopt(executable: String, allowed: [String], logger: Logger) throws(CrispError) -> Launcher {
    if let text = getenv(environmentKey) {
      let parts = String(cString: text).split(separator: ":")
      if parts.count == 2, let fd = Int32(parts[0]), let pid = pid_t(parts[1]), fcntl(fd, F_GETFD) >= 0 {
        unsetenv(environmentKey)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return Launcher(fd: fd, pid: pid, logger: logger)
      }
    }
    guard access(executable, X_OK) == 0 else {
      throw CrispError(.failedPrecondition, "\(executable) (crisp-launcher) is missing or not executable")
    }
    var pair: [Int32] = [-1, -1]
    // Close-on-exec, so that the launcher does not hold frontd's end (it would never
    // see frontd go); dup2 onto fd 3 clears the flag on the launcher's copy.
    guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &pair) == 0 else {
      throw CrispError(.internal, "socketpair for crisp-launcher: \(Files.errnoText())")
    }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_adddup2(&actions, pair[1], 3)
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    var pid: pid_t = 0
    let arguments = [executable] + allowed
    let rc = withCMutableStrings(arguments) { argv in
      withCMutableStrings(["PATH=/usr/sbin:/usr/bin:/sbin:/bin"]) { envp in
        posix_spawn(&pid, executable, &actions, nil, argv, envp)
      }
    }
    close(pair[1])
    guard rc == 0 else {
      close(pair[0])
      throw CrispError(.internal, "cannot start \(executable): \(Files.errnoText(rc))")
    }
    // Now not close-on-exec: the channel must survive frontd's re-execution.
    _ = fcntl(pair[0], F_SETFD, 0)
    setenv(environmentKey, "\(pair[0]):\(pid)", 1)
    logger.debug("crisp-launcher started", metadata: ["pid": "\(pid)", "allowed": "\(allowed)"])
    return Launcher(fd: pair[0], pid: pid, logger: logger)
  }

  /// The launcher's process: what it can grant is what frontd's containers may get.
  let pid: pid_t

  private init(fd: Int32, pid: pid_t, logger: Logger) {
    self.fd = fd
    self.pid = pid
    self.logger = logger
    let thread = Thread { [self] in self.readReplies() }
    thread.name = "crisp-launcher replies"
    thread.start()
  }

  /// Runs `path` with `arguments` through the launcher, as `ChildProcess.run` would.
  func run(
    path: String, arguments: [String], environment: [String: String], timeoutMs: Int
  ) async throws(CrispError) -> ChildProcess.Output {
    var message: [UInt8] = []
    let id = replies.makeKey()
    withUnsafeBytes(of: id.littleEndian) { message += $0 }
    withUnsafeBytes(of: UInt32(clamping: timeoutMs).littleEndian) { message += $0 }
    withUnsafeBytes(of: UInt32(arguments.count + 1).littleEndian) { message += $0 }
    for string in [path] + arguments + environment.sorted(by: { $0.key < $1.key }).map({ "\($0.key)=\($0.value)" }) {
      guard !string.utf8.contains(0) else {
        throw CrispError(.invalidArgument, "an argument for \(path) contains a NUL byte")
      }
      message += Array(string.utf8) + [0]
    }
    guard message.count <= Self.maxMessage else {
      throw CrispError(.invalidArgument, "the command line for \(path) is too long (\(message.count) bytes)")
    }
    // Sent once registered: the reply may come before `send` returns.
    let reply = await replies.wait(
      for: id,
      afterRegistering: {
        let sent = message.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if sent != message.count { replies.resume(id, with: nil) }
      })
    guard let reply else {
      throw CrispError(.internal, "crisp-launcher is gone: cannot run \(path)")
    }
    if reply.status == -1 {
      throw CrispError(.internal, String(decoding: reply.stderr, as: UTF8.self))
    }
    return reply
  }

  private func readReplies() {
    var buffer = [UInt8](repeating: 0, count: Self.maxMessage)
    while true {
      let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
      if n < 0 && errno == EINTR { continue }
      guard n >= 16 else { break }
      let bytes = buffer[0..<n]
      let id = bytes.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self)) }
      let status = bytes.withUnsafeBytes { Int32(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: Int32.self)) }
      let outLength = bytes.withUnsafeBytes {
        Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
      }
      guard 16 + outLength <= n else { continue }
      let output = ChildProcess.Output(
        status: status == -2 ? 137 : status, stdout: Array(bytes[16..<(16 + outLength)]),
        stderr: Array(bytes[(16 + outLength)...]), timedOut: status == -2)
      replies.resume(id, with: output)
    }
    // The launcher died: nothing can start a container any more. Fail what waits and
    // exit, so that systemd restarts frontd with a new launcher; containers run on.
    logger.critical("crisp-launcher exited; cri-frontd stops so that it can be restarted with a new one")
    replies.resumeAll(with: nil)
    exit(70)
  }
}
