import CRIAPI
import CrispCore
import CrispIPC
import Foundation
import Logging

/// The node's pod sandboxes: their records (in memory, written through to the metadata
/// database), one lock per pod so that calls on one pod run one at a time, and their
/// lifecycle: run, stop, remove, and the recovery after a restart or a reboot.
final class Sandboxes: Sendable {
  let records: RecordTable<Sandbox>
  private let store: MetadataStore
  private let locks = KeyedLock(timeoutMs: 120_000)
  let network: any PodNetwork
  let monitors: any ContainerMonitors
  let launcher: ContainerLauncher
  let logger: Logger

  init(
    store: MetadataStore, network: any PodNetwork, monitors: any ContainerMonitors, launcher: ContainerLauncher,
    logger: Logger
  ) throws(CrispError) {
    self.store = store
    var loaded: [Sandbox] = []
    for record in try store.pods() {
      do throws(CrispError) {
        loaded.append(try Sandbox(record: record))
      } catch {
        // One bad row must not keep frontd from starting: the pod can still be
        // listed, stopped and removed.
        logger.error("pod sandbox kept without its config", metadata: ["pod": "\(record.id)", "error": "\(error)"])
        loaded.append(Sandbox(record: record, config: Runtime_V1_PodSandboxConfig()))
      }
    }
    records = RecordTable(kind: "pod sandbox", kinds: "pods", loaded: loaded)
    self.network = network
    self.monitors = monitors
    self.launcher = launcher
    self.logger = logger
  }

  /// The pod an ID or unique ID prefix names; nil when none does.
  func resolve(_ text: String) throws(CrispError) -> Sandbox? { try records.resolve(text) }

  func withLock<T: Sendable>(_ id: String, _ body: () async throws(CrispError) -> T) async throws(CrispError) -> T {
    guard await locks.acquire(id) else {
      throw CrispError(.unavailable, "pod sandbox \(id.prefix(12)) is busy with another call; try again")
    }
    defer { locks.release(id) }
    return try await body()
  }

  private func update(_ record: PodRecord) throws(CrispError) {
    try store.updatePod(record)
    if var sandbox = records.get(record.id) {
      sandbox.record = record
      records.put(sandbox)
    }
  }

  private func delete(_ id: String) throws(CrispError) {
    try store.deletePod(id)
    records.remove(id)
  }

  // MARK: Lifecycle

  /// What RunPodSandbox asks for, checked by its RPC.
  struct RunRequest: Sendable {
    var config: Runtime_V1_PodSandboxConfig
    /// "runc" for the default handler.
    var handler: String
    /// The node's hostname when the pod has the host's network or names none.
    var hostname: String
  }

  /// Records the pod, has netd create and pin its namespaces and run CNI ADD, writes
  /// its resolv.conf, hostname and hosts, starts its infra process when its containers
  /// share a PID namespace, then marks it ready. Anything that fails undoes what was
  /// done before it. Answers the pod's ID.
  func run(_ request: RunRequest) async throws(CrispError) -> String {
    let config = request.config
    let metadata = config.metadata
    let hostNetwork = config.linux.securityContext.namespaceOptions.network == .node
    var sandbox = Sandbox(
      record: PodRecord(
        id: newRuntimeID(), name: metadata.name, namespace: metadata.namespace, uid: metadata.uid,
        attempt: metadata.attempt, state: .creating, createdAt: WallClock.nowNanoseconds(),
        config: try config.encoded(), runtimeHandler: request.handler, ips: [], netns: "", ipcns: "", utsns: ""),
      config: config)
    // Recorded before anything is made: after a crash, recovery finds it and undoes it.
    try store.insertPod(sandbox.record)
    records.put(sandbox)
    let id = sandbox.id
    return try await withLock(id) { () async throws(CrispError) in
      do throws(CrispError) {
        let network = try await network.setUp(
          Self.networkSetup(id: id, config: config, hostname: request.hostname))
        sandbox.record.ips = network.ips
        sandbox.record.netns = network.namespaces.network
        sandbox.record.ipcns = network.namespaces.ipc
        sandbox.record.utsns = network.namespaces.uts
        try PodFiles.create(
          directory: launcher.podDirectory(id), config: config, hostname: request.hostname, ips: network.ips,
          hostNetwork: hostNetwork, hostIPC: sandbox.hostIPC)
        try update(sandbox.record)
        if sandbox.sharesPIDNamespace { try await startInfra(sandbox) }
        sandbox.record.state = .ready
        try update(sandbox.record)
      } catch {
        logger.warning("pod sandbox creation failed, undoing it", metadata: ["pod": "\(id)", "error": "\(error)"])
        await removeInfra(sandbox.record)
        try? await network.tearDown(podID: id)
        PodFiles.remove(launcher.podDirectory(id))
        try? delete(id)
        throw error
      }
      logger.info(
        "pod sandbox ready",
        metadata: [
          "pod": "\(id)", "name": "\(sandbox.record.namespace)/\(sandbox.record.name)", "ips": "\(sandbox.record.ips)",
        ])
      return id
    }
  }

  static func networkSetup(id: String, config: Runtime_V1_PodSandboxConfig, hostname: String)
    -> PodNetworkSetup.Request
  {
    let namespaces = config.linux.securityContext.namespaceOptions
    let hostNetwork = namespaces.network == .node
    return PodNetworkSetup.Request(
      podID: id, podName: config.metadata.name, podNamespace: config.metadata.namespace,
      podUID: config.metadata.uid, hostNetwork: hostNetwork, hostIPC: namespaces.ipc == .node,
      hostname: hostNetwork ? "" : hostname, sysctls: config.linux.sysctls,
      portMappings: config.portMappings.map {
        PortMapping(
          protocol: "\($0.protocol)".lowercased(), containerPort: $0.containerPort, hostPort: $0.hostPort,
          hostIP: $0.hostIp)
      },
      dns: config.hasDnsConfig
        ? DNSSettings(
          servers: config.dnsConfig.servers, searches: config.dnsConfig.searches, options: config.dnsConfig.options)
        : nil)
  }

  /// Stops the pod's containers and its infra process, runs CNI DEL (netd does so from
  /// its cache, also after restarts) and has netd unpin its namespaces and unmount its
  /// /dev/shm; then the pod is not ready. Idempotent. Must be called with the pod's lock.
  func stop(_ id: String, containers: Containers) async throws(CrispError) {
    guard let current = records.get(id) else { return }
    for container in containers.records.all(where: { $0.podID == id }) {
      try await containers.withLock(container.id) { () async throws(CrispError) in
        try await containers.stop(container, timeoutSeconds: 0)
      }
    }
    try await stopInfra(id)
    try await network.tearDown(podID: id)
    if current.record.state != .notReady {
      var stopped = current.record
      stopped.state = .notReady
      try update(stopped)
      logger.info("pod sandbox stopped", metadata: ["pod": "\(id)"])
    }
  }

  /// Stops the pod if it still runs, removes its containers, then deletes it and its
  /// files. Idempotent. Must be called with the pod's lock.
  func remove(_ id: String, containers: Containers) async throws(CrispError) {
    guard let sandbox = records.get(id) else { return }
    try await stop(id, containers: containers)
    for container in containers.records.all(where: { $0.podID == id }) {
      try await containers.withLock(container.id) { () async throws(CrispError) in
        // Removed meanwhile by a RemoveContainer that held the lock.
        guard let current = containers.records.get(container.id) else { return }
        try await containers.remove(current)
      }
    }
    await removeInfra(sandbox.record)
    PodFiles.remove(launcher.podDirectory(id))
    try delete(id)
    containers.records.removeAll { $0.podID == id }
    logger.info("pod sandbox removed", metadata: ["pod": "\(id)"])
  }

  /// After a reboot nothing of the pods' runtime state is left: every pod is shown not
  /// ready (and can be stopped and removed); a RunPodSandbox cut off by a crash is undone.
  func recover() async {
    let bootID = (Files.text("/proc/sys/kernel/random/boot_id") ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    let previous = (try? store.value("boot_id")) ?? nil
    let rebooted = previous != nil && previous != bootID
    try? store.setValue(bootID, for: "boot_id")
    for sandbox in records.all() {
      let pod = sandbox.record
      if pod.state == .creating {
        logger.notice("undoing a pod sandbox whose creation was cut off", metadata: ["pod": "\(pod.id)"])
        if let infra = monitors.monitor(pod.id) {
          try? await infra.delete()
          monitors.forget(pod.id)
        }
        launcher.bundle(pod.id).remove()
        try? await network.tearDown(podID: pod.id)
        PodFiles.remove(launcher.podDirectory(pod.id))
        try? delete(pod.id)
      } else if rebooted && pod.state == .ready {
        var stale = pod
        stale.state = .notReady
        try? update(stale)
      }
    }
  }
}
