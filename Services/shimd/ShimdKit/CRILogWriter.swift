import CrispCore
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// The container's CRI log file: one record per line,
///
///     2026-11-29T09:41:07.123456789Z stdout F hello
///
/// `F` closes a line that ended with a newline; `P` is part of a longer line (a line
/// longer than `maxRecord` is cut into P records and ends with an F record) or the
/// last bytes of a stream that ended without a newline. Each record is written with
/// one write(2) to a file opened with O_APPEND.
final class CRILogWriter: Sendable {
  static let maxRecord = 16 * 1024

  enum Stream: Sendable {
    case stdout, stderr
    var tag: String {
      switch self {
      case .stdout: "stdout"
      case .stderr: "stderr"
      }
    }
  }

  /// Empty: the output is read and dropped (a container without a log path).
  let path: String
  /// A directory `path` is below (the pod's log directory): the directories between it
  /// and the file are made and entered without following a symlink, at create and at
  /// every reopen, so that one swapped in meanwhile leads nowhere. Empty: none.
  let root: String
  private let fd: Mutex<Int32>

  init(path: String, root: String = "") throws(CrispError) {
    self.path = path
    self.root = root
    fd = Mutex(-1)
    if !path.isEmpty { try reopen() }
  }

  deinit {
    fd.withLock { if $0 >= 0 { close($0) } }
  }

  /// Opens the file at `path` anew (creating it, mode 0640, and its directories) and
  /// closes the old descriptor: after kubelet renamed the file, new records go to a
  /// new file at the old name.
  func reopen() throws(CrispError) {
    guard !path.isEmpty else { return }
    let existed = Files.exists(path)
    // Never through a symlink, never a FIFO or a device: the path comes from a CRI client.
    let newFD = try openBelowRoot()
    guard newFD >= 0 else { throw CrispError(.internal, "cannot open the log file \(path): \(Files.errnoText())") }
    var info = stat()
    guard fstat(newFD, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
      close(newFD)
      throw CrispError(.invalidArgument, "the log file \(path) is not a regular file")
    }
    // Writes block as for any regular file; O_NONBLOCK only kept the open from waiting.
    _ = fcntl(newFD, F_SETFL, O_WRONLY | O_APPEND)
    if !existed { _ = fchmod(newFD, 0o640) }
    let old = fd.withLock { current -> Int32 in
      let old = current
      current = newFD
      return old
    }
    if old >= 0 { close(old) }
  }

  /// The log file, opened for appending: below `root` through real directories only
  /// (made 0755 when missing), else (no root) through whatever `path` names.
  private func openBelowRoot() throws(CrispError) -> Int32 {
    let flags = O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK
    guard !root.isEmpty, path.hasPrefix(root + "/") else {
      try makeDirectories(Files.parent(of: path), mode: 0o755)
      return open(path, flags, 0o640)
    }
    // The root itself is kubelet's (or crisp's default_log_dir): made as named.
    try makeDirectories(root, mode: 0o755)
    var directory = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard directory >= 0 else {
      throw CrispError(.internal, "cannot open the log directory \(root): \(Files.errnoText())")
    }
    defer { close(directory) }
    var components = path.dropFirst(root.count + 1).split(separator: "/").map(String.init)
    guard let name = components.popLast() else {
      throw CrispError(.invalidArgument, "the log path \(path) names no file")
    }
    for component in components {
      if mkdirat(directory, component, 0o755) != 0 && errno != EEXIST {
        throw CrispError(.internal, "cannot create \(component) in the log directory: \(Files.errnoText())")
      }
      let next = openat(directory, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
      guard next >= 0 else {
        throw CrispError(
          .invalidArgument, "the log path \(path) goes through \(component), which is not a directory (a symlink?)")
      }
      close(directory)
      directory = next
    }
    return openat(directory, name, flags, 0o640)
  }

  /// Writes one record with one writev(2): header, content and newline, no copy of
  /// the content. False when the write failed (disk full); the record is lost.
  @discardableResult
  func write(_ stream: Stream, partial: Bool, _ content: ArraySlice<UInt8>) -> Bool {
    var header: [UInt8] = []
    header.reserveCapacity(48)
    Self.appendTimestamp(WallClock.nowNanoseconds(), to: &header)
    header.append(UInt8(ascii: " "))
    header += stream.tag.utf8
    header += partial ? Array(" P ".utf8) : Array(" F ".utf8)
    var newline = UInt8(ascii: "\n")
    return fd.withLock { fd in
      guard fd >= 0 else { return true }
      return header.withUnsafeMutableBytes { head in
        content.withUnsafeBytes { body in
          withUnsafeMutableBytes(of: &newline) { tail in
            var parts = [
              iovec(iov_base: head.baseAddress, iov_len: head.count),
              iovec(iov_base: UnsafeMutableRawPointer(mutating: body.baseAddress), iov_len: body.count),
              iovec(iov_base: tail.baseAddress, iov_len: 1),
            ]
            let total = head.count + body.count + 1
            var written = 0
            while true {
              let n = writev(fd, &parts, Int32(parts.count))
              if n < 0 {
                if errno == EINTR { continue }
                return false
              }
              written += n
              if written >= total { return true }
              // A short write (a full disk, a signal): write the rest in order.
              var skip = n
              var rest: [iovec] = []
              for part in parts {
                if skip >= part.iov_len {
                  skip -= part.iov_len
                  continue
                }
                rest.append(iovec(iov_base: part.iov_base! + skip, iov_len: part.iov_len - skip))
                skip = 0
              }
              parts = rest
            }
          }
        }
      }
    }
  }

  /// RFC 3339 in UTC with nine fractional digits: `2026-11-29T09:41:07.123456789Z`.
  static func appendTimestamp(_ nanoseconds: Int64, to out: inout [UInt8]) {
    var seconds = time_t(nanoseconds / 1_000_000_000)
    let fraction = Int(nanoseconds % 1_000_000_000)
    var parts = tm()
    gmtime_r(&seconds, &parts)
    func digits(_ value: Int, _ count: Int) {
      let start = out.count
      out.append(contentsOf: repeatElement(UInt8(ascii: "0"), count: count))
      var rest = value
      var i = start + count - 1
      while i >= start {
        out[i] = UInt8(ascii: "0") + UInt8(rest % 10)
        rest /= 10
        i -= 1
      }
    }
    digits(Int(parts.tm_year) + 1900, 4)
    out.append(UInt8(ascii: "-"))
    digits(Int(parts.tm_mon) + 1, 2)
    out.append(UInt8(ascii: "-"))
    digits(Int(parts.tm_mday), 2)
    out.append(UInt8(ascii: "T"))
    digits(Int(parts.tm_hour), 2)
    out.append(UInt8(ascii: ":"))
    digits(Int(parts.tm_min), 2)
    out.append(UInt8(ascii: ":"))
    digits(Int(parts.tm_sec), 2)
    out.append(UInt8(ascii: "."))
    digits(fraction, 9)
    out.append(UInt8(ascii: "Z"))
  }
}

/// Cuts one stream's bytes into CRI records: whole lines as F, pieces of lines longer
/// than `CRILogWriter.maxRecord` as P, and what is left when the stream ends as P.
/// Used by the monitor thread only.
struct LineSplitter {
  let stream: CRILogWriter.Stream
  private(set) var pending: [UInt8] = []

  init(stream: CRILogWriter.Stream) {
    self.stream = stream
    pending.reserveCapacity(CRILogWriter.maxRecord)
  }

  mutating func feed(_ data: UnsafeBufferPointer<UInt8>, to log: CRILogWriter) {
    let max = CRILogWriter.maxRecord
    var start = 0
    while start < data.count {
      let end = min(data.count, start + (max - pending.count))
      var newline: Int? = nil
      for i in start..<end where data[i] == UInt8(ascii: "\n") {
        newline = i
        break
      }
      if let newline {
        pending += data[start..<newline]
        log.write(stream, partial: false, pending[...])
        pending.removeAll(keepingCapacity: true)
        start = newline + 1
      } else {
        pending += data[start..<end]
        start = end
        if pending.count == max {
          log.write(stream, partial: true, pending[...])
          pending.removeAll(keepingCapacity: true)
        }
      }
    }
  }

  /// The stream ended: an unfinished line becomes a P record.
  mutating func finish(to log: CRILogWriter) {
    if !pending.isEmpty {
      log.write(stream, partial: true, pending[...])
      pending = []
    }
  }
}
