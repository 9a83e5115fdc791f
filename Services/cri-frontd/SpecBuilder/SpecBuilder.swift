import CRIAPI
import CrispCore
import CrispOCI
import FoundationEssentials

/// Everything a container's spec is made from.
public struct SpecInputs: Sendable {
  public var containerID: String
  public var config: Runtime_V1_ContainerConfig
  public var sandboxConfig: Runtime_V1_PodSandboxConfig
  /// The image's entrypoint, cmd, env, user, working directory and volumes.
  public var image: ImageRuntimeConfig
  public var pod: PodContext
  /// The image's /etc/passwd and /etc/group (`UserDatabase.empty` when it has none).
  public var users: UserDatabase
  public var options: SpecOptions
  /// The target container's PID namespace (`/proc/<pid>/ns/pid`) when
  /// `namespace_options.pid` is TARGET; frontd looks `target_id` up.
  public var targetPIDNamespacePath: String
  /// Node reads: `.live` in frontd.
  public var host: HostAccess

  public init(
    containerID: String, config: Runtime_V1_ContainerConfig, sandboxConfig: Runtime_V1_PodSandboxConfig,
    image: ImageRuntimeConfig, pod: PodContext, users: UserDatabase = .empty, options: SpecOptions,
    targetPIDNamespacePath: String = "", host: HostAccess = .live
  ) {
    self.containerID = containerID
    self.config = config
    self.sandboxConfig = sandboxConfig
    self.image = image
    self.pod = pod
    self.users = users
    self.options = options
    self.targetPIDNamespacePath = targetPIDNamespacePath
    self.host = host
  }
}

/// What frontd knows of the pod.
public struct PodContext: Sendable, Equatable {
  public var podID: String
  /// Namespace files to join (netd's pinned `/run/crisp/ns/<pod>/{net,ipc,uts}`); "" is
  /// the host's (host network / host IPC pods).
  public var networkNamespacePath: String
  public var ipcNamespacePath: String
  public var utsNamespacePath: String
  /// The infra process's `/proc/<pid>/ns/pid` when the pod shares one PID namespace, else "".
  public var pidNamespacePath: String
  /// The pod's files; "" leaves the image's own file in place.
  public var resolvConfPath: String
  public var hostnamePath: String
  public var hostsPath: String
  /// The directory bound at `/dev/shm` (the pod's shm tmpfs, or the host's `/dev/shm`
  /// for host-IPC pods); "" gives each container a private tmpfs.
  public var shmPath: String
  /// The hostname set in a private UTS namespace, and `HOSTNAME` in the environment.
  public var hostname: String
  /// `LinuxPodSandboxConfig.cgroup_parent`.
  public var cgroupParent: String

  public init(
    podID: String, networkNamespacePath: String = "", ipcNamespacePath: String = "", utsNamespacePath: String = "",
    pidNamespacePath: String = "", resolvConfPath: String = "", hostnamePath: String = "", hostsPath: String = "",
    shmPath: String = "", hostname: String = "", cgroupParent: String = ""
  ) {
    self.podID = podID
    self.networkNamespacePath = networkNamespacePath
    self.ipcNamespacePath = ipcNamespacePath
    self.utsNamespacePath = utsNamespacePath
    self.pidNamespacePath = pidNamespacePath
    self.resolvConfPath = resolvConfPath
    self.hostnamePath = hostnamePath
    self.hostsPath = hostsPath
    self.shmPath = shmPath
    self.hostname = hostname
    self.cgroupParent = cgroupParent
  }
}

public enum CgroupDriver: String, Sendable, Codable, Equatable {
  /// `cgroupsPath` is a cgroup directory: `<parent>/crisp-<id>`.
  case cgroupfs
  /// `cgroupsPath` is runc's `<slice>:<prefix>:<name>`: a `crisp-<id>.scope` in the slice.
  case systemd
}

/// Runtime-wide settings (from crisp.toml and what frontd finds on the node).
public struct SpecOptions: Sendable {
  public var cgroupDriver: CgroupDriver
  /// The parent used when the pod names none: `/crisp` (cgroupfs) or `system.slice`
  /// (systemd) when nil.
  public var defaultCgroupParent: String?
  public var cgroup: CgroupFeatures
  /// Capabilities of an unprivileged container that asks for no change.
  public var defaultCapabilities: [String]
  /// The capabilities this runtime can hand out (its own permitted set: root here lacks
  /// CAP_SYS_RESOURCE); nil means every known one up to `lastCapability`. Others are
  /// left out with a note, also for privileged containers.
  public var grantableCapabilities: [String]?
  /// The highest capability number of the kernel (/proc/sys/kernel/cap_last_cap).
  public var lastCapability: Int
  /// The profile `RuntimeDefault` means.
  public var defaultSeccompProfile: ContainerSeccompProfile
  /// Whether a container that names no seccomp profile at all gets the default one
  /// (CRI-O's `seccomp_use_default_when_empty`) rather than none.
  public var seccompDefaultWhenUnset: Bool
  /// Go's name of the node's architecture (`amd64`), for the profile's `archMap`/`arches`.
  public var architecture: String
  /// The node's kernel, for rules with `minKernel`; nil drops such rules.
  public var kernelVersion: KernelVersion?
  /// The daemon's own oom_score_adj: lower values are raised to it.
  public var minimumOOMScoreAdj: Int
  /// A memory limit below this is refused (CRI-O: 12 MiB; runc needs some memory itself).
  public var minimumMemoryLimit: Int64
  /// CRI-O's `pids_limit`: the pids cgroup limit of every container; nil or ≤ 0 is none.
  public var pidsLimit: Int64?
  public var appArmorAvailable: Bool
  /// The profile `RuntimeDefault` AppArmor means; nil leaves the process unconfined
  /// (crisp loads no profile of its own).
  public var appArmorDefaultProfile: String?
  /// Resource limits of every container's first process (`RLIMIT_NOFILE`, ...); none
  /// inherits runc's.
  public var defaultUlimits: [RuntimeSpec.POSIXRlimit]
  /// The root filesystem path written to `root.path`: relative to the bundle.
  public var rootPath: String
  /// The handler's runtime takes the `rro` mount option (runc ≥ 1.1 on a kernel with
  /// mount_setattr, ≥ 5.12): `Mount.recursive_read_only` can be honoured.
  public var recursiveReadOnlyMounts: Bool

  /// CRI-O's default capabilities.
  public static let crioDefaultCapabilities = [
    "CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "SETGID", "SETUID", "SETPCAP", "NET_BIND_SERVICE", "KILL",
  ]

  public init(
    cgroupDriver: CgroupDriver = .cgroupfs, defaultCgroupParent: String? = nil,
    cgroup: CgroupFeatures = CgroupFeatures(unifiedHierarchy: false, memorySwap: true, hugetlb: true),
    defaultCapabilities: [String] = SpecOptions.crioDefaultCapabilities, grantableCapabilities: [String]? = nil,
    lastCapability: Int = 40, defaultSeccompProfile: ContainerSeccompProfile, seccompDefaultWhenUnset: Bool = true,
    architecture: String = ContainerSeccompProfile.nativeArchitecture, kernelVersion: KernelVersion? = nil,
    minimumOOMScoreAdj: Int = -1000, minimumMemoryLimit: Int64 = 12 * 1024 * 1024, pidsLimit: Int64? = nil,
    appArmorAvailable: Bool = false, appArmorDefaultProfile: String? = nil,
    defaultUlimits: [RuntimeSpec.POSIXRlimit] = [], rootPath: String = "rootfs", recursiveReadOnlyMounts: Bool = false
  ) {
    self.cgroupDriver = cgroupDriver
    self.defaultCgroupParent = defaultCgroupParent
    self.cgroup = cgroup
    self.defaultCapabilities = defaultCapabilities
    self.grantableCapabilities = grantableCapabilities
    self.lastCapability = lastCapability
    self.defaultSeccompProfile = defaultSeccompProfile
    self.seccompDefaultWhenUnset = seccompDefaultWhenUnset
    self.architecture = architecture
    self.kernelVersion = kernelVersion
    self.minimumOOMScoreAdj = minimumOOMScoreAdj
    self.minimumMemoryLimit = minimumMemoryLimit
    self.pidsLimit = pidsLimit
    self.appArmorAvailable = appArmorAvailable
    self.appArmorDefaultProfile = appArmorDefaultProfile
    self.defaultUlimits = defaultUlimits
    self.rootPath = rootPath
    self.recursiveReadOnlyMounts = recursiveReadOnlyMounts
  }
}

/// A built spec and what the builder changed or left out of the request (an
/// oom_score_adj raised, capabilities withheld, resources the node cannot apply):
/// lines for frontd's debug log.
public struct BuiltSpec: Sendable, Equatable {
  public var spec: RuntimeSpec
  public var notes: [String]
}

/// A seccomp or AppArmor `SecurityProfile` (or its deprecated string form), read.
enum ProfileChoice {
  case runtimeDefault
  case unconfined
  case localhost(String)
}

/// CRI `CreateContainer` → OCI runtime `config.json`: what CRI-O's
/// `server/container_create_linux.go` does, as one pure function of its inputs. frontd
/// gathers the inputs (the image's config and user database, the pod's namespaces and
/// files, runtime settings), calls `build`, logs the notes at debug and writes the
/// result into the bundle. Node reads it needs (a Localhost seccomp profile, device
/// nodes) go through `SpecInputs.host`.
///
/// Not done (yet): user namespaces, ID-mapped and image-volume mounts, recursive
/// read-only mounts, SELinux labels, CDI devices, hooks, a cgroup namespace on v1/hybrid
/// nodes.
public enum SpecBuilder {
  /// The container's OCI spec. Every unusable input is an `invalidArgument` error whose
  /// message names the CRI field.
  public static func build(_ inputs: SpecInputs) throws(CrispError) -> RuntimeSpec {
    try buildWithNotes(inputs).spec
  }

  /// `build`, with the notes.
  public static func buildWithNotes(_ inputs: SpecInputs) throws(CrispError) -> BuiltSpec {
    var notes: [String] = []
    let config = inputs.config
    let security = config.linux.securityContext
    let privileged = security.privileged

    try validateContainerID(inputs.containerID)
    if privileged && !inputs.sandboxConfig.linux.securityContext.privileged {
      throw CrispError(
        .invalidArgument,
        "linux.security_context.privileged: the pod sandbox was not created privileged")
    }

    // Process.
    var process = RuntimeSpec.Process()
    process.terminal = config.tty
    process.args = try arguments(config: config, image: inputs.image)
    process.env = try environment(config: config, image: inputs.image, hostname: hostname(inputs) ?? "")
    process.cwd = workingDirectory(config: config, image: inputs.image)
    process.user = try resolveUser(security: security, image: inputs.image, users: inputs.users)
    let capabilities = try capabilities(
      security: security, uid: process.user.uid, options: inputs.options, notes: &notes)
    process.capabilities = capabilities
    process.noNewPrivileges = security.noNewPrivs
    process.oomScoreAdj = try oomScoreAdj(
      config.linux.resources.oomScoreAdj, minimum: inputs.options.minimumOOMScoreAdj, notes: &notes)
    process.apparmorProfile = try appArmorProfile(security: security, options: inputs.options)
    if !inputs.options.defaultUlimits.isEmpty { process.rlimits = inputs.options.defaultUlimits }

    // Filesystem.
    let (mounts, propagation) = try self.mounts(
      config: config, pod: inputs.pod, image: inputs.image, privileged: privileged,
      readonlyRootfs: security.readonlyRootfs, recursiveReadOnly: inputs.options.recursiveReadOnlyMounts,
      notes: &notes)

    // Linux.
    var linux = RuntimeSpec.Linux()
    let namespaces = try self.namespaces(inputs: inputs)
    linux.namespaces = namespaces
    let sysctls = try self.sysctls(inputs: inputs)
    if !sysctls.isEmpty { linux.sysctl = sysctls }
    var resources = try self.resources(config.linux.resources, options: inputs.options, notes: &notes)
    let devices = try self.devices(config: config, privileged: privileged, host: inputs.host)
    resources.devices = devices.rules
    if !devices.nodes.isEmpty { linux.devices = devices.nodes }
    linux.resources = resources
    linux.cgroupsPath = try cgroupsPath(inputs: inputs)
    linux.rootfsPropagation = propagation
    if !privileged {
      linux.maskedPaths = security.maskedPaths.isEmpty ? defaultMaskedPaths : security.maskedPaths
      linux.readonlyPaths = security.readonlyPaths.isEmpty ? defaultReadonlyPaths : security.readonlyPaths
    }
    linux.seccomp = try seccomp(security: security, capabilities: capabilities.bounding ?? [], inputs: inputs)

    let ownUTS = namespaces.contains { $0.type == .uts }
    let spec = RuntimeSpec(
      process: process,
      root: .init(path: inputs.options.rootPath, readonly: security.readonlyRootfs ? true : nil),
      hostname: ownUTS ? hostname(inputs) : nil,
      mounts: mounts,
      annotations: annotations(inputs),
      linux: linux)
    return BuiltSpec(spec: spec, notes: notes)
  }

  /// The JSON runc reads, keys sorted.
  public static func encode(_ spec: RuntimeSpec, pretty: Bool = false) throws(CrispError) -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    if pretty { encoder.outputFormatting.insert(.prettyPrinted) }
    do {
      return Array(try encoder.encode(spec))
    } catch {
      throw CrispError(.internal, "cannot encode the runtime spec: \(error)")
    }
  }

  static func validateContainerID(_ id: String) throws(CrispError) {
    let allowed = { (c: Character) in c.isASCII && (c.isLetter || c.isNumber || c == "_" || c == "." || c == "-") }
    guard let first = id.first, first.isASCII, first.isLetter || first.isNumber, id.allSatisfy(allowed) else {
      throw CrispError(.invalidArgument, "container ID \"\(id)\" is not a valid ID")
    }
  }

  /// The pod's hostname (frontd's, else the sandbox config's).
  static func hostname(_ inputs: SpecInputs) -> String? {
    let name = inputs.pod.hostname.isEmpty ? inputs.sandboxConfig.hostname : inputs.pod.hostname
    return name.isEmpty ? nil : name
  }

  /// Annotations the OCI runtime acts on, which a CRI client must not set: runc applies
  /// `org.systemd.property.*` to the container's systemd unit (with the systemd cgroup
  /// driver: Delegate, DeviceAllow...), crun reads `run.oci.*` as its own options.
  /// CRI-O drops them too unless an operator allows them.
  static let runtimeAnnotationPrefixes = ["org.systemd.property.", "run.oci."]

  /// The CRI annotations, less the runtime's own (`runtimeAnnotationPrefixes`), then
  /// containerd's `io.kubernetes.cri.*` keys (which hooks and tools read) over them.
  static func annotations(_ inputs: SpecInputs) -> [String: String] {
    var result = inputs.config.annotations.filter { key, _ in
      !runtimeAnnotationPrefixes.contains { key.hasPrefix($0) }
    }
    let metadata = inputs.sandboxConfig.metadata
    result["io.kubernetes.cri.container-type"] = "container"
    result["io.kubernetes.cri.container-name"] = inputs.config.metadata.name
    result["io.kubernetes.cri.sandbox-id"] = inputs.pod.podID
    result["io.kubernetes.cri.sandbox-name"] = metadata.name
    result["io.kubernetes.cri.sandbox-namespace"] = metadata.namespace
    result["io.kubernetes.cri.sandbox-uid"] = metadata.uid
    result["io.kubernetes.cri.image-name"] = inputs.config.image.image
    return result
  }

  /// AppArmor: nothing when the node has none (a `Localhost` profile is then refused) or
  /// the container is privileged; `unconfined`; the default profile, if one is
  /// configured, for `RuntimeDefault`; a `Localhost` profile by name.
  static func appArmorProfile(
    security: Runtime_V1_LinuxContainerSecurityContext, options: SpecOptions
  ) throws(CrispError) -> String? {
    let choice: ProfileChoice
    let field: String
    if security.hasApparmor {
      field = "linux.security_context.apparmor"
      switch security.apparmor.profileType {
      case .runtimeDefault: choice = .runtimeDefault
      case .unconfined: choice = .unconfined
      case .localhost: choice = .localhost(security.apparmor.localhostRef)
      case .UNRECOGNIZED(let raw): throw CrispError(.invalidArgument, "\(field).profile_type: unknown value \(raw)")
      }
    } else {
      field = "linux.security_context.apparmor_profile"
      switch security.apparmorProfile {
      case "", "runtime/default": choice = .runtimeDefault
      case "unconfined": choice = .unconfined
      case let name where name.hasPrefix("localhost/"): choice = .localhost(String(name.dropFirst("localhost/".count)))
      case let name: throw CrispError(.invalidArgument, "\(field): unknown profile \"\(name)\"")
      }
    }
    if case .localhost(let name) = choice {
      let profile = name.hasPrefix("localhost/") ? String(name.dropFirst("localhost/".count)) : name
      guard !profile.isEmpty else { throw CrispError(.invalidArgument, "\(field): empty localhost profile name") }
      guard options.appArmorAvailable else {
        throw CrispError(
          .invalidArgument, "\(field): AppArmor profile \"\(profile)\" asked for, but the node has no AppArmor")
      }
      return security.privileged ? nil : profile
    }
    guard options.appArmorAvailable, !security.privileged else { return nil }
    switch choice {
    case .unconfined: return "unconfined"
    default: return options.appArmorDefaultProfile
    }
  }
}
