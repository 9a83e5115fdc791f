import CRIAPI
import CrispConfig
import CrispCore
import CrispIPC
import CrispLinux
import CrispOCI
import Foundation
import SpecBuilder

/// What every container start shares, a pod's infra process included: the runtime
/// handlers and what each can do here, the node facts SpecBuilder's options hold, the
/// pod context a spec is built in, the bundle, and the shim launch.
final class ContainerLauncher: Sendable {
  let config: CrispConfig
  let paths: CrispPaths
  /// What each handler's runtime can do here, by handler name ("" and "runc" are runc's).
  let handlerFeatures: [String: HandlerFeatures]
  let shims: any ShimLauncher

  init(config: CrispConfig, shims: any ShimLauncher, handlerFeatures: [String: HandlerFeatures]) {
    self.config = config
    paths = config.paths
    self.shims = shims
    self.handlerFeatures = handlerFeatures
  }

  /// Probes every configured handler's runtime (`runc features`) and the kernel.
  static func probeHandlers(_ config: CrispConfig) -> [String: HandlerFeatures] {
    var features: [String: HandlerFeatures] = [:]
    let kernel = KernelVersion(kernelRelease())
    for handler in [""] + config.frontd.runtimeHandlers.keys.sorted() {
      guard let path = config.frontd.runtimePath(handler: handler) else { continue }
      features[handler] = HandlerFeatures.probe(runtimePath: path, kernel: kernel)
    }
    features["runc"] = features[""]
    return features
  }

  /// The names a RunPodSandbox may give as `runtime_handler`.
  var handlerNames: [String] { ["runc"] + config.frontd.runtimeHandlers.keys.sorted() }

  var pausePath: String {
    config.frontd.pausePath.isEmpty ? LauncherShims.besideFrontd("crisp-pause") : config.frontd.pausePath
  }

  func bundle(_ containerID: String) -> ContainerBundle { ContainerBundle(paths: paths, containerID: containerID) }

  func podDirectory(_ podID: String) -> String { paths.runRoot + "/pods/" + podID }

  /// The pod a container's spec is built in: its namespaces, its files, its cgroup parent.
  func podContext(_ sandbox: Sandbox) -> PodContext {
    let pod = sandbox.record
    let directory = podDirectory(pod.id)
    return PodContext(
      podID: pod.id, networkNamespacePath: pod.netns, ipcNamespacePath: pod.ipcns, utsNamespacePath: pod.utsns,
      resolvConfPath: directory + "/resolv.conf", hostnamePath: directory + "/hostname",
      hostsPath: directory + "/hosts", shmPath: sandbox.hostIPC ? "/dev/shm" : paths.podSharedMemory(pod.id),
      hostname: (Files.text(directory + "/hostname") ?? "").trimmingCharacters(in: .whitespacesAndNewlines),
      cgroupParent: sandbox.config.linux.cgroupParent)
  }

  /// What SpecBuilder takes from this node. `handler`: the pod's runtime handler, whose
  /// features the spec may use. Read at each call: the seccomp profile file and the
  /// launcher's capabilities may change while frontd runs.
  func specOptions(handler: String = "") throws(CrispError) -> SpecOptions {
    let profile = try ContainerSeccompProfile.load(path: config.frontd.seccompProfile)
    let ownOOM =
      Int((Files.text("/proc/self/oom_score_adj") ?? "").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    return SpecOptions(
      cgroupDriver: config.frontd.cgroupDriver == .systemd ? .systemd : .cgroupfs,
      cgroup: CgroupFeatures.detect(),
      grantableCapabilities: shims.grantableCapabilities(),
      defaultSeccompProfile: profile,
      seccompDefaultWhenUnset: config.frontd.seccompUseDefaultWhenEmpty,
      kernelVersion: KernelVersion(Self.kernelRelease()),
      minimumOOMScoreAdj: ownOOM,
      recursiveReadOnlyMounts: handlerFeatures[handler]?.recursiveReadOnlyMounts ?? false)
  }

  static func kernelRelease() -> String {
    var name = utsname()
    uname(&name)
    return withUnsafeBytes(of: name.release) { String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
  }

  /// Writes the bundle (`rootfs` nil: an empty root, for a pod's infra process) and
  /// starts the container's shim, which creates the container.
  func launch(
    _ spec: RuntimeSpec, rootfs: RootfsMount?, shim: ShimLaunch
  ) async throws(CrispError) {
    let bundle = bundle(shim.containerID)
    try bundle.write(spec: try SpecBuilder.encode(spec), rootfs: rootfs)
    var launch = shim
    launch.bundleDirectory = bundle.directory
    try await shims.launch(launch)
  }
}
