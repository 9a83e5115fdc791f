#if canImport(Glibc)
  import Glibc
#endif

/// crisp's one file layer: small POSIX file operations on raw system calls (every
/// library shimd links stays free of full Foundation), each error naming the path and
/// the system's reason.
public enum Files {
  /// The system's text for an errno value ("No such file or directory").
  public static func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

  /// The whole file, at most `limit` bytes: notFound when it does not exist.
  public static func read(_ path: String, limit: Int = 16 << 20) throws(CrispError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
      let code = errno
      throw CrispError(code == ENOENT ? .notFound : .internal, "cannot open \(path): \(errnoText(code))")
    }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    while true {
      let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
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
  public static func text(_ path: String, limit: Int = 1 << 20) -> String? {
    guard let bytes = try? read(path, limit: limit) else { return nil }
    return String(decoding: bytes, as: UTF8.self)
  }

  /// Whether something is at `path`; `followingLinks: false` asks about a symlink
  /// itself.
  public static func exists(_ path: String, followingLinks: Bool = true) -> Bool {
    var st = stat()
    return (followingLinks ? stat(path, &st) : lstat(path, &st)) == 0
  }

  public static func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
  }

  /// Writes all of `bytes`, retrying EINTR and short writes; false on any other error.
  @discardableResult
  public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
    var offset = 0
    while offset < bytes.count {
      let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
      if n < 0 {
        if errno == EINTR { continue }
        return false
      }
      offset += n
    }
    return true
  }

  /// Writes `bytes` to a temporary file (beside `path`, or in `temporaryDirectory`),
  /// syncs it and renames it over `path`: a reader sees the old file or the whole new
  /// one, never a part.
  public static func writeAtomically(
    _ path: String, _ bytes: [UInt8], mode: mode_t = 0o644, temporaryDirectory: String? = nil
  ) throws(CrispError) {
    let directory = temporaryDirectory ?? parent(of: path)
    var template = Array((directory + "/.tmp.XXXXXX").utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else { throw CrispError(.internal, "cannot create a file in \(directory): \(errnoText())") }
    // mkstemp has no O_CLOEXEC: set it before a child could be started meanwhile.
    _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    let temporary = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    let written = bytes.withUnsafeBytes { writeAll(fd, $0) }
    let finished = written && fchmod(fd, mode) == 0 && fsync(fd) == 0
    let reason = errnoText()
    close(fd)
    guard finished else {
      unlink(temporary)
      throw CrispError(.internal, "cannot write \(path): \(reason)")
    }
    guard rename(temporary, path) == 0 else {
      let reason = errnoText()
      unlink(temporary)
      throw CrispError(.internal, "cannot rename \(temporary) to \(path): \(reason)")
    }
  }

  /// The directory part of a path ("/" for a file at the root).
  public static func parent(of path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
  }

  public static func openDevNull() throws(CrispError) -> Int32 {
    let fd = open("/dev/null", O_RDWR | O_CLOEXEC)
    guard fd >= 0 else { throw CrispError(.internal, "cannot open /dev/null: \(errnoText())") }
    return fd
  }

  /// Creates one directory; an existing one is fine.
  public static func makeDirectory(_ path: String, mode: mode_t = 0o700) throws(CrispError) {
    if mkdir(path, mode) != 0 && errno != EEXIST {
      throw CrispError(.internal, "cannot create \(path): \(errnoText())")
    }
  }

  /// Names in a directory (not `.` and `..`); empty when it cannot be read.
  public static func list(_ path: String) -> [String] {
    guard let dir = opendir(path) else { return [] }
    defer { closedir(dir) }
    var names = [String]()
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
        String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
      }
      if name != "." && name != ".." { names.append(name) }
    }
    return names
  }
}

/// Up to `count` bytes read from `fd` (fewer at its end), retrying EINTR and short reads.
public func readBytes(_ fd: Int32, count: Int) -> [UInt8] {
  var bytes = [UInt8](repeating: 0, count: count)
  var done = 0
  while done < count {
    let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + done, $0.count - done) }
    if n < 0 && errno == EINTR { continue }
    guard n > 0 else { break }
    done += n
  }
  return Array(bytes[..<done])
}

/// Creates a root-only (0700) directory, or makes an existing one root-only: each
/// directory that leads to container, image or pod content is one, so that no other host
/// user reaches a container's setuid files, device nodes or shared memory through it
/// (containerd's CVE-2021-41103). An older crisp made some of them 0711.
public func makePrivateDirectory(_ path: String) throws(CrispError) {
  try makeDirectories(path, mode: 0o700)
  guard chmod(path, 0o700) == 0 else {
    throw CrispError(.internal, "cannot make \(path) root-only: \(Files.errnoText())")
  }
}

/// Creates a directory and its missing parents with `mode` (like `mkdir -p`).
public func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(CrispError) {
  var current = path.hasPrefix("/") ? "" : "."
  for part in path.split(separator: "/") {
    current += "/" + part
    if mkdir(current, mode) != 0 && errno != EEXIST {
      throw CrispError(.internal, "cannot create directory \(current): \(Files.errnoText())")
    }
  }
}
