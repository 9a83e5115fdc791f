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
      guard let pod = try runtime.resolvePod(request.podSandboxID) else {
        throw CrispError(.notFound, "pod sandbox \"\(request.podSandboxID)\" not found")
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
      let logPath = Self.logPath(pod: pod, podConfig: podConfig, config: config, containerID: id, runtime: runtime)
      let record = ContainerRecord(
        id: id, podID: pod.id, name: config.metadata.name, attempt: config.metadata.attempt,
        image: config.image.image, imageID: image.id, createdAt: WallClock.nowNanoseconds(),
        config: try Self.encode(config), logPath: logPath, stopSignal: image.config.stopSignal)
      try runtime.store.insertContainer(record)
      let bundle = ContainerBundle(paths: runtime.paths, containerID: id)
      do throws(CrispError) {
        let snapshot = try await peers.imaged.call(SnapshotPrepare.self, .init(containerID: id, image: image.id))
        let built = try SpecBuilder.buildWithNotes(
          SpecInputs(
            containerID: id, config: config, sandboxConfig: podConfig, image: image.config,
            pod: podContext(pod, podConfig), users: UserDatabase(passwd: snapshot.passwd, group: snapshot.group),
            options: try specOptions()))
        for note in built.notes { logger.debug("spec", metadata: ["container": "\(id)", "note": "\(note)"]) }
        try bundle.write(spec: try SpecBuilder.encode(built.spec), rootfs: snapshot.mount)
        try await launchShim(id: id, bundle: bundle, logPath: logPath, config: config)
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
      var response = Runtime_V1_CreateContainerResponse()
      response.containerID = id
      return response
    }
  }

  func podContext(_ pod: PodRecord, _ config: Runtime_V1_PodSandboxConfig) -> PodContext {
    let dir = runtime.podDirectory(pod.id)
    let hostIPC = config.linux.securityContext.namespaceOptions.ipc == .node
    return PodContext(
      podID: pod.id, networkNamespacePath: pod.netns, ipcNamespacePath: pod.ipcns, utsNamespacePath: pod.utsns,
      resolvConfPath: dir + "/resolv.conf", hostnamePath: dir + "/hostname", hostsPath: dir + "/hosts",
      shmPath: hostIPC ? "/dev/shm" : dir + "/shm",
      hostname: readWholeFileOrEmpty(dir + "/hostname").trimmingCharacters(in: .whitespacesAndNewlines),
      cgroupParent: config.linux.cgroupParent)
  }

  func specOptions() throws(CrispError) -> SpecOptions {
    let profile = try ContainerSeccompProfile.load(path: runtime.config.frontd.seccompProfile)
    let ownOOM =
      Int(readWholeFileOrEmpty("/proc/self/oom_score_adj").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    let permitted = readWholeFileOrEmpty("/proc/self/status").split(separator: "\n")
      .first { $0.hasPrefix("CapPrm:") }.flatMap {
        UInt64($0.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16)
      }
    return SpecOptions(
      cgroupDriver: runtime.config.frontd.cgroupDriver == "systemd" ? .systemd : .cgroupfs,
      cgroup: CgroupFeatures.detect(),
      grantableCapabilities: permitted.map { KnownCapabilities.names(inMask: $0) },
      defaultSeccompProfile: profile, kernelVersion: KernelVersion(Self.kernelRelease()),
      minimumOOMScoreAdj: ownOOM)
  }

  static func kernelRelease() -> String {
    var name = utsname()
    uname(&name)
    return withUnsafeBytes(of: name.release) { String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
  }

  /// `<pod log_directory>/<container log_path>` as kubelet asks, else
  /// `<default_log_dir>/<pod>/<container>.log`.
  static func logPath(
    pod: PodRecord, podConfig: Runtime_V1_PodSandboxConfig, config: Runtime_V1_ContainerConfig, containerID: String,
    runtime: RuntimeContext
  ) -> String {
    if !podConfig.logDirectory.isEmpty && !config.logPath.isEmpty {
      return podConfig.logDirectory + "/" + config.logPath
    }
    return runtime.config.frontd.defaultLogDir + "/" + pod.id + "/" + containerID + ".log"
  }

  /// Runs `shimd --daemonize`, which answers once the container is created and the
  /// shim serves; the shim itself lives on detached, in its own session.
  func launchShim(
    id: String, bundle: ContainerBundle, logPath: String, config: Runtime_V1_ContainerConfig
  ) async throws(CrispError) {
    var arguments = [
      "--id", id, "--bundle", bundle.directory, "--run-root", runtime.paths.runRoot,
      "--runtime", runtime.config.frontd.runtimePath, "--log-path", logPath,
      "--events", CrispPaths.ipcAddress(runtime.paths.eventsSocket), "--log-level",
      runtime.config.shimd.logLevel.isEmpty ? runtime.config.logLevel : runtime.config.shimd.logLevel,
      "--daemonize",
    ]
    if config.tty { arguments.append("--tty") }
    if config.stdin { arguments.append("--stdin") }
    if config.stdinOnce { arguments.append("--stdin-once") }
    let output = try await ChildProcess.run(
      path: runtime.shimdPath, arguments: arguments, environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"],
      timeoutMs: 60_000)
    guard output.status == 0 else {
      let reason = String(decoding: output.stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
      throw CrispError(
        .internal,
        "container \(id) could not be created: " + (reason.isEmpty ? "shimd exited with \(output.status)" : reason))
    }
  }

  static func encode(_ config: Runtime_V1_ContainerConfig) throws(CrispError) -> [UInt8] {
    do {
      return try config.serializedBytes()
    } catch {
      throw CrispError(.invalidArgument, "container config cannot be encoded: \(error)")
    }
  }

  static func decodeContainerConfig(_ record: ContainerRecord) throws(CrispError) -> Runtime_V1_ContainerConfig {
    do {
      return try Runtime_V1_ContainerConfig(serializedBytes: record.config)
    } catch {
      throw CrispError(.internal, "stored config of container \(record.id) cannot be decoded: \(error)")
    }
  }
}
