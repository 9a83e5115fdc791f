/// The OCI runtime-spec 1.0.2 `config.json` of a Linux container: what runc reads from a
/// bundle. Property names are the spec's JSON keys; optional fields left nil are not
/// written (synthesized `Codable` uses `encodeIfPresent`). Only the parts crisp writes
/// or may read back are modelled (no Solaris/Windows/VM sections, no Intel RDT, no
/// block-I/O or network-class resources). Type names follow the spec's Go types
/// (`specs-go`) so that a reader of either finds the other.
public struct RuntimeSpec: Codable, Sendable, Equatable {
  public var ociVersion: String
  public var process: Process?
  public var root: Root?
  public var hostname: String?
  public var mounts: [Mount]?
  public var hooks: Hooks?
  public var annotations: [String: String]?
  public var linux: Linux?

  /// The runtime-spec version crisp writes (runc 1.1 reads 1.0.x).
  public static let version = "1.0.2"

  public init(
    ociVersion: String = RuntimeSpec.version, process: Process? = nil, root: Root? = nil, hostname: String? = nil,
    mounts: [Mount]? = nil, hooks: Hooks? = nil, annotations: [String: String]? = nil, linux: Linux? = nil
  ) {
    self.ociVersion = ociVersion
    self.process = process
    self.root = root
    self.hostname = hostname
    self.mounts = mounts
    self.hooks = hooks
    self.annotations = annotations
    self.linux = linux
  }

  // MARK: process

  /// The container's first process.
  public struct Process: Codable, Sendable, Equatable {
    public var terminal: Bool?
    public var consoleSize: Box?
    public var user: User
    public var args: [String]?
    public var env: [String]?
    public var cwd: String
    public var capabilities: LinuxCapabilities?
    public var rlimits: [POSIXRlimit]?
    public var noNewPrivileges: Bool?
    public var apparmorProfile: String?
    public var oomScoreAdj: Int?
    public var selinuxLabel: String?

    public init(
      terminal: Bool? = nil, consoleSize: Box? = nil, user: User = User(), args: [String]? = nil,
      env: [String]? = nil, cwd: String = "/", capabilities: LinuxCapabilities? = nil, rlimits: [POSIXRlimit]? = nil,
      noNewPrivileges: Bool? = nil, apparmorProfile: String? = nil, oomScoreAdj: Int? = nil,
      selinuxLabel: String? = nil
    ) {
      self.terminal = terminal
      self.consoleSize = consoleSize
      self.user = user
      self.args = args
      self.env = env
      self.cwd = cwd
      self.capabilities = capabilities
      self.rlimits = rlimits
      self.noNewPrivileges = noNewPrivileges
      self.apparmorProfile = apparmorProfile
      self.oomScoreAdj = oomScoreAdj
      self.selinuxLabel = selinuxLabel
    }
  }

  /// A terminal size in characters.
  public struct Box: Codable, Sendable, Equatable {
    public var height: UInt32
    public var width: UInt32

    public init(height: UInt32, width: UInt32) {
      self.height = height
      self.width = width
    }
  }

  /// Who the process runs as: numeric IDs only (runc resolves no names).
  public struct User: Codable, Sendable, Equatable {
    public var uid: UInt32
    public var gid: UInt32
    public var umask: UInt32?
    public var additionalGids: [UInt32]?
    /// Windows only in the spec; crisp leaves it unset.
    public var username: String?

    public init(
      uid: UInt32 = 0, gid: UInt32 = 0, umask: UInt32? = nil, additionalGids: [UInt32]? = nil, username: String? = nil
    ) {
      self.uid = uid
      self.gid = gid
      self.umask = umask
      self.additionalGids = additionalGids
      self.username = username
    }
  }

  /// Capability sets by name (`CAP_CHOWN`, ...).
  public struct LinuxCapabilities: Codable, Sendable, Equatable {
    public var bounding: [String]?
    public var effective: [String]?
    public var inheritable: [String]?
    public var permitted: [String]?
    public var ambient: [String]?

    public init(
      bounding: [String]? = nil, effective: [String]? = nil, inheritable: [String]? = nil,
      permitted: [String]? = nil, ambient: [String]? = nil
    ) {
      self.bounding = bounding
      self.effective = effective
      self.inheritable = inheritable
      self.permitted = permitted
      self.ambient = ambient
    }
  }

  /// One resource limit, `type` as `RLIMIT_NOFILE`.
  public struct POSIXRlimit: Codable, Sendable, Equatable {
    public var type: String
    public var hard: UInt64
    public var soft: UInt64

    public init(type: String, hard: UInt64, soft: UInt64) {
      self.type = type
      self.hard = hard
      self.soft = soft
    }
  }

  // MARK: root, mounts, hooks

  /// The root filesystem, `path` relative to the bundle or absolute.
  public struct Root: Codable, Sendable, Equatable {
    public var path: String
    public var readonly: Bool?

    public init(path: String, readonly: Bool? = nil) {
      self.path = path
      self.readonly = readonly
    }
  }

  public struct Mount: Codable, Sendable, Equatable {
    public var destination: String
    public var type: String?
    public var source: String?
    public var options: [String]?

    public init(destination: String, type: String? = nil, source: String? = nil, options: [String]? = nil) {
      self.destination = destination
      self.type = type
      self.source = source
      self.options = options
    }
  }

  public struct Hooks: Codable, Sendable, Equatable {
    public var prestart: [Hook]?
    public var createRuntime: [Hook]?
    public var createContainer: [Hook]?
    public var startContainer: [Hook]?
    public var poststart: [Hook]?
    public var poststop: [Hook]?

    public init(
      prestart: [Hook]? = nil, createRuntime: [Hook]? = nil, createContainer: [Hook]? = nil,
      startContainer: [Hook]? = nil, poststart: [Hook]? = nil, poststop: [Hook]? = nil
    ) {
      self.prestart = prestart
      self.createRuntime = createRuntime
      self.createContainer = createContainer
      self.startContainer = startContainer
      self.poststart = poststart
      self.poststop = poststop
    }
  }

  public struct Hook: Codable, Sendable, Equatable {
    public var path: String
    public var args: [String]?
    public var env: [String]?
    public var timeout: Int?

    public init(path: String, args: [String]? = nil, env: [String]? = nil, timeout: Int? = nil) {
      self.path = path
      self.args = args
      self.env = env
      self.timeout = timeout
    }
  }

  // MARK: linux

  public struct Linux: Codable, Sendable, Equatable {
    public var uidMappings: [LinuxIDMapping]?
    public var gidMappings: [LinuxIDMapping]?
    public var sysctl: [String: String]?
    public var resources: LinuxResources?
    public var cgroupsPath: String?
    public var namespaces: [LinuxNamespace]?
    public var devices: [LinuxDevice]?
    public var seccomp: LinuxSeccomp?
    public var rootfsPropagation: String?
    public var maskedPaths: [String]?
    public var readonlyPaths: [String]?
    public var mountLabel: String?

    public init(
      uidMappings: [LinuxIDMapping]? = nil, gidMappings: [LinuxIDMapping]? = nil, sysctl: [String: String]? = nil,
      resources: LinuxResources? = nil, cgroupsPath: String? = nil, namespaces: [LinuxNamespace]? = nil,
      devices: [LinuxDevice]? = nil, seccomp: LinuxSeccomp? = nil, rootfsPropagation: String? = nil,
      maskedPaths: [String]? = nil, readonlyPaths: [String]? = nil, mountLabel: String? = nil
    ) {
      self.uidMappings = uidMappings
      self.gidMappings = gidMappings
      self.sysctl = sysctl
      self.resources = resources
      self.cgroupsPath = cgroupsPath
      self.namespaces = namespaces
      self.devices = devices
      self.seccomp = seccomp
      self.rootfsPropagation = rootfsPropagation
      self.maskedPaths = maskedPaths
      self.readonlyPaths = readonlyPaths
      self.mountLabel = mountLabel
    }
  }

  public struct LinuxIDMapping: Codable, Sendable, Equatable {
    public var containerID: UInt32
    public var hostID: UInt32
    public var size: UInt32

    public init(containerID: UInt32, hostID: UInt32, size: UInt32) {
      self.containerID = containerID
      self.hostID = hostID
      self.size = size
    }
  }

  public struct LinuxNamespace: Codable, Sendable, Equatable {
    public var type: LinuxNamespaceType
    /// A namespace file to join (`/proc/<pid>/ns/net`, a pinned bind mount); nil makes a new one.
    public var path: String?

    public init(type: LinuxNamespaceType, path: String? = nil) {
      self.type = type
      self.path = path
    }
  }

  public enum LinuxNamespaceType: String, Codable, Sendable, Equatable, CaseIterable {
    case pid
    case network
    case mount
    case ipc
    case uts
    case user
    case cgroup
  }

  /// A device node runc creates in the container's `/dev`.
  public struct LinuxDevice: Codable, Sendable, Equatable {
    public var path: String
    /// `c` (character), `b` (block), `u` (unbuffered character) or `p` (FIFO).
    public var type: String
    public var major: Int64
    public var minor: Int64
    public var fileMode: UInt32?
    public var uid: UInt32?
    public var gid: UInt32?

    public init(
      path: String, type: String, major: Int64, minor: Int64, fileMode: UInt32? = nil, uid: UInt32? = nil,
      gid: UInt32? = nil
    ) {
      self.path = path
      self.type = type
      self.major = major
      self.minor = minor
      self.fileMode = fileMode
      self.uid = uid
      self.gid = gid
    }
  }

  public struct LinuxResources: Codable, Sendable, Equatable {
    public var devices: [LinuxDeviceCgroup]?
    public var memory: LinuxMemory?
    public var cpu: LinuxCPU?
    public var pids: LinuxPids?
    public var hugepageLimits: [LinuxHugepageLimit]?
    /// cgroup v2 files by name (`memory.high`); runc refuses them on cgroup v1.
    public var unified: [String: String]?

    public init(
      devices: [LinuxDeviceCgroup]? = nil, memory: LinuxMemory? = nil, cpu: LinuxCPU? = nil, pids: LinuxPids? = nil,
      hugepageLimits: [LinuxHugepageLimit]? = nil, unified: [String: String]? = nil
    ) {
      self.devices = devices
      self.memory = memory
      self.cpu = cpu
      self.pids = pids
      self.hugepageLimits = hugepageLimits
      self.unified = unified
    }
  }

  /// One device-cgroup rule; nil `type`/`major`/`minor` match all.
  public struct LinuxDeviceCgroup: Codable, Sendable, Equatable {
    public var allow: Bool
    public var type: String?
    public var major: Int64?
    public var minor: Int64?
    public var access: String?

    public init(allow: Bool, type: String? = nil, major: Int64? = nil, minor: Int64? = nil, access: String? = nil) {
      self.allow = allow
      self.type = type
      self.major = major
      self.minor = minor
      self.access = access
    }
  }

  public struct LinuxMemory: Codable, Sendable, Equatable {
    public var limit: Int64?
    public var reservation: Int64?
    /// Memory plus swap (cgroup v1 `memsw` semantics); -1 is unlimited.
    public var swap: Int64?
    public var kernel: Int64?
    public var swappiness: UInt64?
    public var disableOOMKiller: Bool?

    public init(
      limit: Int64? = nil, reservation: Int64? = nil, swap: Int64? = nil, kernel: Int64? = nil,
      swappiness: UInt64? = nil, disableOOMKiller: Bool? = nil
    ) {
      self.limit = limit
      self.reservation = reservation
      self.swap = swap
      self.kernel = kernel
      self.swappiness = swappiness
      self.disableOOMKiller = disableOOMKiller
    }
  }

  public struct LinuxCPU: Codable, Sendable, Equatable {
    public var shares: UInt64?
    public var quota: Int64?
    public var period: UInt64?
    public var realtimeRuntime: Int64?
    public var realtimePeriod: UInt64?
    public var cpus: String?
    public var mems: String?

    public init(
      shares: UInt64? = nil, quota: Int64? = nil, period: UInt64? = nil, realtimeRuntime: Int64? = nil,
      realtimePeriod: UInt64? = nil, cpus: String? = nil, mems: String? = nil
    ) {
      self.shares = shares
      self.quota = quota
      self.period = period
      self.realtimeRuntime = realtimeRuntime
      self.realtimePeriod = realtimePeriod
      self.cpus = cpus
      self.mems = mems
    }
  }

  public struct LinuxPids: Codable, Sendable, Equatable {
    public var limit: Int64

    public init(limit: Int64) { self.limit = limit }
  }

  public struct LinuxHugepageLimit: Codable, Sendable, Equatable {
    /// `2MB`, `1GB`: the size in the cgroup file name `hugetlb.<size>.limit_in_bytes`.
    public var pageSize: String
    public var limit: UInt64

    public init(pageSize: String, limit: UInt64) {
      self.pageSize = pageSize
      self.limit = limit
    }
  }

  // MARK: seccomp

  public struct LinuxSeccomp: Codable, Sendable, Equatable {
    /// `SCMP_ACT_ERRNO`, `SCMP_ACT_ALLOW`, ...
    public var defaultAction: String
    public var defaultErrnoRet: UInt32?
    /// `SCMP_ARCH_X86_64`, ...
    public var architectures: [String]?
    public var flags: [String]?
    public var syscalls: [LinuxSyscall]?

    public init(
      defaultAction: String, defaultErrnoRet: UInt32? = nil, architectures: [String]? = nil, flags: [String]? = nil,
      syscalls: [LinuxSyscall]? = nil
    ) {
      self.defaultAction = defaultAction
      self.defaultErrnoRet = defaultErrnoRet
      self.architectures = architectures
      self.flags = flags
      self.syscalls = syscalls
    }
  }

  public struct LinuxSyscall: Codable, Sendable, Equatable {
    public var names: [String]
    public var action: String
    public var errnoRet: UInt32?
    public var args: [LinuxSeccompArg]?

    public init(names: [String], action: String, errnoRet: UInt32? = nil, args: [LinuxSeccompArg]? = nil) {
      self.names = names
      self.action = action
      self.errnoRet = errnoRet
      self.args = args
    }
  }

  public struct LinuxSeccompArg: Codable, Sendable, Equatable {
    public var index: UInt32
    public var value: UInt64
    public var valueTwo: UInt64?
    /// `SCMP_CMP_EQ`, `SCMP_CMP_MASKED_EQ`, ...
    public var op: String

    public init(index: UInt32, value: UInt64, valueTwo: UInt64? = nil, op: String) {
      self.index = index
      self.value = value
      self.valueTwo = valueTwo
      self.op = op
    }
  }
}
