import CrispCore
import CrispDaemon
import CrispLinux
import Logging

/// crisp's configuration, mirrored 1:1 by `/etc/crisp/crisp.toml`: top-level keys
/// for what all daemons share, one table per daemon. Every option has a default that
/// works on a stock Debian node, so an absent file means "all defaults".
public struct CrispConfig: Sendable, Equatable {
  public static let defaultPath = "/etc/crisp/crisp.toml"

  /// Persistent state: image store, metadata database, CNI result cache.
  public var root = "/var/lib/crisp"
  /// Runtime state cleared by a reboot: sockets, pinned namespaces, container bundles.
  public var runRoot = "/run/crisp"
  /// Every daemon's, unless its own table sets one.
  public var logLevel: Logger.Level = .info

  /// Each daemon confines itself with its seccomp filter (false only for debugging).
  public var seccomp = true
  /// What a refused system call gets: EPERM, the daemon killed, or only a log line.
  public var seccompAction: SeccompAction = .errno

  public var ipc = IPC()
  public var frontd = Frontd()
  public var imaged = Imaged()
  public var netd = Netd()
  public var shimd = Shimd()
  public var tracing = Tracing()

  public struct IPC: Sendable, Equatable {
    /// Deadline of a request from one daemon to another, in milliseconds.
    public var requestTimeoutMs = 5_000
    /// Deadline of the health requests behind the CRI `Status` call, in milliseconds.
    public var healthTimeoutMs = 1_000
    /// Requests each daemon serves at once.
    public var serverWorkers = 32
    /// Deadline of an image pull handed to imaged, in milliseconds: kubelet cancels a
    /// pull on its own terms, so this only bounds a pull that hangs.
    public var pullTimeoutMs = 3_600_000
    public init() {}
  }

  public struct Frontd: Sendable, Equatable {
    /// The executable of a runtime handler ("" = runc), or nil for an unknown one.
    public func runtimePath(handler: String) -> String? {
      handler.isEmpty || handler == "runc" ? runtimePath : runtimeHandlers[handler]
    }

    /// The CRI socket kubelet dials; empty means `<run_root>/crisp.sock`.
    public var listen = ""
    /// Unix group given the CRI socket (mode 0660); empty keeps root's group.
    public var socketGroup = ""
    /// The OCI runtime containers run with (the `runc` handler).
    public var runtimePath = "/usr/sbin/runc"
    /// More runtime handlers (RunPodSandbox's `runtime_handler`): name → an OCI runtime
    /// with runc's command line (crun, runsc, kata-runtime...). `runc` is `runtimePath`.
    public var runtimeHandlers: [String: String] = [:]
    /// The streaming server (Exec, Attach, PortForward): address and port (0: a free one).
    public var streamAddress = "127.0.0.1"
    public var streamPort = 0
    /// TLS for the streaming server: certificate and key (both or neither), and a CA
    /// that client certificates must chain to (empty: no client certificate asked).
    public var streamTLSCert = ""
    public var streamTLSKey = ""
    public var streamTLSClientCA = ""
    /// A streaming session with no traffic for this long is closed (kubelet's 4 h).
    public var streamIdleTimeoutMs = 4 * 3600 * 1000
    /// How long the URL an Exec, Attach or PortForward answers stays usable.
    public var streamTokenTTLMs = 60_000
    /// Streaming sessions at once; more are refused.
    public var maxStreamSessions = 256
    /// Prometheus metrics of cri-frontd (`GET /metrics`): the port (0: no endpoint) and
    /// the address it listens on.
    public var metricsPort = 0
    public var metricsAddress = "127.0.0.1"
    /// Capabilities cri-frontd keeps while it serves: none. shimd and the runtime are
    /// started by crisp-launcher, which keeps root's. ["ALL"] keeps all (debugging).
    public var capabilities: [String] = []
    /// The infra process of pods that share one PID namespace; empty means the one
    /// beside cri-frontd.
    public var pausePath = ""
    /// The shimd executable; empty means the one beside cri-frontd.
    public var shimdPath = ""
    /// As kubelet's cgroupDriver.
    public var cgroupDriver: CgroupDriver = .cgroupfs
    /// The RuntimeDefault seccomp profile (containers' seccomp.json format).
    public var seccompProfile = "/etc/crisp/seccomp.json"
    /// A container whose request names no seccomp profile gets `seccomp_profile` (true,
    /// CRI-O's default) or runs unconfined (false, containerd's behaviour, which critest
    /// expects). CRI-O's option of the same name.
    public var seccompUseDefaultWhenEmpty = true
    /// Where container logs go when the pod names no log directory.
    public var defaultLogDir = "/var/log/crisp/pods"
    /// Overrides the top-level log_level for this daemon when not empty.
    public var logLevel: Logger.Level? = nil
    public init() {}
  }

  public struct Imaged: Sendable, Equatable {
    /// Capabilities imaged keeps: what a faithful layer unpack needs. ["ALL"] keeps all.
    public var capabilities = [
      "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_MKNOD", "CAP_SETFCAP",
    ]
    /// Registry mirrors, insecure and blocked registries, short-name search, in the
    /// containers-registries.conf(5) v2 format. A missing file means "no rules".
    public var registriesConf = "/etc/containers/registries.conf"
    /// Registry credentials in the Docker config.json format, used when PullImage
    /// brings none. A missing file means "anonymous".
    public var authFile = "/etc/crisp/auth.json"
    /// Per-registry TLS material, containers-certs.d(5): `<dir>/<host[:port]>/*.crt` are
    /// extra CAs, `*.cert` + `*.key` a client certificate.
    public var certsDir = "/etc/containers/certs.d"
    /// Layers downloaded at once per pull.
    public var maxConcurrentDownloads = 3
    /// PullImage requests worked on at once, and waiting beyond those; more fail at once
    /// (ResourceExhausted). Both together stay 4 below ipc.server_workers, so that health
    /// and status calls always find a free IPC context.
    public var maxConcurrentPulls = 8
    public var maxQueuedPulls = 16
    /// A pull that receives no byte for this long fails, in milliseconds.
    public var pullProgressTimeoutMs = 60_000
    /// Images kubelet's garbage collection must leave alone (shown as `pinned`): exact
    /// names, globs ending in `*` (`registry.k8s.io/pause*`), keywords between two `*`
    /// (`*pause*`), as CRI-O reads its `pinned_images`.
    public var pinnedImages = ["registry.k8s.io/pause:3.10"]
    /// What an image may unpack to: a layer's and a whole image's uncompressed bytes, a
    /// layer's entries, the directories of one entry's path. Past any of them a pull
    /// fails with ResourceExhausted and leaves nothing behind.
    public var maxLayerBytes = 64 << 30
    public var maxImageBytes = 128 << 30
    public var maxLayerEntries = 5_000_000
    public var maxPathDepth = 512
    /// A pull stops, leaving nothing behind, when the image store's filesystem would have
    /// less free than this.
    public var minFreeBytes = 512 << 20
    public var logLevel: Logger.Level? = nil
    public init() {}
  }

  public struct Netd: Sendable, Equatable {
    /// Where CNI network configurations are read from (first file in lexical order).
    public var cniConfigDir = "/etc/cni/net.d"
    /// Where CNI plugin executables are looked for, in order.
    public var cniPluginDirs = ["/usr/lib/cni", "/opt/cni/bin"]
    /// The network pods join, by name; empty takes the first configuration file in
    /// lexical order, as kubelet's runtimes do.
    public var cniDefaultNetwork = ""
    /// How long one CNI plugin may run before it is killed, in milliseconds.
    public var cniPluginTimeoutMs = 60_000
    /// Capabilities netd (and so its CNI plugins) keeps. ["ALL"] keeps all.
    public var capabilities = ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_ADMIN"]
    public var logLevel: Logger.Level? = nil
    public init() {}
  }

  public struct Shimd: Sendable, Equatable {
    public var logLevel: Logger.Level? = nil
    public init() {}
  }

  /// OpenTelemetry traces (OTLP/HTTP + protobuf) from cri-frontd, imaged and netd, as
  /// services crisp-frontd, crisp-imaged and crisp-netd: a span per CRI call, child
  /// spans for the calls between daemons.
  public struct Tracing: Sendable, Equatable {
    /// The collector's OTLP/HTTP URL, e.g. "http://127.0.0.1:4318" ("/v1/traces" is
    /// added when the path does not name it). Empty: tracing off.
    public var endpoint = ""
    /// Share of new traces recorded, 0...1; a call whose caller (kubelet, or another
    /// daemon) sent a sampled trace context is always recorded.
    public var samplingRatio = 1.0
    /// Finished spans are sent in batches this often, in milliseconds.
    public var exportIntervalMs = 5_000
    public var enabled: Bool { !endpoint.isEmpty }
    public init() {}
  }

  public init() {}

  public var paths: CrispPaths { CrispPaths(root: root, runRoot: runRoot) }

  public var criSocketPath: String { frontd.listen.isEmpty ? paths.criSocket : frontd.listen }

  /// The level a daemon logs at: its own override, else the global one.
  public func logLevel(for daemon: Daemon) -> Logger.Level {
    let own: Logger.Level? =
      switch daemon {
      case .frontd: frontd.logLevel
      case .imaged: imaged.logLevel
      case .netd: netd.logLevel
      case .shimd: shimd.logLevel
      }
    return own ?? logLevel
  }

  /// Who creates the containers' cgroups: crisp under cgroupfs, or systemd (a scope
  /// per container), as kubelet's cgroupDriver says.
  public enum CgroupDriver: String, Sendable, CaseIterable {
    case cgroupfs, systemd
  }

  public typealias SeccompAction = DaemonPrivileges.Action

  public enum Daemon: String, Sendable {
    case frontd = "cri-frontd"
    case imaged, netd, shimd
  }
}

extension CrispConfig {
  /// A daemon's `capabilities` list as a set; nil for ["ALL"] (keep everything).
  public static func keptCapabilities(_ names: [String]) throws(CrispError) -> Set<Capability>? {
    if names.contains("ALL") { return nil }
    var set = Set<Capability>()
    for name in names { set.insert(try Capability(name: name)) }
    return set
  }
}
