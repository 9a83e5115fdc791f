/// The cgroup directories of one container (or pod) that the stats readers use: one
/// per v1 controller, or the same unified directory for all on v2. A directory that
/// does not exist (a cgroup already removed) is nil.
public struct ContainerCgroup: Sendable, Equatable {
  public var version: CgroupMounts.Version
  public var cpu: String?
  public var memory: String?
  public var pids: String?

  public init(version: CgroupMounts.Version, cpu: String?, memory: String?, pids: String?) {
    self.version = version
    self.cpu = cpu
    self.memory = memory
    self.pids = pids
  }

  /// Whether any of its directories exists.
  public var isEmpty: Bool { cpu == nil && memory == nil && pids == nil }

  /// The cgroup runc made for `cgroupsPath` (the spec's `linux.cgroupsPath`), as runc
  /// resolves it: `/a/b` below each hierarchy's mount; `slice:prefix:name` (systemd) as
  /// `<expanded slice>/<prefix>-<name>.scope`; a relative path below the caller's own
  /// cgroup in each hierarchy (runc runs as a descendant of this process). Where that
  /// directory is missing, `process` (the container init's `/proc/<pid>/cgroup`), if
  /// given, names it instead.
  public static func locate(
    cgroupsPath: String, mounts: CgroupMounts, own: ProcessCgroups?, process: ProcessCgroups? = nil
  ) -> ContainerCgroup {
    func directory(_ controller: String) -> String? {
      let mount: String
      switch mounts.version {
      case .v2: mount = mounts.unified
      case .v1:
        guard let point = mounts.controllers[controller] else { return nil }
        mount = point
      }
      if let relative = relativePath(
        cgroupsPath: cgroupsPath, own: own?.path(for: controller, version: mounts.version))
      {
        let path = mount + (relative == "/" ? "" : relative)
        if CgroupFiles.isDirectory(path) { return path }
      }
      if let relative = process?.path(for: controller, version: mounts.version) {
        let path = mount + (relative == "/" ? "" : normalize(relative))
        if CgroupFiles.isDirectory(path) { return path }
      }
      return nil
    }
    return ContainerCgroup(
      version: mounts.version, cpu: directory("cpuacct"), memory: directory("memory"), pids: directory("pids"))
  }

  /// The path below a hierarchy's mount that `cgroupsPath` names; nil when it names
  /// none (empty, a bad slice, a relative path with no own cgroup to anchor it).
  public static func relativePath(cgroupsPath: String, own: String?) -> String? {
    guard !cgroupsPath.isEmpty else { return nil }
    if isSystemdForm(cgroupsPath) {
      let parts = cgroupsPath.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
      guard let slice = expandSlice(parts[0].isEmpty ? "system.slice" : parts[0]) else { return nil }
      let unit = parts[2].hasSuffix(".slice") ? parts[2] : parts[1] + "-" + parts[2] + ".scope"
      return (slice.isEmpty ? "" : "/" + slice) + "/" + unit
    }
    if cgroupsPath.hasPrefix("/") { return normalize(cgroupsPath) }
    guard let own else { return nil }
    return normalize(own + "/" + cgroupsPath)
  }

  /// A systemd slice name (`kubepods-burstable-pod1.slice`) as its cgroup path, or a
  /// cgroupfs path as it is: what `LinuxPodSandboxConfig.cgroup_parent` holds.
  public static func parentPath(_ parent: String) -> String? {
    guard !parent.isEmpty else { return nil }
    if !parent.contains("/") && parent.hasSuffix(".slice") { return expandSlice(parent).map { "/" + $0 } }
    return parent.hasPrefix("/") ? normalize(parent) : nil
  }

  /// `slice:prefix:name` with no slash: the form runc's systemd driver takes.
  public static func isSystemdForm(_ path: String) -> Bool {
    !path.contains("/") && path.split(separator: ":", omittingEmptySubsequences: false).count == 3
  }

  /// systemd's slice naming: `a-b-c.slice` lives at `a.slice/a-b.slice/a-b-c.slice`;
  /// `-.slice` is the root. nil for a name systemd would refuse.
  public static func expandSlice(_ slice: String) -> String? {
    guard slice.hasSuffix(".slice"), !slice.contains("/") else { return nil }
    if slice == "-.slice" { return "" }
    let name = slice.dropLast(".slice".count)
    guard !name.isEmpty, !name.hasPrefix("-"), !name.hasSuffix("-"), !name.contains("--") else { return nil }
    var path = ""
    var prefix = ""
    for component in name.split(separator: "-") {
      prefix += (prefix.isEmpty ? "" : "-") + component
      path += (path.isEmpty ? "" : "/") + prefix + ".slice"
    }
    return path
  }

  /// `.` and `..` resolved, never climbing above `/`.
  static func normalize(_ path: String) -> String {
    var parts: [Substring] = []
    for part in path.split(separator: "/") {
      if part == "." { continue }
      if part == ".." {
        if !parts.isEmpty { parts.removeLast() }
        continue
      }
      parts.append(part)
    }
    return "/" + parts.joined(separator: "/")
  }
}
