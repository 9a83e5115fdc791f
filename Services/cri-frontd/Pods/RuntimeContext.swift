import CrispConfig
import CrispCore
import CrispIPC
import CrispLinux
import Foundation
import Logging
import SpecBuilder
import Synchronization

/// What the RuntimeService's calls share: configuration, the metadata store, the IPC
/// peers, and one lock per pod so that calls on one pod run one at a time.
final class RuntimeContext: Sendable {
  let config: CrispConfig
  let paths: CrispPaths
  let store: MetadataStore
  let peers: DaemonPeers
  let podLocks = KeyedLock(timeoutMs: 120_000)
  let containerLocks = KeyedLock(timeoutMs: 120_000)
  let shims: ShimClients
  /// When (wall clock, ns) the last sweep for orphans got both peers' answers; 0 before
  /// the first (shown in Status's verbose info).
  let orphansSweptAt = Atomic<Int64>(0)
  /// What each handler's runtime can do here, by handler name ("" is runc's).
  let handlerFeatures: [String: HandlerFeatures]
  /// Starts shimd and the runtime: frontd itself may not (see Launcher).
  let launcher: Launcher
  let logger: Logger

  init(config: CrispConfig, peers: DaemonPeers, launcher: Launcher, logger: Logger) throws(CrispError) {
    self.config = config
    self.launcher = launcher
    paths = config.paths
    self.peers = peers
    self.logger = logger
    try makeDirectories(paths.root, mode: 0o711)
    try makePrivateDirectory(paths.runRoot + "/pods")
    try makePrivateDirectory(paths.containersDir)
    store = try MetadataStore(path: paths.database)
    shims = ShimClients(paths: paths)
    var features: [String: HandlerFeatures] = [:]
    let kernel = KernelVersion(RuntimeService.kernelRelease())
    for handler in [""] + config.frontd.runtimeHandlers.keys.sorted() {
      guard let path = config.frontd.runtimePath(handler: handler) else { continue }
      features[handler] = HandlerFeatures.probe(runtimePath: path, kernel: kernel)
    }
    features["runc"] = features[""]
    handlerFeatures = features
  }

  /// The shimd executable: configured, or the one beside this cri-frontd.
  var shimdPath: String { Self.shimdPath(config) }

  static func shimdPath(_ config: CrispConfig) -> String {
    if !config.frontd.shimdPath.isEmpty { return config.frontd.shimdPath }
    return besideFrontd("shimd")
  }

  /// An executable installed beside this cri-frontd, by absolute path: it is bound
  /// into pods and handed to runc, whose working directory is not frontd's.
  static func besideFrontd(_ name: String) -> String {
    (ProcessControl.executableDirectory ?? "/usr/local/bin") + "/" + name
  }

  /// What crisp-launcher may run: shimd, every runtime handler's binary, and umount
  /// (to unmount a root filesystem a dead shim left).
  static func launchable(_ config: CrispConfig) -> [String] {
    [shimdPath(config), config.frontd.runtimePath]
      + config.frontd.runtimeHandlers.keys.sorted().compactMap {
        config.frontd.runtimeHandlers[$0]
      } + [umountPath]
  }

  static let umountPath = "/usr/bin/umount"

  /// Each runtime handler keeps its containers' state in its own directory (`--root`):
  /// runtimes do not share a state format.
  func runtimeRoot(handler: String) -> String {
    handler.isEmpty || handler == "runc" ? paths.runRoot + "/runc" : paths.runRoot + "/runtimes/" + handler
  }

  var pausePath: String {
    if !config.frontd.pausePath.isEmpty { return config.frontd.pausePath }
    return Self.besideFrontd("crisp-pause")
  }

  func resolveContainer(_ text: String) throws(CrispError) -> ContainerRecord? {
    guard !text.isEmpty else { throw CrispError(.invalidArgument, "container ID must not be empty") }
    if text.utf8.count == 64 { return try store.container(text) }
    let matches = try store.containerIDs(withPrefix: text)
    if matches.count > 1 {
      throw CrispError(.invalidArgument, "container ID prefix \"\(text)\" is ambiguous (\(matches.count) containers)")
    }
    return try matches.first.flatMap { id throws(CrispError) in try store.container(id) }
  }

  func withContainerLock<T: Sendable>(
    _ id: String, _ body: () async throws(CrispError) -> T
  ) async throws(CrispError) -> T {
    guard await containerLocks.acquire(id) else {
      throw CrispError(.unavailable, "container \(id.prefix(12)) is busy with another call; try again")
    }
    defer { containerLocks.release(id) }
    return try await body()
  }

  /// Deadline of a netd call that runs CNI plugins: longer than their own timeout.
  var networkTimeoutMs: Int32 { Int32(clamping: config.netd.cniPluginTimeoutMs * 2 + 5_000) }

  func podDirectory(_ id: String) -> String { paths.runRoot + "/pods/" + id }

  /// The pod an ID or unique ID prefix names; nil when none does.
  func resolvePod(_ text: String) throws(CrispError) -> PodRecord? {
    guard !text.isEmpty else { throw CrispError(.invalidArgument, "pod sandbox ID must not be empty") }
    if text.utf8.count == 64 { return try store.pod(text) }
    let matches = try store.podIDs(withPrefix: text)
    if matches.count > 1 {
      throw CrispError(.invalidArgument, "pod sandbox ID prefix \"\(text)\" is ambiguous (\(matches.count) pods)")
    }
    return try matches.first.flatMap { id throws(CrispError) in try store.pod(id) }
  }

  func withPodLock<T: Sendable>(_ id: String, _ body: () async throws(CrispError) -> T) async throws(CrispError) -> T {
    guard await podLocks.acquire(id) else {
      throw CrispError(.unavailable, "pod sandbox \(id.prefix(12)) is busy with another call; try again")
    }
    defer { podLocks.release(id) }
    return try await body()
  }

  /// Has imaged release the snapshots of containers this frontd does not know, and netd
  /// tear down the networks of pods it does not know (a create or removal whose undo
  /// could not reach them). Records are listed after `listedAt`, and the peers keep what
  /// they made after it: a RunPodSandbox or CreateContainer under way records its pod or
  /// container before it asks. False when either peer did not answer.
  @discardableResult
  func releaseOrphans() async -> Bool {
    let listedAt = WallClock.nowNanoseconds()
    var answered = true
    do throws(CrispError) {
      let containers = try store.containers().map(\.id)
      let reply = try await peers.imaged.call(
        SnapshotReconcile.self, .init(containerIDs: containers, listedAt: listedAt), timeoutMs: 600_000)
      if !reply.released.isEmpty {
        logger.info("imaged released snapshots no container owns", metadata: ["containers": "\(reply.released)"])
      }
    } catch {
      logger.debug("orphaned snapshots not checked", metadata: ["error": "\(error)"])
      answered = false
    }
    do throws(CrispError) {
      let pods = try store.pods().map(\.id)
      let reply = try await peers.netd.call(
        PodNetworkReconcile.self, .init(podIDs: pods, listedAt: listedAt), timeoutMs: networkTimeoutMs)
      if !reply.tornDown.isEmpty {
        logger.info("netd tore down networks no pod owns", metadata: ["pods": "\(reply.tornDown)"])
      }
    } catch {
      logger.debug("orphaned pod networks not checked", metadata: ["error": "\(error)"])
      answered = false
    }
    return answered
  }

  /// `releaseOrphans` every second until both peers have answered, then every ten
  /// minutes, until cancelled.
  func sweepOrphans() async {
    while !Task.isCancelled {
      let answered = await releaseOrphans()
      if answered { orphansSweptAt.store(WallClock.nowNanoseconds(), ordering: .relaxed) }
      do { try await Task.sleep(for: answered ? .seconds(600) : .seconds(1)) } catch { return }
    }
  }

  /// After a reboot nothing of the pods' runtime state is left: every pod is shown not
  /// ready (and can be stopped and removed); a RunPodSandbox cut off by a crash is undone.
  func reconcile() async {
    let bootID = readWholeFileOrEmpty("/proc/sys/kernel/random/boot_id").trimmingCharacters(in: .whitespacesAndNewlines)
    let previous = (try? store.value("boot_id")) ?? nil
    let rebooted = previous != nil && previous != bootID
    try? store.setValue(bootID, for: "boot_id")
    for pod in (try? store.pods()) ?? [] {
      if pod.state == .creating {
        logger.notice("undoing a pod sandbox whose creation was cut off", metadata: ["pod": "\(pod.id)"])
        if let infra = shims.client(pod.id) {
          _ = try? await infra.call(ShimDelete.self, Empty(), timeoutMs: 60_000)
          shims.forget(pod.id)
        }
        ContainerBundle(paths: paths, containerID: pod.id).remove()
        _ = try? await peers.netd.call(PodNetworkTeardown.self, .init(podID: pod.id), timeoutMs: networkTimeoutMs)
        PodFiles.remove(podDirectory(pod.id))
        try? store.deletePod(pod.id)
      } else if rebooted && pod.state == .ready {
        var stale = pod
        stale.state = .notReady
        try? store.updatePod(stale)
      }
    }
  }
}

func readWholeFileOrEmpty(_ path: String) -> String {
  guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
  defer { try? handle.close() }
  return String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
}

/// A random container or pod ID: 64 lower-case hex digits, as kubelet and crictl expect.
func newRuntimeID() -> String {
  var generator = SystemRandomNumberGenerator()
  return (0..<4).map { _ in
    let hex = String(generator.next() as UInt64, radix: 16)
    return String(repeating: "0", count: 16 - hex.count) + hex
  }.joined()
}
