import CrispCore
import CrispIPC
import Foundation
import Logging

/// Sets up and tears down pod networks: pinned namespaces plus the CNI network.
/// Calls for one pod run one at a time; calls for different pods run concurrently.
actor PodNetworks {
  private let pinner: NamespacePinner
  private let configs: CNIConfigDirectory
  private let invoker: CNIInvoker
  private let store: PodNetworkStore
  private let logger: Logger
  private let locks: KeyedLock
  /// kubelet's pod CIDR, for configurations that leave their subnet to the node.
  private let podCIDRs: PodCIDRs?

  init(
    pinner: NamespacePinner, configs: CNIConfigDirectory, invoker: CNIInvoker, store: PodNetworkStore,
    lockTimeoutMs: Int, logger: Logger, podCIDRs: PodCIDRs? = nil
  ) {
    locks = KeyedLock(timeoutMs: lockTimeoutMs)
    self.podCIDRs = podCIDRs
    self.pinner = pinner
    self.configs = configs
    self.invoker = invoker
    self.store = store
    self.logger = logger
  }

  func setup(_ request: PodNetworkSetup.Request) async throws(CrispError) -> PodNetworkInfo {
    try PodValidation.podID(request.podID)
    if !request.hostname.isEmpty { try PodValidation.hostname(request.hostname) }
    try PodValidation.cniArgument("pod name", request.podName)
    try PodValidation.cniArgument("pod namespace", request.podNamespace)
    try PodValidation.cniArgument("pod UID", request.podUID)
    let sysctls = try request.sysctls.sorted { $0.key < $1.key }.map { name, value throws(CrispError) in
      guard !value.contains("\n") else { throw CrispError(.invalidArgument, "sysctl \(name): value has a newline") }
      return (
        path: try PodValidation.sysctlPath(name, hostNetwork: request.hostNetwork, hostIPC: request.hostIPC),
        value: value
      )
    }
    for mapping in request.portMappings {
      guard (1...65535).contains(mapping.containerPort), (0...65535).contains(mapping.hostPort),
        ["tcp", "udp", "sctp"].contains(mapping.protocol.lowercased())
      else {
        throw CrispError(
          .invalidArgument, "invalid port mapping \(mapping.protocol) \(mapping.hostPort):\(mapping.containerPort)")
      }
    }
    try await lock(request.podID)
    defer { unlock(request.podID) }

    if let existing = try store.load(request.podID) {
      if existing.state == .ready { return existing.info }
      // A setup cut off earlier (netd killed mid-ADD): clean it away, then start over.
      try await tearDownLocked(request.podID)
    }

    var kinds: NamespacePinner.Kinds = []
    if !request.hostNetwork { kinds.formUnion([.network, .uts]) }
    if !request.hostIPC { kinds.insert(.ipc) }
    let namespaces = pinner.paths(request.podID, kinds: kinds)

    var network: CNINetworkList? = nil
    var runtime: CNIRuntime? = nil
    let runtimeConfig = Self.runtimeConfig(request)
    if !request.hostNetwork {
      switch configs.load() {
      case .success(let loaded):
        // A missing plugin binary is refused before anything is created.
        for type in loaded.pluginTypes { _ = try invoker.pluginPath(type) }
        network = try podCIDRs?.apply(to: loaded) ?? loaded
      case .failure(let error):
        throw CrispError(
          .failedPrecondition, "cannot set up the network of pod \(request.podID.prefix(12)): \(error.message)")
      }
      runtime = CNIRuntime(
        containerID: request.podID, netns: namespaces.network, ifName: "eth0",
        args: [
          "IgnoreUnknown=1", "K8S_POD_NAMESPACE=\(request.podNamespace)", "K8S_POD_NAME=\(request.podName)",
          "K8S_POD_INFRA_CONTAINER_ID=\(request.podID)", "K8S_POD_UID=\(request.podUID)",
        ].joined(separator: ";"))
    }

    // Recorded before anything is created, so that whatever a crash leaves behind
    // (pinned namespaces, a half-done ADD) is found and torn down later.
    var record = PodNetworkRecord(
      podID: request.podID, state: .adding, namespaces: namespaces, hostNetwork: request.hostNetwork,
      network: network, runtime: runtime, runtimeConfig: runtimeConfig, result: nil)
    try store.save(record)
    do {
      _ = try pinner.pin(
        podID: request.podID, kinds: kinds, hostname: request.hostNetwork ? "" : request.hostname, sysctls: sysctls)
    } catch {
      store.remove(request.podID)
      throw error
    }

    guard let network, let runtime else {
      record.state = .ready
      do {
        try store.save(record)
      } catch {
        pinner.unpin(request.podID)
        store.remove(request.podID)
        throw error
      }
      return record.info
    }

    let started = ContinuousClock.now
    do {
      record.result = try await invoker.add(network, runtime: runtime, runtimeConfig: runtimeConfig)
      record.state = .ready
      try store.save(record)
    } catch {
      // Give back whatever the plugins that ran created: veth, IP lease, iptables rules.
      do {
        try await invoker.delete(network, runtime: runtime, runtimeConfig: runtimeConfig, cachedResult: record.result)
      } catch let cleanup {
        // Keep the record and the namespace: a later teardown retries the DEL.
        logger.warning(
          "CNI DEL after a failed ADD failed; teardown will retry",
          metadata: ["pod": "\(request.podID.prefix(12))", "error": "\(cleanup.message)"])
        throw error
      }
      pinner.unpin(request.podID)
      store.remove(request.podID)
      throw error
    }
    logger.info(
      "pod network ready",
      metadata: [
        "pod": "\(request.podID.prefix(12))", "network": "\(network.name)",
        "ips": "\(record.info.ips.joined(separator: ","))", "elapsed": "\(ContinuousClock.now - started)",
      ])
    return record.info
  }

  func teardown(_ podID: String) async throws(CrispError) {
    try PodValidation.podID(podID)
    try await lock(podID)
    defer { unlock(podID) }
    try await tearDownLocked(podID)
  }

  func status(_ podID: String) throws(CrispError) -> PodNetworkInfo {
    try PodValidation.podID(podID)
    guard let record = try store.load(podID) else {
      throw CrispError(.notFound, "netd knows no pod \(podID)")
    }
    return record.info
  }

  func check(_ podID: String) async throws(CrispError) -> PodNetworkInfo {
    try PodValidation.podID(podID)
    try await lock(podID)
    defer { unlock(podID) }
    guard let record = try store.load(podID), record.state == .ready else {
      throw CrispError(.notFound, "netd knows no ready pod \(podID)")
    }
    if let network = record.network, let runtime = record.runtime, let result = record.result {
      try await invoker.check(network, runtime: runtime, runtimeConfig: record.runtimeConfig, cachedResult: result)
    }
    return record.info
  }

  func list() -> [PodNetworkInfo] {
    store.all().map(\.info)
  }

  /// Tears down every pod not in `keeping` whose record was last written before `before`
  /// (wall clock, ns); answers those torn down.
  func reconcile(keeping: Set<String>, before: Int64) async -> [String] {
    var tornDown: [String] = []
    for record in store.all() where !keeping.contains(record.podID) {
      var info = stat()
      guard stat(store.path(record.podID), &info) == 0 else { continue }
      // File times come from the kernel's coarse clock, a tick behind frontd's: a record
      // written just after `before` could look older. A second of margin keeps a
      // RunPodSandbox under way out of the sweep.
      let written = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
      guard written + 1_000_000_000 < before else { continue }
      do throws(CrispError) {
        try await teardown(record.podID)
        tornDown.append(record.podID)
        logger.info("tore down the network of a pod frontd does not know", metadata: ["pod": "\(record.podID)"])
      } catch {
        logger.warning(
          "cannot tear down the network of a pod frontd does not know",
          metadata: ["pod": "\(record.podID)", "error": "\(error)"])
      }
    }
    return tornDown
  }

  private func tearDownLocked(_ podID: String) async throws(CrispError) {
    guard let record = try store.load(podID) else {
      pinner.unpin(podID)
      return
    }
    if let network = record.network, var runtime = record.runtime {
      // After a reboot the namespace is gone: CNI wants an empty CNI_NETNS then.
      if !NamespacePinner.isPinned(runtime.netns) { runtime.netns = "" }
      try await invoker.delete(
        network, runtime: runtime, runtimeConfig: record.runtimeConfig, cachedResult: record.result)
    }
    pinner.unpin(podID)
    store.remove(podID)
    logger.info("pod network removed", metadata: ["pod": "\(podID.prefix(12))"])
  }

  static func runtimeConfig(_ request: PodNetworkSetup.Request) -> [String: Any] {
    var config: [String: Any] = [:]
    // kubelet sends a mapping for every declared containerPort; host port 0 means "no
    // host port", and only mappings with one go to CNI (portmap refuses 0), as with
    // containerd and CRI-O.
    config["portMappings"] = request.portMappings.filter { $0.hostPort != 0 }.map { mapping -> [String: Any] in
      var entry: [String: Any] = [
        "hostPort": Int(mapping.hostPort), "containerPort": Int(mapping.containerPort),
        "protocol": mapping.protocol.lowercased(),
      ]
      if !mapping.hostIP.isEmpty { entry["hostIP"] = mapping.hostIP }
      return entry
    }
    if let bandwidth = request.bandwidth {
      config["bandwidth"] = [
        "ingressRate": bandwidth.ingressRate, "ingressBurst": bandwidth.ingressBurst,
        "egressRate": bandwidth.egressRate, "egressBurst": bandwidth.egressBurst,
      ]
    }
    if let dns = request.dns {
      config["dns"] = ["servers": dns.servers, "searches": dns.searches, "options": dns.options]
    }
    return config
  }

  private func lock(_ podID: String) async throws(CrispError) {
    guard await locks.acquire(podID) else {
      throw CrispError(
        .unavailable, "pod \(podID.prefix(12)) is busy with another network operation; try again")
    }
  }

  private func unlock(_ podID: String) {
    locks.release(podID)
  }
}
