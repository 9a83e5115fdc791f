import CRIAPI
import CrispCore
import CrispIPC
import CrispLinux
import CrispOCI
import Foundation
import GRPCCore
import SpecBuilder

extension RuntimeService {
  /// Resolves the image through imaged, has it prepare the root filesystem, builds the
  /// OCI spec, writes the bundle, records the container, and launches its shimd,
  /// which mounts the root filesystem and runs `runc create`. Anything that fails
  /// undoes what was done before it.
  func createContainer(request: Runtime_V1_CreateContainerRequest, context: ServerContext) async throws
    -> Runtime_V1_CreateContainerResponse
  {
    try await rpc { () async throws(CrispError) in
      let config = request.config
      guard request.hasConfig, config.hasMetadata, !config.metadata.name.isEmpty else {
        throw CrispError(.invalidArgument, "CreateContainer: config.metadata.name is required")
      }
      guard config.hasImage, !config.image.image.isEmpty else {
        throw CrispError(.invalidArgument, "CreateContainer: config.image.image is required")
      }
      guard let named = try runtime.resolvePod(request.podSandboxID) else {
        throw CrispError(.notFound, "pod sandbox \"\(request.podSandboxID)\" not found")
      }
      // The pod's lock, as StopPodSandbox and RemovePodSandbox take it: a create racing a
      // removal would otherwise leave a shim and a container whose pod is gone.
      return try await runtime.withPodLock(named.id) { () async throws(CrispError) in
        try await createContainerLocked(request, podID: named.id)
      }
    }
  }

  private func createContainerLocked(_ request: Runtime_V1_CreateContainerRequest, podID: String)
    async throws(CrispError) -> Runtime_V1_CreateContainerResponse
  {
    let config = request.config
    guard let pod = try runtime.store.pod(podID) else {
      throw CrispError(.notFound, "pod sandbox \(podID) was removed")
    }
    guard pod.state == .ready else {
      throw CrispError(.failedPrecondition, "pod sandbox \(pod.id) is not ready")
    }
    let podConfig = try Self.decodePodConfig(pod)
    let status = try await peers.imaged.call(ImageStatus.self, .init(image: config.image.image))
    guard let image = status.image else {
      throw CrispError(.notFound, "image \"\(config.image.image)\" is not present; pull it first")
    }

    let id = newRuntimeID()
    let logPath = try Self.logPath(pod: pod, podConfig: podConfig, config: config, containerID: id, runtime: runtime)
    let record = ContainerRecord(
      id: id, podID: pod.id, name: config.metadata.name, attempt: config.metadata.attempt,
      image: config.image.image, imageID: image.id, createdAt: WallClock.nowNanoseconds(),
      config: try Self.encode(config), logPath: logPath, stopSignal: image.config.stopSignal)
    try runtime.store.insertContainer(record)
    let bundle = ContainerBundle(paths: runtime.paths, containerID: id)
    do throws(CrispError) {
      var context = podContext(pod, podConfig)
      let pidMode = config.linux.securityContext.namespaceOptions.pid
      if pidMode == .pod && Self.sharesPIDNamespace(podConfig) {
        guard let namespace = await infraPIDNamespace(pod.id) else {
          throw CrispError(.failedPrecondition, "pod sandbox \(pod.id): its infra process (PID 1) is not running")
        }
        context.pidNamespacePath = namespace
      }
      let target = pidMode == .target ? try await targetPIDNamespace(config, pod: pod) : ""
      let snapshot = try await peers.imaged.call(SnapshotPrepare.self, .init(containerID: id, image: image.id))
      let built = try SpecBuilder.buildWithNotes(
        SpecInputs(
          containerID: id, config: config, sandboxConfig: podConfig, image: image.config,
          pod: context, users: UserDatabase(passwd: snapshot.passwd, group: snapshot.group),
          options: try specOptions(handler: pod.runtimeHandler), targetPIDNamespacePath: target))
      for note in built.notes { logger.debug("spec", metadata: ["container": "\(id)", "note": "\(note)"]) }
      try bundle.write(spec: try SpecBuilder.encode(built.spec), rootfs: snapshot.mount)
      try await launchShim(
        id: id, bundle: bundle, logPath: logPath, logRoot: logRoot(podConfig: podConfig, config: config),
        handler: pod.runtimeHandler, tty: config.tty, stdin: config.stdin, stdinOnce: config.stdinOnce)
    } catch {
      logger.warning("container creation failed, undoing it", metadata: ["container": "\(id)", "error": "\(error)"])
      bundle.remove()
      _ = try? await peers.imaged.call(SnapshotRelease.self, .init(containerID: id))
      try? runtime.store.deleteContainer(id)
      throw error
    }
    logger.info(
      "container created",
      metadata: ["container": "\(id)", "pod": "\(pod.id)", "name": "\(record.name)", "image": "\(image.id)"])
    events.record(.created, record)
    var response = Runtime_V1_CreateContainerResponse()
    response.containerID = id
    return response
  }

  /// The PID namespace of the running container `target_id` names (ephemeral debug
  /// containers join it), which must be in the same pod.
  func targetPIDNamespace(_ config: Runtime_V1_ContainerConfig, pod: PodRecord) async throws(CrispError) -> String {
    let targetID = config.linux.securityContext.namespaceOptions.targetID
    guard !targetID.isEmpty else { return "" }  // SpecBuilder names the empty field.
    guard let target = try runtime.resolveContainer(targetID), target.podID == pod.id else {
      throw CrispError(
        .notFound, "linux.security_context.namespace_options.target_id: container \"\(targetID)\" not found in the pod")
    }
    guard let state = await runtime.shims.state(target.id), state.state == .running, state.pid > 0 else {
      throw CrispError(
        .failedPrecondition, "linux.security_context.namespace_options.target_id: container \(target.id) is not running"
      )
    }
    return "/proc/\(state.pid)/ns/pid"
  }

  /// The directory the container's log path is below (the pod's log directory, or
  /// `default_log_dir`): shimd follows no symlink between it and the file.
  func logRoot(podConfig: Runtime_V1_PodSandboxConfig, config: Runtime_V1_ContainerConfig) -> String {
    !podConfig.logDirectory.isEmpty && !config.logPath.isEmpty
      ? podConfig.logDirectory : runtime.config.frontd.defaultLogDir
  }

  /// `<pod log_directory>/<container log_path>` as kubelet asks, else
  /// `<default_log_dir>/<pod>/<container>.log`. shimd creates and writes it as root, so
  /// what a CRI client names stays below the log directory: an absolute directory and a
  /// relative log path, neither with `..`, and nothing below the directory a symlink
  /// (shimd also opens the file itself with O_NOFOLLOW).
  static func logPath(
    pod: PodRecord, podConfig: Runtime_V1_PodSandboxConfig, config: Runtime_V1_ContainerConfig, containerID: String,
    runtime: RuntimeContext
  ) throws(CrispError) -> String {
    guard !podConfig.logDirectory.isEmpty && !config.logPath.isEmpty else {
      return runtime.config.frontd.defaultLogDir + "/" + pod.id + "/" + containerID + ".log"
    }
    let directory = podConfig.logDirectory
    let relative = config.logPath
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
