import CrispConfig
import CrispCore
import CrispDaemon
import CrispIPC
import CrispLinux
import CrispTracing
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// The life of imaged and netd, which differ only in what they serve: load the
/// configuration, drop to the daemon's capabilities, start tracing, register the
/// daemon's calls (and the test hooks), bind its IPC socket, confine it with seccomp,
/// serve until SIGTERM, then let it clean up.
public enum SingletonDaemon {
  /// What a daemon brings: the calls it serves, made once the configuration is loaded
  /// and the capabilities are dropped; and what it does after it stopped serving.
  public struct Service: Sendable {
    public var register: @Sendable (inout IPCRouter) -> Void
    public var stopped: @Sendable () async -> Void

    public init(
      register: @escaping @Sendable (inout IPCRouter) -> Void, stopped: @escaping @Sendable () async -> Void = {}
    ) {
      self.register = register
      self.stopped = stopped
    }
  }

  /// `make`: the daemon's service, from its configuration (and the logger it logs to).
  public static func run(
    _ daemon: CrispConfig.Daemon, options: DaemonOptions,
    make: (CrispConfig, Logger) async throws -> Service
  ) async throws {
    let signals = TerminationSignals()
    // A peer that closes its end must not end the daemon (netd's port forwarding,
    // imaged's registry connections): write fails with EPIPE instead.
    signal(SIGPIPE, SIG_IGN)
    let (config, logger) = try DaemonStartup.load(
      daemon: daemon, configPath: options.config, logLevel: options.logLevel)
    let facts = DaemonFacts(daemon, config)
    let caps = try DaemonPrivileges.restrictCapabilities(to: CrispConfig.keptCapabilities(facts.capabilities))
    // After the capability drop (a re-execution: the exporter's threads come after it).
    let tracing = try CrispTracing.start(config.tracing, daemon: daemon, logger: logger)
    let service = try await make(config, logger)

    var router = IPCRouter()
    service.register(&router)
    if options.testHooks { TestHooks.register(in: &router, logger: logger) }
    let address = CrispPaths.ipcAddress(facts.socket)
    let server = try IPCServer(address: address, router: router, workers: config.ipc.serverWorkers, logger: logger)
    try confine(
      seccomp: config.seccomp, action: config.seccompAction, caps: caps, profile: facts.profile, logger: logger)
    logger.info("\(daemon.rawValue) serving", metadata: ["socket": "\(address)", "version": "\(CrispVersion.string)"])
    await CrispTracing.exporting(tracing) { await serveUntilTerminated(server, signals: signals, logger: logger) }
    await service.stopped()
  }
}

/// What differs between the daemons `SingletonDaemon` runs. cri-frontd serves gRPC and
/// has a start of its own (FrontDaemon); shimd runs one per container.
private struct DaemonFacts {
  var capabilities: [String]
  var socket: String
  var profile: SeccompProfile

  init(_ daemon: CrispConfig.Daemon, _ config: CrispConfig) {
    switch daemon {
    case .imaged: self.init(config.imaged.capabilities, config.paths.imagedSocket, .imaged)
    case .netd: self.init(config.netd.capabilities, config.paths.netdSocket, .netd)
    case .frontd, .shimd: preconditionFailure("SingletonDaemon runs imaged and netd, not \(daemon.rawValue)")
    }
  }

  private init(_ capabilities: [String], _ socket: String, _ profile: SeccompProfile) {
    self.capabilities = capabilities
    self.socket = socket
    self.profile = profile
  }
}
