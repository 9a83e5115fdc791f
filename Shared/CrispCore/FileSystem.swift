#if canImport(Glibc)
  import Glibc
#endif

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
