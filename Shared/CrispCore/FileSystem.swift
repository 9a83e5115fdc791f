#if canImport(Glibc)
  import Glibc
#endif

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
