import CRIAPI
import CrispCore
import CrispOCI
import FoundationEssentials

/// A seccomp profile in the Docker / containers `seccomp.json` format: rules that apply
/// only with or without some capabilities, on some architectures or from some kernel
/// version on. `resolved(...)` turns it into the OCI `linux.seccomp` of one container,
/// as containers/common's `setupSeccomp` does. A profile already in the OCI form
/// (`architectures`, rules without `includes`/`excludes`) reads the same way.
public struct ContainerSeccompProfile: Codable, Sendable, Equatable {
  public var defaultAction: String
  public var defaultErrnoRet: UInt32?
  public var architectures: [String]?
  public var archMap: [ArchMap]?
  public var flags: [String]?
  public var syscalls: [Rule]?

  public struct ArchMap: Codable, Sendable, Equatable {
    public var architecture: String
    public var subArchitectures: [String]?

    public init(architecture: String, subArchitectures: [String]? = nil) {
      self.architecture = architecture
      self.subArchitectures = subArchitectures
    }
  }

  public struct Rule: Codable, Sendable, Equatable {
    public var name: String?
    public var names: [String]?
    public var action: String
    public var errnoRet: UInt32?
    public var args: [Arg]?
    public var includes: Filter?
    public var excludes: Filter?

    public init(
      names: [String], action: String, errnoRet: UInt32? = nil, args: [Arg]? = nil, includes: Filter? = nil,
      excludes: Filter? = nil
    ) {
      self.names = names
      self.action = action
      self.errnoRet = errnoRet
      self.args = args
      self.includes = includes
      self.excludes = excludes
    }
  }

  /// When a rule applies: `caps` are `CAP_` names, `arches` Go architecture names
  /// (`amd64`, `x32`, `x86`, `arm64`, ...), `minKernel` a `major.minor` version.
  public struct Filter: Codable, Sendable, Equatable {
    public var caps: [String]?
    public var arches: [String]?
    public var minKernel: String?

    public init(caps: [String]? = nil, arches: [String]? = nil, minKernel: String? = nil) {
      self.caps = caps
      self.arches = arches
      self.minKernel = minKernel
    }
  }

  /// Same fields as the runtime spec's: the profile's args go into config.json as they are.
  public typealias Arg = RuntimeSpec.LinuxSeccompArg

  public init(
    defaultAction: String, defaultErrnoRet: UInt32? = nil, architectures: [String]? = nil,
    archMap: [ArchMap]? = nil, flags: [String]? = nil, syscalls: [Rule]? = nil
  ) {
    self.defaultAction = defaultAction
    self.defaultErrnoRet = defaultErrnoRet
    self.architectures = architectures
    self.archMap = archMap
    self.flags = flags
    self.syscalls = syscalls
  }

  static let actions: Set<String> = [
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY",
  ]
  static let operators: Set<String> = [
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ",
  ]

  /// Parses and checks a profile; `source` names it in errors (a path).
  public static func parse(_ json: String, source: String) throws(CrispError) -> ContainerSeccompProfile {
    let profile: ContainerSeccompProfile
    do {
      profile = try JSONDecoder().decode(ContainerSeccompProfile.self, from: Data(json.utf8))
    } catch {
      throw CrispError(.invalidArgument, "seccomp profile \(source): not a seccomp profile: \(error)")
    }
    try profile.validate(source: source)
    return profile
  }

  /// Reads and parses a profile file.
  public static func load(path: String) throws(CrispError) -> ContainerSeccompProfile {
    try parse(try HostAccess.live.readFile(path), source: path)
  }

  func validate(source: String) throws(CrispError) {
    func fail(_ message: String) -> CrispError {
      CrispError(.invalidArgument, "seccomp profile \(source): \(message)")
    }
    guard Self.actions.contains(defaultAction) else { throw fail("unknown defaultAction \"\(defaultAction)\"") }
    if !(architectures ?? []).isEmpty && !(archMap ?? []).isEmpty {
      throw fail("both 'architectures' and 'archMap' are given; use one")
    }
    for (index, rule) in (syscalls ?? []).enumerated() {
      if rule.name != nil && !(rule.names ?? []).isEmpty {
        throw fail("syscalls[\(index)]: both 'name' and 'names' are given; use one")
      }
      guard Self.actions.contains(rule.action) else {
        throw fail("syscalls[\(index)]: unknown action \"\(rule.action)\"")
      }
      for arg in rule.args ?? [] where !Self.operators.contains(arg.op) {
        throw fail("syscalls[\(index)]: unknown operator \"\(arg.op)\"")
      }
      for filter in [rule.includes, rule.excludes] {
        if let minKernel = filter?.minKernel, !minKernel.isEmpty, KernelVersion(minKernel) == nil {
          throw fail("syscalls[\(index)]: bad minKernel \"\(minKernel)\"")
        }
      }
    }
  }

  /// The OCI form for a container with these bounding capabilities, on `architecture`
  /// (a Go name: `amd64`) and `kernel` (rules with a `minKernel` are dropped when the
  /// kernel is unknown). Nil when the profile has no default action and no rule (which
  /// containers/common reads as "seccomp disabled").
  public func resolved(capabilities: [String], architecture: String, kernel: KernelVersion?) -> RuntimeSpec
    .LinuxSeccomp?
  {
    if defaultAction.isEmpty && (syscalls ?? []).isEmpty { return nil }
    var architectures = self.architectures ?? []
    if let native = Self.seccompArchitecture(goArch: architecture),
      let entry = (archMap ?? []).first(where: { $0.architecture == native })
    {
      architectures = [entry.architecture] + (entry.subArchitectures ?? [])
    }
    let caps = Set(capabilities.map(KnownCapabilities.canonical))

    func applies(_ rule: Rule) -> Bool {
      if let excludes = rule.excludes {
        if (excludes.arches ?? []).contains(architecture) { return false }
        if (excludes.caps ?? []).contains(where: { caps.contains(KnownCapabilities.canonical($0)) }) { return false }
        if let min = excludes.minKernel, !min.isEmpty, let kernel, let version = KernelVersion(min), kernel >= version {
          return false
        }
      }
      if let includes = rule.includes {
        if let arches = includes.arches, !arches.isEmpty, !arches.contains(architecture) { return false }
        if (includes.caps ?? []).contains(where: { !caps.contains(KnownCapabilities.canonical($0)) }) { return false }
        if let min = includes.minKernel, !min.isEmpty {
          guard let kernel, let version = KernelVersion(min), kernel >= version else { return false }
        }
      }
      return true
    }

    let rules: [RuntimeSpec.LinuxSyscall] = (syscalls ?? []).filter(applies).compactMap { rule in
      let names = rule.names ?? rule.name.map { [$0] } ?? []
      guard !names.isEmpty else { return nil }
      let args = rule.args ?? []
      return RuntimeSpec.LinuxSyscall(
        names: names, action: rule.action, errnoRet: rule.errnoRet, args: args.isEmpty ? nil : args)
    }
    return RuntimeSpec.LinuxSeccomp(
      defaultAction: defaultAction, defaultErrnoRet: defaultErrnoRet,
      architectures: architectures.isEmpty ? nil : architectures, flags: flags, syscalls: rules)
  }

  /// libseccomp's name for a Go architecture's native ABI.
  static func seccompArchitecture(goArch: String) -> String? {
    [
      "amd64": "SCMP_ARCH_X86_64", "386": "SCMP_ARCH_X86", "arm64": "SCMP_ARCH_AARCH64", "arm": "SCMP_ARCH_ARM",
      "mips64": "SCMP_ARCH_MIPS64", "mips64n32": "SCMP_ARCH_MIPS64N32", "mipsel64": "SCMP_ARCH_MIPSEL64",
      "mipsel64n32": "SCMP_ARCH_MIPSEL64N32", "ppc64le": "SCMP_ARCH_PPC64LE", "s390x": "SCMP_ARCH_S390X",
      "riscv64": "SCMP_ARCH_RISCV64",
    ][goArch]
  }

  /// This machine's architecture as Go names it.
  public static var nativeArchitecture: String {
    #if arch(x86_64)
      "amd64"
    #elseif arch(arm64)
      "arm64"
    #elseif arch(s390x)
      "s390x"
    #elseif arch(powerpc64le)
      "ppc64le"
    #elseif arch(riscv64)
      "riscv64"
    #else
      "unknown"
    #endif
  }
}

/// A kernel `major.minor[.patch]` version, compared numerically.
public struct KernelVersion: Sendable, Equatable, Comparable, CustomStringConvertible {
  public var major: Int
  public var minor: Int
  public var patch: Int

  public init(major: Int, minor: Int, patch: Int = 0) {
    self.major = major
    self.minor = minor
    self.patch = patch
  }

  /// Reads `6.1`, `5.10.0`, or a uname release such as `6.18.44-fc-v657`.
  public init?(_ text: String) {
    let numeric = text.prefix { $0.isNumber || $0 == "." }
    let parts = numeric.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count >= 2, let major = Int(parts[0]), let minor = Int(parts[1]) else { return nil }
    self.init(major: major, minor: minor, patch: parts.count > 2 ? Int(parts[2]) ?? 0 : 0)
  }

  public static func < (a: KernelVersion, b: KernelVersion) -> Bool {
    (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
  }

  public var description: String { "\(major).\(minor).\(patch)" }
}

extension SpecBuilder {
  /// The container's seccomp filter: none for privileged containers and `Unconfined`;
  /// the runtime's default profile for `RuntimeDefault`; the node file `localhost_ref`
  /// (an absolute path, read through `SpecInputs.host`) for `Localhost`. Without a
  /// `seccomp` field the deprecated `seccomp_profile_path` is read (`runtime/default`,
  /// `docker/default`, `unconfined`, `localhost/<path>`); when both are unset the
  /// default profile applies if `SpecOptions.seccompDefaultWhenUnset` (CRI-O's
  /// `seccomp_use_default_when_empty`), else none.
  static func seccomp(
    security: Runtime_V1_LinuxContainerSecurityContext, capabilities: [String], inputs: SpecInputs
  ) throws(CrispError) -> RuntimeSpec.LinuxSeccomp? {
    if security.privileged { return nil }
    var choice: ProfileChoice
    let field: String
    if security.hasSeccomp {
      field = "linux.security_context.seccomp"
      switch security.seccomp.profileType {
      case .runtimeDefault: choice = .runtimeDefault
      case .unconfined: choice = .unconfined
      case .localhost: choice = .localhost(security.seccomp.localhostRef)
      case .UNRECOGNIZED(let raw):
        throw CrispError(.invalidArgument, "\(field).profile_type: unknown value \(raw)")
      }
    } else {
      field = "linux.security_context.seccomp_profile_path"
      let path = security.seccompProfilePath
      switch path {
      case "": choice = inputs.options.seccompDefaultWhenUnset ? .runtimeDefault : .unconfined
      case "runtime/default", "docker/default": choice = .runtimeDefault
      case "unconfined": choice = .unconfined
      default:
        guard path.hasPrefix("localhost/") else {
          throw CrispError(.invalidArgument, "\(field): unknown profile \"\(path)\"")
        }
        choice = .localhost(String(path.dropFirst("localhost/".count)))
      }
    }

    let profile: ContainerSeccompProfile
    switch choice {
    case .unconfined: return nil
    case .runtimeDefault: profile = inputs.options.defaultSeccompProfile
    case .localhost(let path):
      guard path.hasPrefix("/") else {
        throw CrispError(.invalidArgument, "\(field): localhost profile \"\(path)\" is not an absolute path")
      }
      let text: String
      do {
        text = try inputs.host.readFile(path)
      } catch {
        throw CrispError(.invalidArgument, "\(field): cannot read seccomp profile: \(error.message)")
      }
      profile = try ContainerSeccompProfile.parse(text, source: path)
    }
    return profile.resolved(
      capabilities: capabilities, architecture: inputs.options.architecture, kernel: inputs.options.kernelVersion)
  }
}
