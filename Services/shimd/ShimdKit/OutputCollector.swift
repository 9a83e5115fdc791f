import CCrispSys
import CrispCore
import Dispatch

#if canImport(Glibc)
  import Glibc
#endif

/// Reads a child's output pipes on a background thread until they end, the child
/// exits (then whatever is already in the pipes is read, and pipes a grandchild
/// still holds are abandoned), or a deadline passes (then `onTimeout` runs and
/// reading goes on for a grace period).
struct OutputCollector {
  /// How long pipes are still read after the process exited.
  static let drainMs: Int64 = 1_000

  struct Output: Sendable {
    var streams: [[UInt8]]
    var truncated: [Bool]
    var timedOut: Bool
  }

  /// Takes ownership of `fds` (closes them) and of `process.fd` (a pidfd, or -1).
  static func collect(
    _ fds: [Int32], process: (fd: Int32, exited: Bool), limit: Int, timeoutMs: Int64?, graceMs: Int64 = 5_000,
    onTimeout: @escaping @Sendable () -> Void
  ) async -> Output {
    await withCheckedContinuation { continuation in
      DispatchQueue.global().async {
        continuation.resume(
          returning: collectBlocking(
            fds, process: process, limit: limit, timeoutMs: timeoutMs, graceMs: graceMs, onTimeout: onTimeout))
      }
    }
  }

  static func collectBlocking(
    _ fds: [Int32], process: (fd: Int32, exited: Bool), limit: Int, timeoutMs: Int64?, graceMs: Int64,
    onTimeout: () -> Void
  ) -> Output {
    var output = Output(
      streams: Array(repeating: [], count: fds.count), truncated: Array(repeating: false, count: fds.count),
      timedOut: false)
    var open = Array(repeating: true, count: fds.count)
    for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
    let start = MonotonicClock.milliseconds()
    var deadline = timeoutMs.map { start + $0 }
    let processFD = process.fd
    var processExited = process.exited
    var buffer = [UInt8](repeating: 0, count: 16 * 1024)
    var drainUntil: Int64? = nil
    defer {
      for (i, fd) in fds.enumerated() where open[i] { close(fd) }
      if processFD >= 0 { close(processFD) }
    }

    while open.contains(true) {
      var polled: [pollfd] = []
      var owners: [Int] = []
      for (i, fd) in fds.enumerated() where open[i] {
        polled.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
        owners.append(i)
      }
      if processFD >= 0 && !processExited {
        polled.append(pollfd(fd: processFD, events: Int16(POLLIN), revents: 0))
        owners.append(-1)
      }
      var wait: Int32 = -1
      if processExited {
        // Read what the process left in the pipes; a descendant that goes on
        // writing is cut off after a while.
        if drainUntil == nil { drainUntil = MonotonicClock.milliseconds() + Self.drainMs }
        if MonotonicClock.milliseconds() >= drainUntil! { break }
        wait = 0
      } else if let deadline {
        wait = Int32(clamping: max(0, deadline - MonotonicClock.milliseconds()))
      }
      let ready = poll(&polled, nfds_t(polled.count), wait)
      if ready < 0 {
        if errno == EINTR { continue }
        break
      }
      if ready == 0 {
        // Nothing left to read from a process that has exited.
        if processExited { break }
        if let current = deadline, MonotonicClock.milliseconds() >= current {
          if output.timedOut { break }  // the grace period passed too
          output.timedOut = true
          onTimeout()
          deadline = MonotonicClock.milliseconds() + graceMs
        }
        continue
      }
      for (slot, entry) in polled.enumerated() where entry.revents != 0 {
        let i = owners[slot]
        if i < 0 {
          processExited = true
          continue
        }
        let n = read(fds[i], &buffer, buffer.count)
        if n > 0 {
          let room = max(0, limit - output.streams[i].count)
          if room > 0 { output.streams[i] += buffer[0..<min(n, room)] }
          if n > room { output.truncated[i] = true }
        } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
          close(fds[i])
          open[i] = false
        }
      }
    }
    return output
  }
}
