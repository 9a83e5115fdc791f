import CrispCgroups
import CrispCore

#if canImport(Glibc)
  import Glibc
#endif

/// The container's memory cgroup, read for OOM kills: cgroup v2 `memory.events`
/// (`oom_kill`), cgroup v1 `memory.oom_control` (`oom_kill`, kernels since 4.13; on
/// older ones `under_oom`, or a non-zero `memory.failcnt`, as a hint).
struct CgroupMemory: Sendable, Equatable {
  enum Version: Sendable, Equatable { case v1, v2 }

  let directory: String
  let version: Version
  /// The cgroup's path below each hierarchy's mount point.
  let relative: String

  /// The OOM kills recorded so far; nil when the cgroup cannot be read (gone).
  func oomKillCount() -> UInt64? {
    switch version {
    case .v2:
      return Self.field("oom_kill", in: Files.text(directory + "/memory.events"))
    case .v1:
      let control = Files.text(directory + "/memory.oom_control")
      if let count = Self.field("oom_kill", in: control) { return count }
      // No oom_kill counter: an OOM condition or a hit limit is the best sign left.
      if Self.field("under_oom", in: control) == 1 { return 1 }
      if let failures = Self.field("failcnt", in: Files.text(directory + "/memory.failcnt").map { "failcnt " + $0 }),
        failures > 0
      {
        return 1
      }
      return control == nil ? nil : 0
    }
  }

  static func field(_ name: String, in text: String?) -> UInt64? {
    guard let text else { return nil }
    for line in text.split(separator: "\n") {
      let parts = line.split(separator: " ")
      if parts.count == 2, parts[0] == name { return UInt64(parts[1].trimmingSpaces) }
    }
    return nil
  }

  // MARK: finding the cgroup

  /// The memory cgroup of a container whose spec says `cgroupsPath`, checked against
  /// the cgroups of its running init (`/proc/<pid>/cgroup`), which wins when the spec's
  /// path does not name an existing directory (a relative or empty cgroupsPath).
  static func locate(cgroupsPath: String, initPid: Int32) -> CgroupMemory? {
    guard let (version, mount) = memoryHierarchy() else { return nil }
    if let relative = relativeDirectory(cgroupsPath: cgroupsPath) {
      let directory = mount + relative
      if Files.isDirectory(directory) {
        return CgroupMemory(directory: directory, version: version, relative: relative)
      }
    }
    if initPid > 0, let relative = processCgroup(pid: initPid, version: version) {
      let directory = mount + relative
      if Files.isDirectory(directory) {
        return CgroupMemory(directory: directory, version: version, relative: relative)
      }
    }
    return nil
  }

  /// Removes the container's cgroup from every hierarchy where it is still there
  /// (runc delete removes them, but gives up on one that stays busy for a moment).
  /// Returns the directories that could not be removed.
  func removeLeftovers() -> [String] {
    guard relative != "/", !relative.isEmpty else { return [] }
    var mounts: [String] = []
    if version == .v2 {
      mounts = ["/sys/fs/cgroup"]
    } else if let mountinfo = Files.text("/proc/self/mountinfo") {
      for line in mountinfo.split(separator: "\n") {
        let fields = line.split(separator: " ")
        guard let dash = fields.firstIndex(of: "-"), dash > 4, fields.count > dash + 1,
          fields[dash + 1] == "cgroup" || fields[dash + 1] == "cgroup2"
        else { continue }
        mounts.append(ContainerBundle.unescapeMountPath(fields[4]))
      }
    }
    var left: [String] = []
    for mount in mounts {
      let path = mount + relative
      var removed = !Files.isDirectory(path)
      for _ in 0..<20 where !removed {
        if rmdir(path) == 0 || errno == ENOENT {
          removed = true
        } else if errno == EBUSY {
          usleep(50_000)
        } else {
          break
        }
      }
      if !removed { left.append(path) }
    }
    return left
  }

  /// The path below the memory hierarchy's mount that `cgroupsPath` names, as runc
  /// reads it (CrispCgroups' rule, shared with frontd's stats); a relative path is
  /// below shimd's own cgroup (runc runs as shimd's child). nil for an empty path.
  static func relativeDirectory(cgroupsPath: String) -> String? {
    let own = memoryHierarchy().flatMap { processCgroup(pid: getpid(), version: $0.version) }
    return ContainerCgroup.relativePath(cgroupsPath: cgroupsPath, own: own)
  }

  /// Which hierarchy runc uses, and where it is mounted: the unified one when
  /// /sys/fs/cgroup is cgroup2 (pure v2), else the v1 `memory` controller (also in
  /// hybrid mode, where a v2 hierarchy is mounted beside the v1 ones).
  static func memoryHierarchy() -> (version: Version, mount: String)? {
    guard let mountinfo = Files.text("/proc/self/mountinfo") else { return nil }
    var v1Memory: String? = nil
    for line in mountinfo.split(separator: "\n") {
      // id parent major:minor root mount-point options [optional…] - type source super-options
      let fields = line.split(separator: " ")
      guard let dash = fields.firstIndex(of: "-"), dash > 4, fields.count >= dash + 4 else { continue }
      let mountPoint = ContainerBundle.unescapeMountPath(fields[4])
      let type = fields[dash + 1]
      if type == "cgroup2" && mountPoint == "/sys/fs/cgroup" { return (.v2, mountPoint) }
      if type == "cgroup" && v1Memory == nil && fields[dash + 3].split(separator: ",").contains("memory") {
        v1Memory = mountPoint
      }
    }
    return v1Memory.map { (.v1, $0) }
  }

  /// A process's cgroup path in the memory hierarchy (`4:memory:/x` in v1, `0::/x` in v2).
  static func processCgroup(pid: Int32, version: Version) -> String? {
    guard let text = Files.text("/proc/\(pid)/cgroup") else { return nil }
    for line in text.split(separator: "\n") {
      let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
      guard parts.count == 3 else { continue }
      switch version {
      case .v2 where parts[0] == "0" && parts[1].isEmpty: return String(parts[2])
      case .v1 where parts[1].split(separator: ",").contains("memory"): return String(parts[2])
      default: continue
      }
    }
    return nil
  }
}

extension Substring {
  var trimmingSpaces: Substring {
    var s = self
    while let last = s.last, last == " " || last == "\n" || last == "\t" { s = s.dropLast() }
    while let first = s.first, first == " " || first == "\t" { s = s.dropFirst() }
    return s
  }
}
