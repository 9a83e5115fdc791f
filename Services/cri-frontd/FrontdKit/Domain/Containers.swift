import CRIAPI
import CrispConfig
import CrispCore
import CrispIPC
import Foundation
import Logging
import SpecBuilder

/// The node's containers: their records (in memory, written through to the metadata
/// database), one lock per container, and their lifecycle: create, start, stop,
/// remove, new resources. A container's live state is its monitor's (`view`).
final class Containers: Sendable {
  let records: RecordTable<Container>
  private let store: MetadataStore
  private let locks = KeyedLock(timeoutMs: 120_000)
  let sandboxes: Sandboxes
  let images: any ImageStore
  let monitors: any ContainerMonitors
  let launcher: ContainerLauncher
  /// Container events for GetContainerEvents subscribers.
  let events: ContainerEventHub
  let logger: Logger

  init(
    store: MetadataStore, sandboxes: Sandboxes, images: any ImageStore, events: ContainerEventHub, logger: Logger
  ) throws(CrispError) {
    self.store = store
    var loaded: [Container] = []
    for record in try store.containers() {
      do throws(CrispError) {
        loaded.append(try Container(record: record))
      } catch {
        // As for pods: the container can still be listed, stopped and removed.
        logger.error(
          "container kept without its config", metadata: ["container": "\(record.id)", "error": "\(error)"])
        loaded.append(Container(record: record, config: Runtime_V1_ContainerConfig()))
      }
    }
    records = RecordTable(kind: "container", kinds: "containers", loaded: loaded)
    self.sandboxes = sandboxes
    self.images = images
    monitors = sandboxes.monitors
    launcher = sandboxes.launcher
    self.events = events
    self.logger = logger
  }

  /// The container an ID or unique ID prefix names; nil when none does.
  func resolve(_ text: String) throws(CrispError) -> Container? { try records.resolve(text) }

  func withLock<T: Sendable>(_ id: String, _ body: () async throws(CrispError) -> T) async throws(CrispError) -> T {
    guard await locks.acquire(id) else {
      throw CrispError(.unavailable, "container \(id.prefix(12)) is busy with another call; try again")
    }
    defer { locks.release(id) }
    return try await body()
  }

  // MARK: Lifecycle

  /// Resolves the image through imaged, has it prepare the root filesystem, builds the
  /// OCI spec, writes the bundle, records the container, and launches its shimd,
  /// which mounts the root filesystem and runs `runc create`. Anything that fails
  /// undoes what was done before it. Holds the pod's lock, as StopPodSandbox and
  /// RemovePodSandbox do: a create racing a removal would otherwise leave a shim and a
  /// container whose pod is gone. Answers the container's ID.
  func create(inPod podID: String, _ config: Runtime_V1_ContainerConfig) async throws(CrispError) -> String {
    try await sandboxes.withLock(podID) { () async throws(CrispError) in
      guard let sandbox = sandboxes.records.get(podID) else {
        throw CrispError(.notFound, "pod sandbox \(podID) was removed")
      }
      return try await create(in: sandbox, config)
    }
  }

  private func create(in sandbox: Sandbox, _ config: Runtime_V1_ContainerConfig) async throws(CrispError) -> String {
    let pod = sandbox.record
    guard pod.state == .ready else {
      throw CrispError(.failedPrecondition, "pod sandbox \(pod.id) is not ready")
    }
    guard let image = try await images.image(named: config.image.image) else {
      throw CrispError(.notFound, "image \"\(config.image.image)\" is not present; pull it first")
    }
    let id = newRuntimeID()
    let logPath = try Self.logPath(
      sandbox, config, containerID: id, defaultLogDir: launcher.config.frontd.defaultLogDir)
    let container = Container(
      record: ContainerRecord(
        id: id, podID: pod.id, name: config.metadata.name, attempt: config.metadata.attempt,
        image: config.image.image, imageID: image.id, createdAt: WallClock.nowNanoseconds(),
        config: try config.encoded(), logPath: logPath, stopSignal: image.config.stopSignal),
      config: config)
    // Recorded before anything is made: the orphan sweep keeps what a recorded
    // container owns, and releases what a create cut off by a crash left.
    try store.insertContainer(container.record)
    records.put(container)
    do throws(CrispError) {
      var context = launcher.podContext(sandbox)
      let pidMode = config.linux.securityContext.namespaceOptions.pid
      if pidMode == .pod && sandbox.sharesPIDNamespace {
        guard let namespace = await sandboxes.infraPIDNamespace(pod.id) else {
          throw CrispError(.failedPrecondition, "pod sandbox \(pod.id): its infra process (PID 1) is not running")
        }
        context.pidNamespacePath = namespace
      }
      let target = pidMode == .target ? try await targetPIDNamespace(config, podID: pod.id) : ""
      let snapshot = try await images.prepareSnapshot(containerID: id, image: image.id)
      let built = try SpecBuilder.buildWithNotes(
        SpecInputs(
          containerID: id, config: config, sandboxConfig: sandbox.config, image: image.config,
          pod: context, users: UserDatabase(passwd: snapshot.passwd, group: snapshot.group),
          options: try launcher.specOptions(handler: pod.runtimeHandler), targetPIDNamespacePath: target))
      for note in built.notes { logger.debug("spec", metadata: ["container": "\(id)", "note": "\(note)"]) }
      try await launcher.launch(
        built.spec, rootfs: snapshot.mount,
        shim: ShimLaunch(
          containerID: id, bundleDirectory: "", logPath: logPath,
          logRoot: Self.logRoot(sandbox, config, defaultLogDir: launcher.config.frontd.defaultLogDir),
          handler: pod.runtimeHandler, tty: config.tty, stdin: config.stdin, stdinOnce: config.stdinOnce))
    } catch {
      logger.warning("container creation failed, undoing it", metadata: ["container": "\(id)", "error": "\(error)"])
      launcher.bundle(id).remove()
      try? await images.releaseSnapshot(containerID: id)
      try? delete(id)
      throw error
    }
    logger.info(
      "container created",
      metadata: ["container": "\(id)", "pod": "\(pod.id)", "name": "\(container.record.name)", "image": "\(image.id)"])
    events.record(.created, container.record)
    return id
  }

  func start(_ container: Container) async throws(CrispError) {
    try await withLock(container.id) { () async throws(CrispError) in
      guard let shim = monitors.monitor(container.id) else {
        throw CrispError(.failedPrecondition, "container \(container.id) has no monitor left; remove it")
      }
      let state = try await shim.start()
      monitors.observe(container.id, state)
      events.record(.started, container.record, at: state.startedAt)
    }
    logger.info("container started", metadata: ["container": "\(container.id)"])
  }

  /// The image's stop signal, then SIGKILL after `timeoutSeconds` (0: at once).
  /// Idempotent: a stopped, exited or unknown container succeeds. Must be called with
  /// the container's lock held.
  func stop(_ container: Container, timeoutSeconds: Int64) async throws(CrispError) {
    guard let shim = monitors.monitor(container.id) else { return }
    let state = try await shim.stop(timeoutSeconds: timeoutSeconds, signal: container.record.stopSignal)
    monitors.observe(container.id, state)
    if state.state == .exited {
      events.record(.stopped, container.record, at: state.finishedAt, exit: state)
    }
    logger.info("container stopped", metadata: ["container": "\(container.id)"])
  }

  /// Kills the container if it runs, deletes it from its runtime (through its shim,
  /// which then exits), releases its root filesystem and forgets it. Idempotent. Must be
  /// called with the container's lock held.
  func remove(_ container: Container) async throws(CrispError) {
    let bundle = launcher.bundle(container.id)
    if let shim = monitors.monitor(container.id) {
      try await shim.delete()
    } else {
      // No shim (it died): delete what the runtime may still hold, best effort.
      let handler = sandboxes.records.get(container.podID)?.record.runtimeHandler ?? "runc"
      await launcher.shims.cleanUpAfterDeadShim(
        containerID: container.id, handler: handler, rootfs: bundle.layout.rootfs)
    }
    monitors.forget(container.id)
    bundle.remove()
    try await images.releaseSnapshot(containerID: container.id)
    try delete(container.id)
    logger.info("container removed", metadata: ["container": "\(container.id)"])
    events.record(.deleted, container.record)
  }

  /// Applies new limits (`runc update`, through the shim) and keeps them with the
  /// container, so that ContainerStatus shows them.
  func updateResources(
    _ container: Container, _ resources: Runtime_V1_LinuxContainerResources, json: String
  ) async throws(CrispError) {
    try await withLock(container.id) { () async throws(CrispError) in
      guard let shim = monitors.monitor(container.id) else {
        throw CrispError(.failedPrecondition, "container \(container.id) is not running: its monitor is gone")
      }
      try await shim.updateResources(json: json)
      guard var current = records.get(container.id) else { return }
      current.config.linux.resources = resources
      let encoded = try current.config.encoded()
      try store.updateContainerConfig(current.id, config: encoded)
      current.record.config = encoded
      records.put(current)
    }
  }

  private func delete(_ id: String) throws(CrispError) {
    try store.deleteContainer(id)
    records.remove(id)
  }

  /// The PID namespace of the running container `target_id` names (ephemeral debug
  /// containers join it), which must be in the same pod.
  func targetPIDNamespace(_ config: Runtime_V1_ContainerConfig, podID: String) async throws(CrispError) -> String {
    let targetID = config.linux.securityContext.namespaceOptions.targetID
    guard !targetID.isEmpty else { return "" }  // SpecBuilder names the empty field.
    guard let target = try resolve(targetID), target.podID == podID else {
      throw CrispError(
        .notFound, "linux.security_context.namespace_options.target_id: container \"\(targetID)\" not found in the pod")
    }
    guard let state = await monitors.state(target.id), state.state == .running, state.pid > 0 else {
      throw CrispError(
        .failedPrecondition, "linux.security_context.namespace_options.target_id: container \(target.id) is not running"
      )
    }
    return "/proc/\(state.pid)/ns/pid"
  }

  /// The directory the container's log path is below (the pod's log directory, or
  /// `default_log_dir`): shimd follows no symlink between it and the file.
  static func logRoot(_ sandbox: Sandbox, _ config: Runtime_V1_ContainerConfig, defaultLogDir: String) -> String {
    !sandbox.config.logDirectory.isEmpty && !config.logPath.isEmpty ? sandbox.config.logDirectory : defaultLogDir
  }

  /// `<pod log_directory>/<container log_path>` as kubelet asks, else
  /// `<default_log_dir>/<pod>/<container>.log`. shimd creates and writes it as root, so
  /// what a CRI client names stays below the log directory: an absolute directory and a
  /// relative log path, neither with `..`, and nothing below the directory a symlink
  /// (shimd also opens the file itself with O_NOFOLLOW).
  static func logPath(
    _ sandbox: Sandbox, _ config: Runtime_V1_ContainerConfig, containerID: String, defaultLogDir: String
  ) throws(CrispError) -> String {
    let directory = sandbox.config.logDirectory
    let relative = config.logPath
    guard !directory.isEmpty && !relative.isEmpty else {
      return defaultLogDir + "/" + sandbox.id + "/" + containerID + ".log"
    }
    let climbs = { (path: String) in path.split(separator: "/").contains("..") }
    guard directory.hasPrefix("/"), !climbs(directory) else {
      throw CrispError(
        .invalidArgument, "pod log_directory \"\(directory)\" must be an absolute path without \"..\"")
    }
    guard !relative.hasPrefix("/"), !climbs(relative), !relative.contains("\0") else {
      throw CrispError(
        .invalidArgument, "log_path \"\(relative)\" must be a relative path below log_directory, without \"..\"")
    }
    var below = directory
    for component in relative.split(separator: "/") {
      below += "/" + component
      var info = stat()
      guard lstat(below, &info) == 0 else { break }
      guard info.st_mode & S_IFMT != S_IFLNK else {
        throw CrispError(.invalidArgument, "log_path \"\(relative)\": \(below) is a symlink")
      }
    }
    return directory + "/" + relative
  }
}
