#if canImport(Glibc)
  import Glibc
#endif

/// The fields of `/proc/<pid>/status`: what a process really runs with.
public struct ProcessStatus: Sendable {
  public let fields: [String: String]

  public init(pid: Int32) {
    var fields: [String: String] = [:]
    for line in Self.read("/proc/\(pid)/status").split(separator: "\n") {
      let parts = line.split(separator: ":", maxSplits: 1)
      if parts.count == 2 {
        fields[String(parts[0])] = String(parts[1].drop(while: { $0 == " " || $0 == "\t" }))
      }
    }
    self.fields = fields
  }

  /// A capability field (CapEff, CapPrm, CapBnd, CapAmb, CapInh) as a bit mask.
  public func capabilityMask(_ field: String) -> UInt64? { fields[field].flatMap { UInt64($0, radix: 16) } }

  public func capabilities(_ field: String) -> Set<Capability> {
    guard let mask = capabilityMask(field) else { return [] }
    return Set(Capability.all.filter { mask & (1 << UInt64($0.value)) != 0 })
  }

  public var seccompMode: String {
    switch fields["Seccomp"] {
    case "0": "disabled"
    case "1": "strict"
    case "2": "filter"
    default: "unknown"
    }
  }

  public var noNewPrivileges: Bool { fields["NoNewPrivs"] == "1" }

  private static func read(_ path: String) -> String {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return "" }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
      let n = Glibc.read(fd, &buffer, buffer.count)
      if n <= 0 { break }
      bytes += buffer[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
  }
}
