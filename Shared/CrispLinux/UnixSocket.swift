import CrispCore

#if canImport(Glibc)
  import Glibc
#endif

/// Unix stream sockets for the CRI endpoint: stale-file handling, mode and group
/// set before anyone can connect.
public enum UnixSocket {
  /// Fills a `sockaddr_un`; a leading "@" names an abstract socket.
  public static func address(_ path: String) throws(CrispError) -> (sockaddr_un, socklen_t) {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    var bytes = Array(path.utf8)
    let abstract = bytes.first == UInt8(ascii: "@")
    if abstract { bytes[0] = 0 }
    let capacity = MemoryLayout.size(ofValue: address.sun_path)
    guard !bytes.isEmpty, bytes.count < capacity else {
      throw CrispError(.invalidArgument, "socket path \(path) is empty or longer than \(capacity - 1) bytes")
    }
    withUnsafeMutableBytes(of: &address.sun_path) { buffer in
      for (i, byte) in bytes.enumerated() { buffer[i] = byte }
    }
    let length = MemoryLayout<sa_family_t>.size + bytes.count + (abstract ? 0 : 1)
    return (address, socklen_t(length))
  }

  /// Whether a process accepts connections on `path` now.
  public static func isLive(_ path: String) -> Bool {
    guard let target = try? address(path) else { return false }
    var address = target.0
    let length = target.1
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    let rv = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
    }
    return rv == 0
  }

  /// Binds and listens on `path` with `mode` (and `group`, if given), removing a stale
  /// socket file first. Refuses when something is live on the path or the path is
  /// not a socket. The socket is bound in a fresh 0700 directory beside `path`, given
  /// its mode and group there, then renamed into place: it is never reachable with wider
  /// permissions, even for an instant, and the process-wide umask (which other threads
  /// use while they create files) is left alone.
  public static func listen(path: String, mode: mode_t, group: gid_t? = nil, backlog: Int32 = 128)
    throws(CrispError) -> Int32
  {
    var st = stat()
    if lstat(path, &st) == 0 {
      guard (st.st_mode & S_IFMT) == S_IFSOCK else {
        throw CrispError(.alreadyExists, "\(path) exists and is not a socket; refusing to replace it")
      }
      if isLive(path) {
        throw CrispError(.alreadyExists, "another process is serving on \(path)")
      }
      unlink(path)
    }
    _ = try address(path)  // the final path must fit in a socket address too
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw CrispError(.internal, "socket: \(Files.errnoText())") }
    do {
      try bindPrivately(fd, path: path, mode: mode, group: group)
    } catch {
      close(fd)
      throw error
    }
    guard Glibc.listen(fd, backlog) == 0 else {
      let reason = Files.errnoText()
      close(fd)
      unlink(path)
      throw CrispError(.internal, "listen \(path): \(reason)")
    }
    return fd
  }

  /// Binds `fd` at `path` by way of a private directory (see `listen`). The bind goes
  /// through /proc/self/fd/<directory>, whose short name fits a socket address wherever
  /// the directory is.
  private static func bindPrivately(_ fd: Int32, path: String, mode: mode_t, group: gid_t?) throws(CrispError) {
    func failure(_ what: String) -> CrispError {
      CrispError(.internal, "\(what) for \(path): \(Files.errnoText())")
    }
    if path.hasPrefix("@") {
      var (address, length) = try address(path)
      let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
      }
      guard bound == 0 else { throw failure("bind") }
      return
    }
    let parent = path.lastIndex(of: "/").map { String(path[..<$0]) }.map { $0.isEmpty ? "/" : $0 } ?? "."
    var template = Array((parent + "/.crisp-bind.XXXXXX").utf8CString)
    guard let made = mkdtemp(&template) else { throw failure("mkdtemp in \(parent)") }
    let directory = String(cString: made)
    defer { rmdir(directory) }
    let directoryFD = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard directoryFD >= 0 else { throw failure("open \(directory)") }
    defer { close(directoryFD) }
    var (address, length) = try address("/proc/self/fd/\(directoryFD)/s")
    let bound = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
    }
    guard bound == 0 else { throw failure("bind") }
    guard fchmodat(directoryFD, "s", mode, 0) == 0 else {
      let error = failure("chmod")
      unlinkat(directoryFD, "s", 0)
      throw error
    }
    if let group, fchownat(directoryFD, "s", uid_t.max, group, 0) != 0 {
      let error = failure("chown to group \(group)")
      unlinkat(directoryFD, "s", 0)
      throw error
    }
    guard renameat(directoryFD, "s", AT_FDCWD, path) == 0 else {
      let error = failure("rename into place")
      unlinkat(directoryFD, "s", 0)
      throw error
    }
  }
}

/// An exclusive advisory lock on a file, held while the process lives: the kernel
/// releases it when the process dies, so a crash never leaves a stale lock.
public struct FileLock: Sendable {
  public let path: String
  private let fd: Int32

  /// Takes the lock or throws `alreadyExists` naming the holder's pid when known.
  public init(path: String) throws(CrispError) {
    let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw CrispError(.internal, "open \(path): \(Files.errnoText())") }
    if flock(fd, LOCK_EX | LOCK_NB) != 0 {
      let holder = Self.readPID(fd)
      close(fd)
      throw CrispError(
        .alreadyExists, "another process holds \(path)" + (holder.map { " (pid \($0))" } ?? ""))
    }
    _ = ftruncate(fd, 0)
    let pid = Array("\(getpid())\n".utf8)
    _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
    self.path = path
    self.fd = fd
  }

  public func release() {
    _ = ftruncate(fd, 0)
    close(fd)
  }

  private static func readPID(_ fd: Int32) -> Int32? {
    var buffer = [UInt8](repeating: 0, count: 32)
    let n = pread(fd, &buffer, buffer.count, 0)
    guard n > 0 else { return nil }
    return Int32(
      String(decoding: buffer[0..<n], as: UTF8.self).split(whereSeparator: { $0 == "\n" || $0 == " " }).first.map(
        String.init) ?? "")
  }
}
