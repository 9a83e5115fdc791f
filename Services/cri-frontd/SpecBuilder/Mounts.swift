import CRIAPI
import CrispCore
import CrispOCI

extension SpecBuilder {
  /// The masked paths of an unprivileged container whose config names none.
  public static let defaultMaskedPaths = [
    "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
    "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
  ]
  /// The read-only paths of an unprivileged container whose config names none.
  public static let defaultReadonlyPaths = [
    "/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
  ]

  /// The mounts of the container, parents before children:
  /// 1. the OCI defaults runc expects (`/proc`, a `/dev` tmpfs, `/dev/pts`, `/dev/mqueue`,
  ///    `/sys` and `/sys/fs/cgroup` read-only unless privileged), `/dev/shm` bound from
  ///    the pod's shm directory (a private tmpfs when the pod has none);
  /// 2. the pod's `/etc/resolv.conf`, `/etc/hostname`, `/etc/hosts` (read-only with a
  ///    read-only root filesystem);
  /// 3. the CRI mounts, bound recursively with their propagation.
  /// A default whose destination a CRI mount names is left out. The termination-message
  /// file comes from kubelet as an ordinary CRI mount. Image volumes (`VOLUME` in the
  /// Dockerfile) get no mount: they stay directories of the image in the container's
  /// writable layer (noted); kubelet mounts pod volumes where it wants them.
  ///
  /// Returns the mounts and the root filesystem propagation the CRI mounts need
  /// (`rslave` for HOST_TO_CONTAINER, `rshared` for BIDIRECTIONAL, else nil).
  static func mounts(
    config: Runtime_V1_ContainerConfig, pod: PodContext, image: ImageRuntimeConfig, privileged: Bool,
    readonlyRootfs: Bool, recursiveReadOnly: Bool = false, notes: inout [String]
  ) throws(CrispError) -> (mounts: [RuntimeSpec.Mount], rootfsPropagation: String?) {
    var criMounts: [RuntimeSpec.Mount] = []
    var destinations = Set<String>()
    var propagation: String?
    for (index, mount) in config.mounts.enumerated() {
      let field = "mounts[\(index)]"
      guard mount.containerPath.hasPrefix("/") else {
        throw CrispError(
          .invalidArgument, "\(field).container_path \"\(mount.containerPath)\" is not an absolute path")
      }
      let destination = cleanPath(mount.containerPath)
      guard destinations.insert(destination).inserted else {
        throw CrispError(.invalidArgument, "\(field): a second mount at \(destination)")
      }
      if mount.hasImage && !mount.image.image.isEmpty {
        throw CrispError(.invalidArgument, "\(field): image volume mounts are not supported")
      }
      guard !mount.hostPath.isEmpty else {
        throw CrispError(.invalidArgument, "\(field).host_path is empty")
      }
      guard mount.hostPath.hasPrefix("/") else {
        throw CrispError(.invalidArgument, "\(field).host_path \"\(mount.hostPath)\" is not an absolute path")
      }
      if !mount.uidMappings.isEmpty || !mount.gidMappings.isEmpty {
        throw CrispError(.invalidArgument, "\(field): ID-mapped mounts are not supported")
      }
      var options = [mount.readonly ? "ro" : "rw", "rbind"]
      if mount.recursiveReadOnly {
        // As kubelet validates it: the whole tree read-only needs a read-only, private mount.
        guard mount.readonly else {
          throw CrispError(.invalidArgument, "\(field).recursive_read_only needs readonly")
        }
        guard mount.propagation == .propagationPrivate else {
          throw CrispError(
            .invalidArgument, "\(field).recursive_read_only needs propagation PROPAGATION_PRIVATE")
        }
        guard recursiveReadOnly else {
          throw CrispError(
            .failedPrecondition,
            "\(field).recursive_read_only: this runtime handler cannot make a mount read-only recursively "
              + "(its runtime lacks the rro mount option, or the kernel mount_setattr)")
        }
        // runc's rro: mount_setattr(MOUNT_ATTR_RDONLY, AT_RECURSIVE) over the bind's tree.
        options.append("rro")
      }
      switch mount.propagation {
      case .propagationPrivate:
        options.append("rprivate")
      case .propagationHostToContainer:
        options.append("rslave")
        if propagation == nil { propagation = "rslave" }
      case .propagationBidirectional:
        options.append("rshared")
        propagation = "rshared"
      case .UNRECOGNIZED(let raw):
        throw CrispError(.invalidArgument, "\(field).propagation: unknown value \(raw)")
      }
      criMounts.append(.init(destination: destination, type: "bind", source: mount.hostPath, options: options))
    }

    var defaults: [RuntimeSpec.Mount] = [
      .init(destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"]),
      .init(
        destination: "/dev", type: "tmpfs", source: "tmpfs",
        options: ["nosuid", "strictatime", "mode=755", "size=65536k"]),
      .init(
        destination: "/dev/pts", type: "devpts", source: "devpts",
        options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
      .init(destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"]),
      .init(
        destination: "/sys", type: "sysfs", source: "sysfs",
        options: ["nosuid", "noexec", "nodev", privileged ? "rw" : "ro"]),
      .init(
        destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup",
        options: ["nosuid", "noexec", "nodev", "relatime", privileged ? "rw" : "ro"]),
    ]
    if pod.shmPath.isEmpty {
      defaults.append(
        .init(
          destination: "/dev/shm", type: "tmpfs", source: "shm",
          options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]))
    } else {
      defaults.append(
        .init(destination: "/dev/shm", type: "bind", source: pod.shmPath, options: ["rw", "rbind", "rprivate"]))
    }
    let fileOptions = [readonlyRootfs ? "ro" : "rw", "bind", "nodev", "nosuid", "noexec"]
    for (destination, source) in [
      ("/etc/resolv.conf", pod.resolvConfPath), ("/etc/hostname", pod.hostnamePath), ("/etc/hosts", pod.hostsPath),
    ] where !source.isEmpty {
      defaults.append(.init(destination: destination, type: "bind", source: source, options: fileOptions))
    }

    let volumes = image.volumes.filter { !destinations.contains(cleanPath($0)) }
    if !volumes.isEmpty {
      notes.append("image volumes left as directories of the image: \(volumes.joined(separator: ", "))")
    }

    let all = defaults.filter { !destinations.contains($0.destination) } + criMounts
    // Stable: parents (fewer components) first, the order above among equals.
    let sorted = all.enumerated().sorted { a, b in
      let (da, db) = (depth(a.element.destination), depth(b.element.destination))
      return da != db ? da < db : a.offset < b.offset
    }.map(\.element)
    return (sorted, propagation)
  }

  /// `/a//b/./c/` → `/a/b/c`; `..` is resolved lexically, never above `/`.
  static func cleanPath(_ path: String) -> String {
    var parts: [Substring] = []
    for part in path.split(separator: "/") {
      switch part {
      case ".": continue
      case "..": _ = parts.popLast()
      default: parts.append(part)
      }
    }
    return "/" + parts.joined(separator: "/")
  }

  static func depth(_ path: String) -> Int { path.split(separator: "/").count }

  /// Device nodes and device-cgroup rules. Unprivileged: deny all, then allow each CRI
  /// device with its permissions (`rwm` when empty); runc adds its standard devices
  /// (null, zero, full, tty, random, urandom, ptmx) itself. Privileged: allow all and
  /// create every host device (`HostAccess.allDevices`) not already named. CDI devices
  /// are refused (no CDI registry here).
  static func devices(config: Runtime_V1_ContainerConfig, privileged: Bool, host: HostAccess) throws(CrispError) -> (
    nodes: [RuntimeSpec.LinuxDevice], rules: [RuntimeSpec.LinuxDeviceCgroup]
  ) {
    if let first = config.cdiDevices.first {
      throw CrispError(.invalidArgument, "CDI_devices: CDI devices are not supported (\(first.name))")
    }
    var nodes: [RuntimeSpec.LinuxDevice] = []
    var rules: [RuntimeSpec.LinuxDeviceCgroup] = [.init(allow: false, access: "rwm")]
    for (index, device) in config.devices.enumerated() {
      let field = "devices[\(index)]"
      let permissions = device.permissions.isEmpty ? "rwm" : device.permissions
      guard permissions.allSatisfy({ "rwm".contains($0) }), Set(permissions).count == permissions.count else {
        throw CrispError(.invalidArgument, "\(field).permissions \"\(device.permissions)\": only r, w and m")
      }
      guard device.hostPath.hasPrefix("/") else {
        throw CrispError(.invalidArgument, "\(field).host_path \"\(device.hostPath)\" is not an absolute path")
      }
      let containerPath = device.containerPath.isEmpty ? device.hostPath : device.containerPath
      guard containerPath.hasPrefix("/") else {
        throw CrispError(.invalidArgument, "\(field).container_path \"\(containerPath)\" is not an absolute path")
      }
      let found: [RuntimeSpec.LinuxDevice]
      do {
        found = try host.devices(device.hostPath)
      } catch {
        throw CrispError(.invalidArgument, "\(field).host_path: \(error.message)")
      }
      let hostRoot = cleanPath(device.hostPath)
      for var node in found {
        // A directory's nodes keep their path below it.
        let relative = node.path == hostRoot ? "" : String(cleanPath(node.path).dropFirst(hostRoot.count))
        node.path = cleanPath(containerPath + relative)
        nodes.removeAll { $0.path == node.path }
        nodes.append(node)
        rules.append(.init(allow: true, type: node.type, major: node.major, minor: node.minor, access: permissions))
      }
    }
    if privileged {
      let named = Set(nodes.map(\.path))
      nodes += host.allDevices().filter { !named.contains($0.path) }
      rules = [.init(allow: true, access: "rwm")]
    }
    return (nodes, rules)
  }
}
