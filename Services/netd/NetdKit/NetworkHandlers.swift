import CrispConfig
import CrispCore
import CrispDaemon
import CrispIPC
import Logging

/// netd's IPC calls, each a thin translation onto the pod networks, their counters, the
/// node's pod CIDR or the port forwarder.
public struct NetworkHandlers: Sendable {
  let configs: CNIConfigDirectory
  let networks: PodNetworks
  let counters: PodNetworkCounters
  let podCIDRs: PodCIDRs
  let forwarder: PortForwarder
  let identity = DaemonIdentity(name: "netd")

  public init(config: CrispConfig, logger: Logger) {
    let paths = config.paths
    configs = CNIConfigDirectory(path: config.netd.cniConfigDir, defaultNetwork: config.netd.cniDefaultNetwork)
    podCIDRs = PodCIDRs(file: paths.cniCacheDir + "/pod-cidr", logger: logger)
    networks = PodNetworks(
      pinner: NamespacePinner(directory: paths.namespacesDir),
      configs: configs,
      invoker: CNIInvoker(
        pluginDirs: config.netd.cniPluginDirs, timeoutMs: config.netd.cniPluginTimeoutMs, logger: logger),
      store: PodNetworkStore(directory: paths.cniCacheDir + "/pods"),
      lockTimeoutMs: config.ipc.requestTimeoutMs,
      logger: logger, podCIDRs: podCIDRs)
    counters = PodNetworkCounters(
      store: PodNetworkStore(directory: paths.cniCacheDir + "/pods"),
      pinner: NamespacePinner(directory: paths.namespacesDir))
    forwarder = PortForwarder(directory: paths.runRoot + "/portforward", networks: networks, logger: logger)
  }

  public func register(in router: inout IPCRouter) {
    let configs = configs
    let identity = identity
    let networks = networks
    let counters = counters
    let podCIDRs = podCIDRs
    let forwarder = forwarder
    // Ready only with a CNI configuration to put pods into (the CRI's NetworkReady).
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
    router.register(PodNetworkStats.self) { request in try counters.read(request.podID) }
    router.register(NetUpdateRuntimeConfig.self) { request in
      NetUpdateRuntimeConfig.Response(podCIDRs: try podCIDRs.update(request.podCIDR))
    }
    router.register(NetPortForward.self) { request in try await forwarder.open(request) }
    // Its name before each peer got one prefix (2026-12), for a frontd of that release
    // until it restarts too. Drop it a release later.
    router.alias("net.portForward", for: NetPortForward.self)
  }
}
