/// Where the node's cgroup hierarchies are mounted, read from `/proc/self/mountinfo`.
/// Pure v2 when a cgroup2 file system is mounted at the cgroup root (`/sys/fs/cgroup`);
/// otherwise v1, also on hybrid nodes where a v2 hierarchy sits beside the v1 ones
/// (runc then uses the v1 controllers, and so do the readers here).
public struct CgroupMounts: Sendable, Equatable {
  public enum Version: Sendable, Equatable { case v1, v2 }

  public var version: Version
  /// v2: the unified hierarchy's mount point.
  public var unified: String
  /// v1: each controller's mount point (`cpu` and `cpuacct` may share one).
  public var controllers: [String: String]

  public init(version: Version, unified: String = "", controllers: [String: String] = [:]) {
    self.version = version
    self.unified = unified
    self.controllers = controllers
  }

  /// The mounts this process sees; nil when no cgroup file system is mounted.
  public static func current(cgroupRoot: String = "/sys/fs/cgroup") -> CgroupMounts? {
    CgroupFiles.read("/proc/self/mountinfo").flatMap { parse(mountinfo: $0, cgroupRoot: cgroupRoot) }
  }

  /// `id parent major:minor root mount-point options [optional…] - type source super-options`
  public static func parse(mountinfo: String, cgroupRoot: String = "/sys/fs/cgroup") -> CgroupMounts? {
    var controllers: [String: String] = [:]
    for line in mountinfo.split(separator: "\n") {
      let fields = line.split(separator: " ")
      guard let dash = fields.firstIndex(of: "-"), dash > 4, fields.count >= dash + 4 else { continue }
      let mountPoint = unescape(fields[4])
      switch fields[dash + 1] {
      case "cgroup2" where mountPoint == cgroupRoot:
        return CgroupMounts(version: .v2, unified: mountPoint)
      case "cgroup":
        for option in fields[dash + 3].split(separator: ",") where controllers[String(option)] == nil {
          // Super options are the controllers plus rw/ro and flags such as `name=systemd`.
          guard option != "rw", option != "ro", !option.contains("=") else { continue }
          controllers[String(option)] = mountPoint
        }
      default: continue
      }
    }
    return controllers.isEmpty ? nil : CgroupMounts(version: .v1, controllers: controllers)
  }

  /// mountinfo escapes space, tab, newline and backslash as `\ooo`.
  static func unescape(_ field: Substring) -> String {
    guard field.contains("\\") else { return String(field) }
    var out: [UInt8] = []
    let bytes = Array(field.utf8)
    var i = 0
    while i < bytes.count {
      if bytes[i] == UInt8(ascii: "\\"), i + 3 < bytes.count,
        let value = UInt8(String(decoding: bytes[(i + 1)..<(i + 4)], as: UTF8.self), radix: 8)
      {
        out.append(value)
        i += 4
      } else {
        out.append(bytes[i])
        i += 1
      }
    }
    return String(decoding: out, as: UTF8.self)
  }
}

/// A process's cgroups, from `/proc/<pid>/cgroup`: `4:memory:/x` lines on v1,
/// `0::/x` on v2.
public struct ProcessCgroups: Sendable, Equatable {
  /// v1 controller (`memory`, `cpuacct`) → path; `""` → the unified path.
  public var paths: [String: String]

  public init(paths: [String: String]) { self.paths = paths }

  public static func read(pid: Int32) -> ProcessCgroups? {
    CgroupFiles.read("/proc/\(pid)/cgroup").map(parse)
  }

  public static func parse(_ text: String) -> ProcessCgroups {
    var paths: [String: String] = [:]
    for line in text.split(separator: "\n") {
      let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
      guard parts.count == 3 else { continue }
      if parts[0] == "0" && parts[1].isEmpty {
        paths[""] = String(parts[2])
      } else {
        for controller in parts[1].split(separator: ",") { paths[String(controller)] = String(parts[2]) }
      }
    }
    return ProcessCgroups(paths: paths)
  }

  public func path(for controller: String, version: CgroupMounts.Version) -> String? {
    version == .v2 ? paths[""] : paths[controller]
  }
}
