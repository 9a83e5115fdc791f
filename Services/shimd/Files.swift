import CrispCore
import CrispLinux

#if canImport(Glibc)
  import Glibc
#endif

/// Small POSIX file helpers (shimd links no full Foundation).
enum Files {
  static func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

  static func read(_ path: String, limit: Int = 16 << 20) throws(CrispError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
      let code = errno
      throw CrispError(code == ENOENT ? .notFound : .internal, "cannot open \(path): \(errnoText(code))")
    }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
      let n = Glibc.read(fd, &buffer, buffer.count)
      if n < 0 {
        if errno == EINTR { continue }
        throw CrispError(.internal, "cannot read \(path): \(errnoText())")
      }
      if n == 0 { break }
      bytes += buffer[0..<n]
      guard bytes.count <= limit else { throw CrispError(.invalidArgument, "\(path) is larger than \(limit) bytes") }
    }
    return bytes
  }

  /// The file's text, or nil when it cannot be read (cgroup and /proc files).
  static func text(_ path: String) -> String? {
    guard let bytes = try? read(path, limit: 1 << 20) else { return nil }
    return String(decoding: bytes, as: UTF8.self)
  }

  static func exists(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0
  }

  static func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
  }

  static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
    ProcessControl.writeAll(fd, bytes)
  }

  /// Writes `bytes` to a temporary file beside `path`, syncs it and renames it over
  /// `path`: a reader sees the old file or the whole new one, never a part.
  static func writeAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) throws(CrispError) {
    let temporary = path + ".tmp.\(getpid())"
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard fd >= 0 else { throw CrispError(.internal, "cannot create \(temporary): \(errnoText())") }
    let written = bytes.withUnsafeBytes { writeAll(fd, $0) }
    let synced = fsync(fd) == 0
    close(fd)
    guard written, synced else {
      let reason = errnoText()
      unlink(temporary)
      throw CrispError(.internal, "cannot write \(temporary): \(reason)")
    }
    guard rename(temporary, path) == 0 else {
      let reason = errnoText()
      unlink(temporary)
      throw CrispError(.internal, "cannot rename \(temporary) to \(path): \(reason)")
    }
  }

  /// The directory part of a path ("/" for a file at the root).
  static func parent(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
  }

  static func openDevNull() throws(CrispError) -> Int32 {
    let fd = open("/dev/null", O_RDWR | O_CLOEXEC)
    guard fd >= 0 else { throw CrispError(.internal, "cannot open /dev/null: \(errnoText())") }
    return fd
  }
}
