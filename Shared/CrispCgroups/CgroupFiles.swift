#if canImport(Glibc)
  import Glibc
#endif

/// Small reads of cgroup and proc files: plain system calls, no Foundation (the reader
/// runs on every stats call, for every container).
public enum CgroupFiles {
  /// A whole small file as text; nil when it cannot be opened (a cgroup that is gone).
  public static func read(_ path: String, limit: Int = 1 << 20) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while bytes.count < limit {
      let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
      if n < 0 && errno == EINTR { continue }
      guard n > 0 else { break }
      bytes.append(contentsOf: chunk[0..<n])
    }
    return String(decoding: bytes, as: UTF8.self)
  }

  public static func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
  }

  /// One unsigned number (`memory.current`, `pids.current`); nil for `max` or garbage.
  public static func number(_ path: String) -> UInt64? {
    read(path).flatMap { UInt64(trimmed($0)) }
  }

  /// `key value` lines (`memory.stat`, `cpu.stat`, `memory.events`).
  public static func keyed(_ text: String?) -> [Substring: UInt64] {
    guard let text else { return [:] }
    var values: [Substring: UInt64] = [:]
    for line in text.split(separator: "\n") {
      guard let space = line.firstIndex(of: " ") else { continue }
      if let value = UInt64(trimmed(line[line.index(after: space)...])) { values[line[..<space]] = value }
    }
    return values
  }

  static func trimmed<S: StringProtocol>(_ text: S) -> Substring {
    var s = Substring(text)
    while let last = s.last, last == " " || last == "\n" || last == "\t" { s = s.dropLast() }
    while let first = s.first, first == " " || first == "\t" || first == "\n" { s = s.dropFirst() }
    return s
  }
}
