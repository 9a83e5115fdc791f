import ArgumentParser
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

/// netd: pod network namespaces and CNI plugins. It never touches images.
@main
struct NetdCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "netd",
    abstract: "crisp's network daemon: pod namespaces and CNI networking.",
    version: CrispVersion.string)

  @Option(help: "Configuration file (default \(CrispConfig.defaultPath)).")
  var config: String?

  @Option(help: "Log level, overriding the configuration.")
  var logLevel: String?

  // Tests only: serve debug.syscall (TestHooks).
  @Flag(name: .customLong(TestHooks.flag), help: .hidden)
  var testHooks = false

  func run() async throws {
    let signals = TerminationSignals()
    // A plugin that exits before reading its configuration must not kill netd.
    signal(SIGPIPE, SIG_IGN)
    let (config, logger) = try DaemonStartup.load(daemon: .netd, configPath: self.config, logLevel: logLevel)
    let caps = try DaemonPrivileges.restrictCapabilities(to: CrispConfig.keptCapabilities(config.netd.capabilities))
    // After the capability drop (a re-execution: the exporter's threads come after it).
    let tracing = try CrispTracing.start(config.tracing, daemon: .netd, logger: logger)
    let paths = config.paths
    let configs = CNIConfigDirectory(path: config.netd.cniConfigDir, defaultNetwork: config.netd.cniDefaultNetwork)
    let podCIDRs = PodCIDRs(file: paths.cniCacheDir + "/pod-cidr", logger: logger)
    let networks = PodNetworks(
      pinner: NamespacePinner(directory: paths.namespacesDir),
      configs: configs,
      invoker: CNIInvoker(
        pluginDirs: config.netd.cniPluginDirs, timeoutMs: config.netd.cniPluginTimeoutMs, logger: logger),
      store: PodNetworkStore(directory: paths.cniCacheDir + "/pods"),
      lockTimeoutMs: config.ipc.requestTimeoutMs,
      logger: logger, podCIDRs: podCIDRs)

    let identity = DaemonIdentity(name: "netd")
    var router = IPCRouter()
    router.register(Health.self) { _ in
      switch configs.load() {
      case .success: identity.health()
      case .failure(let error):
        identity.health(ready: false, reason: "NetworkPluginNotReady", message: error.message)
      }
    }
    router.register(PodNetworkSetup.self) { request in try await networks.setup(request) }
    router.register(PodNetworkTeardown.self) { request in
      try await networks.teardown(request.podID)
      return Empty()
    }
    router.register(PodNetworkStatus.self) { request in try await networks.status(request.podID) }
    router.register(PodNetworkCheck.self) { request in try await networks.check(request.podID) }
    router.register(PodNetworkList.self) { _ in PodNetworkList.Response(pods: await networks.list()) }
    router.register(PodNetworkReconcile.self) { request in
      PodNetworkReconcile.Response(
        tornDown: await networks.reconcile(keeping: Set(request.podIDs), before: request.listedAt))
    }
    let counters = PodNetworkCounters(
      store: PodNetworkStore(directory: paths.cniCacheDir + "/pods"),
      pinner: NamespacePinner(directory: paths.namespacesDir))
    router.register(PodNetworkStats.self) { request in try counters.read(request.podID) }
    router.register(NetUpdateRuntimeConfig.self) { request in
      NetUpdateRuntimeConfig.Response(podCIDRs: try podCIDRs.update(request.podCIDR))
    }
    let forwarder = PortForwarder(directory: paths.runRoot + "/portforward", networks: networks, logger: logger)
    router.register(NetPortForward.self) { request in try await forwarder.open(request) }
    if testHooks { TestHooks.register(in: &router, logger: logger) }

    let address = CrispPaths.ipcAddress(paths.netdSocket)
    let server = try IPCServer(address: address, router: router, workers: config.ipc.serverWorkers, logger: logger)
    try confine(seccomp: config.seccomp, action: config.seccompAction, caps: caps, profile: .netd, logger: logger)
    logger.info(
      "netd serving",
      metadata: ["socket": "\(address)", "cni_config_dir": "\(config.netd.cniConfigDir)"])
    await CrispTracing.exporting(tracing) { await serveUntilTerminated(server, signals: signals, logger: logger) }
  }
}
