import CRIAPI
import CrispCore
import CrispOCI

/// Linux capability names by number (`capability.h`), up to CAP_CHECKPOINT_RESTORE (40).
public enum KnownCapabilities {
  public static let names: [String] = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
  ]

  /// The capability's number, for a name with or without `CAP_`, any case.
  public static func number(_ name: String) -> Int? {
    names.firstIndex(of: canonical(name))
  }

  /// `net_admin` → `CAP_NET_ADMIN`.
  public static func canonical(_ name: String) -> String {
    let upper = name.uppercased()
    return upper.hasPrefix("CAP_") ? upper : "CAP_" + upper
  }

  /// The names of the bits set in a mask such as /proc/self/status `CapPrm`.
  public static func names(inMask mask: UInt64) -> [String] {
    names.indices.filter { mask & (UInt64(1) << UInt64($0)) != 0 }.map { names[$0] }
  }

  /// The mask of a list of names (unknown names are ignored).
  public static func mask(_ list: [String]) -> UInt64 {
    list.reduce(0) { mask, name in number(name).map { mask | (UInt64(1) << UInt64($0)) } ?? mask }
  }
}

extension SpecBuilder {
  /// The capability sets, as CRI-O computes them: the defaults unless "ALL" is added or
  /// dropped; every one for "ALL" in add, then none for "ALL" in drop; then each named
  /// add, then each named drop (so add ALL + drop CHOWN is all but CHOWN, and drop ALL +
  /// add NET_BIND_SERVICE is only that).
  /// Privileged containers get every capability. Capabilities this runtime cannot grant
  /// (`SpecOptions.grantableCapabilities`) are left out with a note.
  ///
  /// The bounding set holds the result. Effective and permitted hold it for uid 0 and
  /// are empty for other users, as execve would leave them (Docker's and containerd's
  /// rule: a non-root process keeps no capabilities unless its file grants some).
  /// Inheritable is empty (CVE-2022-27652), ambient is empty, except for the CRI's
  /// `add_ambient_capabilities`, which enter every set (also for non-root users).
  static func capabilities(
    security: Runtime_V1_LinuxContainerSecurityContext, uid: UInt32, options: SpecOptions, notes: inout [String]
  ) throws(CrispError) -> RuntimeSpec.LinuxCapabilities {
    let known = Array(KnownCapabilities.names.prefix(options.lastCapability + 1))
    let grantable = Set((options.grantableCapabilities ?? known).map(KnownCapabilities.canonical))

    func validated(_ name: String, field: String) throws(CrispError) -> String {
      let canonical = KnownCapabilities.canonical(name)
      guard known.contains(canonical) else {
        throw CrispError(.invalidArgument, "\(field): unknown capability \"\(name)\"")
      }
      return canonical
    }

    let request = security.capabilities
    var set = Set<String>()
    var ambient = Set<String>()
    if security.privileged {
      set = Set(known)
    } else {
      let isAll = { (name: String) in name.uppercased() == "ALL" }
      let addAll = request.addCapabilities.contains(where: isAll)
      let dropAll = request.dropCapabilities.contains(where: isAll)
      if !addAll && !dropAll {
        for name in options.defaultCapabilities {
          set.insert(try validated(name, field: "default capabilities"))
        }
      }
      if addAll { set = Set(known) }
      if dropAll { set = [] }
      for name in request.addCapabilities where !isAll(name) {
        set.insert(try validated(name, field: "linux.security_context.capabilities.add_capabilities"))
      }
      for name in request.addAmbientCapabilities {
        let canonical = try validated(name, field: "linux.security_context.capabilities.add_ambient_capabilities")
        set.insert(canonical)
        ambient.insert(canonical)
      }
      for name in request.dropCapabilities where !isAll(name) {
        let canonical = try validated(name, field: "linux.security_context.capabilities.drop_capabilities")
        set.remove(canonical)
        ambient.remove(canonical)
      }
    }

    let withheld = set.subtracting(grantable)
    if !withheld.isEmpty {
      let explicit = withheld.filter { name in
        !security.privileged
          && (request.addCapabilities + request.addAmbientCapabilities).contains {
            KnownCapabilities.canonical($0) == name
          }
      }
      notes.append(
        "capabilities this runtime does not hold were left out: \(ordered(withheld).joined(separator: ", "))"
          + (explicit.isEmpty ? "" : " (asked for by name: \(ordered(explicit).joined(separator: ", ")))"))
      set.subtract(withheld)
      ambient.subtract(withheld)
    }

    let bounding = ordered(set)
    let ambientList = ordered(ambient)
    return RuntimeSpec.LinuxCapabilities(
      bounding: bounding,
      effective: uid == 0 ? bounding : ambientList,
      inheritable: ambientList,
      permitted: uid == 0 ? bounding : ambientList,
      ambient: ambientList)
  }

  /// Capability names in number order.
  static func ordered(_ set: Set<String>) -> [String] {
    set.sorted { (KnownCapabilities.number($0) ?? Int.max) < (KnownCapabilities.number($1) ?? Int.max) }
  }
}
