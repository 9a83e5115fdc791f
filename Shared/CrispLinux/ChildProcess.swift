import CCrispSys
import CrispCore
import Dispatch

#if canImport(Glibc)
  import Glibc
#endif

/// Runs a program to completion with a deadline: its stdin from bytes, its stdout and
/// stderr collected. The child starts with default signal dispositions and an empty
/// mask, in a process group of its own; at the deadline the whole group is killed and
/// the pipes are abandoned, so a grandchild holding them open cannot stall the caller.
public enum ChildProcess {
  public struct Output: Sendable {
    /// The exit code, or 128 + the signal number when killed by a signal.
    public var status: Int32
    public var stdout: [UInt8]
    public var stderr: [UInt8]
    public var timedOut: Bool

    public init(status: Int32, stdout: [UInt8], stderr: [UInt8], timedOut: Bool) {
      self.status = status
      self.stdout = stdout
      self.stderr = stderr
      self.timedOut = timedOut
    }
  }

  public static func run(
    path: String, arguments: [String] = [], environment: [String: String], stdin: [UInt8] = [], timeoutMs: Int
  ) async throws(CrispError) -> Output {
    let result: Result<Output, CrispError> = await withCheckedContinuation { continuation in
      DispatchQueue.global().async {
        continuation.resume(
          returning: Result { () throws(CrispError) -> Output in
            try runBlocking(
              path: path, arguments: arguments, environment: environment, stdin: stdin, timeoutMs: timeoutMs)
          })
      }
    }
    return try result.get()
  }

  public static func runBlocking(
    path: String, arguments: [String], environment: [String: String], stdin: [UInt8], timeoutMs: Int
  ) throws(CrispError) -> Output {
    let input = try ProcessControl.pipe()
    let output: (read: Int32, write: Int32)
    let errors: (read: Int32, write: Int32)
    do {
      output = try ProcessControl.pipe()
    } catch {
      close(input.read)
      close(input.write)
      throw error
    }
    do {
      errors = try ProcessControl.pipe()
    } catch {
      close(input.read)
      close(input.write)
      close(output.read)
      close(output.write)
      throw error
    }
    var pid: pid_t = 0
    let argv = [path] + arguments
    let envp = environment.map { "\($0.key)=\($0.value)" }
    let rc = withCMutableStrings(argv) { cArgv in
      withCMutableStrings(envp) { cEnvp in
        crisp_spawn(path, cArgv, cEnvp, input.read, output.write, errors.write, 1, &pid)
      }
    }
    close(input.read)
    close(output.write)
    close(errors.write)
    guard rc == 0 else {
      close(input.write)
      close(output.read)
      close(errors.read)
      throw CrispError(.internal, "cannot run \(path): \(Files.errnoText(rc))")
    }

    for fd in [input.write, output.read, errors.read] {
      _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }
    var stdinOffset = 0
    var stdinOpen = true
    if stdin.isEmpty {
      close(input.write)
      stdinOpen = false
    }
    var out: [UInt8] = []
    var err: [UInt8] = []
    var open = (out: true, err: true)
    let deadline = MonotonicClock.milliseconds() + Int64(timeoutMs)
    var timedOut = false
    var buffer = [UInt8](repeating: 0, count: 16 * 1024)

    while open.out || open.err || stdinOpen {
      let remaining = deadline - MonotonicClock.milliseconds()
      if remaining <= 0 {
        timedOut = true
        break
      }
      var fds: [pollfd] = []
      if stdinOpen { fds.append(pollfd(fd: input.write, events: Int16(POLLOUT), revents: 0)) }
      if open.out { fds.append(pollfd(fd: output.read, events: Int16(POLLIN), revents: 0)) }
      if open.err { fds.append(pollfd(fd: errors.read, events: Int16(POLLIN), revents: 0)) }
      let ready = poll(&fds, nfds_t(fds.count), Int32(min(remaining, 1000)))
      if ready < 0 {
        if errno == EINTR { continue }
        break
      }
      for entry in fds where entry.revents != 0 {
        if entry.fd == input.write {
          let n = stdin[stdinOffset...].withUnsafeBytes { write(input.write, $0.baseAddress, $0.count) }
          if n > 0 { stdinOffset += n }
          // EPIPE (the child exited without reading) ends stdin like completion does.
          if n < 0 && errno != EAGAIN || stdinOffset >= stdin.count {
            close(input.write)
            stdinOpen = false
          }
        } else {
          let n = read(entry.fd, &buffer, buffer.count)
          if n > 0 {
            if entry.fd == output.read { out += buffer[0..<n] } else { err += buffer[0..<n] }
          } else if n == 0 || errno != EAGAIN {
            if entry.fd == output.read { open.out = false } else { open.err = false }
          }
        }
      }
    }
    if timedOut { kill(-pid, SIGKILL) }
    if stdinOpen { close(input.write) }
    close(output.read)
    close(errors.read)
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return Output(status: code, stdout: out, stderr: err, timedOut: timedOut)
  }

}

/// Calls `body` with a NULL-terminated, mutable C string array (argv/envp style).
public func withCMutableStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R
{
  let duplicated: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) } + [nil]
  defer { duplicated.forEach { free($0) } }
  return duplicated.withUnsafeBufferPointer { body($0.baseAddress!) }
}
