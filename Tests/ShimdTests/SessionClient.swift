import Foundation

/// The client end of a shim's exec/attach session socket, written from the streaming
/// contract (1 byte channel, 4 bytes big-endian length, payload), as frontd uses it.
final class SessionClient: @unchecked Sendable {
  enum Channel: UInt8 {
    case stdin = 0
    case stdout = 1
    case stderr = 2
    case end = 3
    case resize = 4
    case stdinEOF = 5
  }

  let fd: Int32
  private let lock = NSLock()
  private var closed = false
  private var buffered: [UInt8] = []
  private var start = 0
  private var chunk = [UInt8](repeating: 0, count: 256 * 1024)

  init(path: String) throws {
    fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw FixtureError("socket: \(String(cString: strerror(errno)))") }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    withUnsafeMutableBytes(of: &address.sun_path) { buffer in
      for (i, byte) in bytes.enumerated() { buffer[i] = byte }
    }
    let rc = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    guard rc == 0 else {
      let reason = String(cString: strerror(errno))
      Glibc.close(fd)
      throw FixtureError("connect \(path): \(reason)")
    }
  }

  deinit { close() }

  func close() {
    lock.lock()
    defer { lock.unlock() }
    if !closed { Glibc.close(fd) }
    closed = true
  }

  func send(_ channel: Channel, _ payload: [UInt8] = []) throws {
    let length = UInt32(payload.count)
    let frame =
      [
        channel.rawValue, UInt8(length >> 24), UInt8((length >> 16) & 0xff), UInt8((length >> 8) & 0xff),
        UInt8(length & 0xff),
      ] + payload
    var offset = 0
    while offset < frame.count {
      let n = frame.withUnsafeBytes {
        Glibc.send(fd, $0.baseAddress! + offset, frame.count - offset, Int32(MSG_NOSIGNAL))
      }
      guard n > 0 else { throw FixtureError("send: \(String(cString: strerror(errno)))") }
      offset += n
    }
  }

  func send(_ channel: Channel, _ text: String) throws { try send(channel, Array(text.utf8)) }

  func resize(width: Int, height: Int) throws {
    try send(.resize, Array("{\"width\":\(width),\"height\":\(height)}".utf8))
  }

  /// The next frame, nil at EOF; throws when nothing comes within `timeout`.
  func next(timeout: TimeInterval = 20) throws -> (channel: UInt8, payload: [UInt8])? {
    let deadline = Date().addingTimeInterval(timeout)
    while true {
      if buffered.count - start >= 5 {
        let h = start
        let length =
          Int(buffered[h + 1]) << 24 | Int(buffered[h + 2]) << 16 | Int(buffered[h + 3]) << 8 | Int(buffered[h + 4])
        if buffered.count - start >= 5 + length {
          let frame = (buffered[h], Array(buffered[(h + 5)..<(h + 5 + length)]))
          start += 5 + length
          if start == buffered.count {
            buffered.removeAll(keepingCapacity: true)
            start = 0
          }
          return frame
        }
      }
      if start > 0 {
        buffered.removeFirst(start)
        start = 0
      }
      var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
      let left = Int32(max(0, deadline.timeIntervalSinceNow * 1000))
      let ready = poll(&entry, 1, left)
      if ready < 0 && errno == EINTR { continue }
      guard ready > 0 else { throw FixtureError("no frame within \(timeout) s") }
      let n = recv(fd, &chunk, chunk.count, 0)
      if n < 0 && errno == EINTR { continue }
      if n <= 0 {
        guard buffered.count == start else { throw FixtureError("EOF inside a frame") }
        return nil
      }
      buffered += chunk[0..<n]
    }
  }

  struct Result {
    var stdout: [UInt8] = []
    var stderr: [UInt8] = []
    var end: [String: Any]?
    var eofAfterEnd = false
    var stdoutText: String { String(decoding: stdout, as: UTF8.self) }
    var stderrText: String { String(decoding: stderr, as: UTF8.self) }
    var exitCode: Int? { end?["exitCode"] as? Int }
  }

  /// Reads frames until the end frame and the socket's EOF (or `until` is satisfied
  /// by the output so far).
  func collect(timeout: TimeInterval = 30, until: ((Result) -> Bool)? = nil) throws -> Result {
    var result = Result()
    let deadline = Date().addingTimeInterval(timeout)
    while let frame = try next(timeout: max(0.1, deadline.timeIntervalSinceNow)) {
      switch frame.channel {
      case Channel.stdout.rawValue: result.stdout += frame.payload
      case Channel.stderr.rawValue: result.stderr += frame.payload
      case Channel.end.rawValue:
        result.end = try JSONSerialization.jsonObject(with: Data(frame.payload)) as? [String: Any]
        result.eofAfterEnd = try next(timeout: 5) == nil
        return result
      default: throw FixtureError("unexpected channel \(frame.channel) from the shim")
      }
      if let until, until(result) { return result }
    }
    return result
  }
}
