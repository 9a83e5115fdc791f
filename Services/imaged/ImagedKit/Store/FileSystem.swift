import CrispCore
import CrispLinux
import Glibc

/// The few file operations the stores need, on raw system calls with errors that
/// name the path.
enum FileSystem {
  static func exists(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
  }

  static func makeDirectory(_ path: String, mode: mode_t = 0o700) throws(CrispError) {
    if mkdir(path, mode) != 0 && errno != EEXIST {
      throw CrispError(.internal, "cannot create \(path): \(String(cString: strerror(errno)))")
    }
  }

  /// Writes `bytes` to a temporary file in `tempDir`, fsyncs it, and renames it to `path`.
  static func writeAtomically(_ bytes: [UInt8], to path: String, tempDir: String) throws(CrispError) {
    var template = Array((tempDir + "/blob.XXXXXX").utf8CString)
    let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard fd >= 0 else { throw CrispError(.internal, "cannot create a file in \(tempDir): \(errnoText())") }
    let tempPath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    var ok = bytes.withUnsafeBytes { writeAll(fd, $0) }
    ok = ok && fsync(fd) == 0
    close(fd)
    guard ok, rename(tempPath, path) == 0 else {
      let reason = errnoText()
      unlink(tempPath)
      throw CrispError(.internal, "cannot write \(path): \(reason)")
    }
  }

  static func readFile(_ path: String, limit: Int = 64 << 20) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out = [UInt8]()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
      let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if n < 0 && errno == EINTR { continue }
      if n <= 0 { return n == 0 ? out : nil }
      out += buffer[0..<n]
      if out.count > limit { return nil }
    }
  }

  @discardableResult
  static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> Bool {
    ProcessControl.writeAll(fd, bytes)
  }

  /// Removes a tree without following symlinks; a missing path is not an error.
  static func removeTree(_ path: String) { DirectoryTree.remove(path) }

  /// Bytes (allocated blocks) and inodes used by a tree, as `du` counts them.
  static func usage(_ path: String) -> (bytes: UInt64, inodes: UInt64) {
    let used = DiskUsage.measure(path)
    return (used.bytes, used.inodes)
  }

  /// Names in a directory (not `.`/`..`); empty when it cannot be read.
  static func list(_ path: String) -> [String] {
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

  static func errnoText() -> String { String(cString: strerror(errno)) }
}
