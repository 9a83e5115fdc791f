import CCrispSys
import CrispCore
import CrispLinux
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The container's output, copied to attached sessions. The monitor thread offers
/// every chunk it reads from the container (the same chunks it writes to the CRI
/// log); each session has its own bounded queue. A chunk that does not fit in a
/// session's queue is DROPPED for that session only (and counted): the log writer and
/// the container never wait for an attach client, so a slow attach client loses
/// output rather than slowing the container or its log.
final class AttachHub: Sendable {
  private struct State {
    var taps: [ObjectIdentifier: AttachTap] = [:]
    var exitCode: Int32?
  }
  private let state = Mutex(State())

  /// Registers a session's queue; one that joins after the container exited gets
  /// the end at once.
  func add(_ tap: AttachTap) {
    let exitCode = state.withLock { s -> Int32? in
      if s.exitCode == nil { s.taps[ObjectIdentifier(tap)] = tap }
      return s.exitCode
    }
    if let exitCode { tap.end(exitCode: exitCode) }
  }

  func remove(_ tap: AttachTap) {
    _ = state.withLock { $0.taps.removeValue(forKey: ObjectIdentifier(tap)) }
  }

  /// Called by the monitor thread for each chunk of output.
  func broadcast(_ stream: CRILogWriter.Stream, _ bytes: UnsafeBufferPointer<UInt8>) {
    state.withLock { s in
      for tap in s.taps.values { tap.offer(stream, bytes) }
    }
  }

  /// The container exited and its output is drained: every session gets its end.
  func containerExited(exitCode: Int32) {
    let taps = state.withLock { s -> [AttachTap] in
      s.exitCode = exitCode
      defer { s.taps = [:] }
      return Array(s.taps.values)
    }
    for tap in taps { tap.end(exitCode: exitCode) }
  }
}

/// One attach session's queue: framed output (channel 1 or 2), the end once the
/// container exited, and a pipe that wakes the session's thread.
final class AttachTap: SessionOutputQueue, Sendable {
  static let capacity = 256 << 10

  private struct State {
    var queue: [UInt8] = []
    var dropped = 0
    var exitCode: Int32?
  }
  private let state = Mutex(State())
  private let stdout: Bool
  private let stderr: Bool
  private let wakeRead: Int32
  private let wakeWrite: Int32

  init(stdout: Bool, stderr: Bool) throws(CrispError) {
    self.stdout = stdout
    self.stderr = stderr
    let wake = try ProcessControl.pipe()
    wakeRead = wake.read
    wakeWrite = wake.write
    _ = fcntl(wakeRead, F_SETFL, fcntl(wakeRead, F_GETFL) | O_NONBLOCK)
    _ = fcntl(wakeWrite, F_SETFL, fcntl(wakeWrite, F_GETFL) | O_NONBLOCK)
  }

  deinit {
    close(wakeRead)
    close(wakeWrite)
  }

  /// Bytes dropped because the session's client did not keep up.
  var dropped: Int { state.withLock { $0.dropped } }

  var wakeFD: Int32 { wakeRead }

  func offer(_ stream: CRILogWriter.Stream, _ bytes: UnsafeBufferPointer<UInt8>) {
    let channel: SessionFrame.Channel
    switch stream {
    case .stdout:
      guard stdout else { return }
      channel = .stdout
    case .stderr:
      guard stderr else { return }
      channel = .stderr
    }
    guard !bytes.isEmpty else { return }
    let wasEmpty = state.withLock { s -> Bool? in
      guard s.exitCode == nil else { return nil }
      guard s.queue.count + SessionFrame.headerSize + bytes.count <= Self.capacity else {
        s.dropped += bytes.count
        return nil
      }
      let empty = s.queue.isEmpty
      let start = s.queue.count
      s.queue.append(contentsOf: repeatElement(0, count: SessionFrame.headerSize))
      s.queue.withUnsafeMutableBytes {
        SessionFrame.writeHeader(channel, length: bytes.count, to: $0.baseAddress! + start)
      }
      s.queue.append(contentsOf: bytes)
      return empty
    }
    if wasEmpty == true { wake() }
  }

  func end(exitCode: Int32) {
    state.withLock { $0.exitCode = $0.exitCode ?? exitCode }
    wake()
  }

  func take() -> (bytes: [UInt8], exitCode: Int32?) {
    var sink = [UInt8](repeating: 0, count: 64)
    while read(wakeRead, &sink, sink.count) > 0 {}
    return state.withLock { s in
      let bytes = s.queue
      s.queue = []
      // Nothing is queued after the end: the session sends these bytes, then the end.
      return (bytes, s.exitCode)
    }
  }

  private func wake() {
    var byte: UInt8 = 1
    _ = write(wakeWrite, &byte, 1)
  }
}
