#if canImport(Glibc)
  import Glibc
#endif

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
    throw CrispError(.internal, "cannot make \(path) root-only: \(String(cString: strerror(errno)))")
  }
}

/// Creates a directory and its missing parents with `mode` (like `mkdir -p`).
public func makeDirectories(_ path: String, mode: mode_t = 0o755) throws(CrispError) {
  var current = path.hasPrefix("/") ? "" : "."
  for part in path.split(separator: "/") {
    current += "/" + part
    if mkdir(current, mode) != 0 && errno != EEXIST {
      throw CrispError(.internal, "cannot create directory \(current): \(String(cString: strerror(errno)))")
    }
  }
}
