import CRIAPI
import CrispCore
import CrispIPC
import CrispOCI
import Foundation
import SpecBuilder

/// The infra process of a pod whose containers share one PID namespace: `crisp-pause`
/// as PID 1 of a new PID namespace, in the pod's network, IPC and UTS namespaces. Only
/// such pods get one (ARCHITECTURE §2); the others pin their namespaces without a
/// process. It is run by a shimd like any container, under the pod's ID (bundle
/// `<run_root>/containers/<pod id>`), with no image: its root is an empty read-only
/// directory into which crisp-pause, a static executable, is bound.
extension Sandboxes {
  static let infraExecutable = "/crisp-pause"

  func startInfra(_ sandbox: Sandbox) async throws(CrispError) {
    let pause = launcher.pausePath
    guard access(pause, X_OK) == 0 else {
      throw CrispError(.failedPrecondition, "the pod's infra process \(pause) is missing (frontd pause_path)")
    }
    var container = Runtime_V1_ContainerConfig()
    container.metadata.name = "POD"
    container.image.image = "crisp-pause"
    container.command = [Self.infraExecutable]
    var security = Runtime_V1_LinuxContainerSecurityContext()
    security.runAsUser.value = 65535
    security.readonlyRootfs = true
    security.noNewPrivs = true
    security.capabilities.dropCapabilities = ["ALL"]
    security.namespaceOptions.pid = .container
    security.seccomp.profileType = .runtimeDefault
    container.linux.securityContext = security
    var binary = Runtime_V1_Mount()
    binary.containerPath = Self.infraExecutable
    binary.hostPath = pause
    binary.readonly = true
    container.mounts = [binary]

    let pod = sandbox.record
    var context = launcher.podContext(sandbox)
    context.pidNamespacePath = ""
    var built = try SpecBuilder.buildWithNotes(
      SpecInputs(
        containerID: pod.id, config: container, sandboxConfig: sandbox.config, image: ImageRuntimeConfig(),
        pod: context, options: try launcher.specOptions()))
    built.spec.annotations?["io.kubernetes.cri.container-type"] = "sandbox"
    built.spec.annotations?["io.kubernetes.cri.container-name"] = nil
    built.spec.annotations?["io.kubernetes.cri.image-name"] = nil

    try await launcher.launch(
      built.spec, rootfs: nil,
      shim: ShimLaunch(containerID: pod.id, bundleDirectory: "", logPath: "", handler: pod.runtimeHandler))
    guard let shim = monitors.monitor(pod.id) else {
      throw CrispError(.internal, "the pod's infra process has no shim after its launch")
    }
    _ = try await shim.start()
    logger.debug("pod infra process started", metadata: ["pod": "\(pod.id)"])
  }

  /// `/proc/<pid>/ns/pid` of the running infra process, or nil.
  func infraPIDNamespace(_ podID: String) async -> String? {
    guard let state = await monitors.state(podID), state.state == .running, state.pid > 0 else { return nil }
    return "/proc/\(state.pid)/ns/pid"
  }

  /// Kills the infra process (its PID namespace goes with it). Idempotent.
  func stopInfra(_ podID: String) async throws(CrispError) {
    guard let shim = monitors.monitor(podID) else { return }
    _ = try await shim.stop(timeoutSeconds: 0, signal: "SIGKILL")
  }

  /// Deletes the infra process and its bundle. Idempotent.
  func removeInfra(_ pod: PodRecord) async {
    let bundle = launcher.bundle(pod.id)
    if let shim = monitors.monitor(pod.id) {
      try? await shim.delete()
      monitors.forget(pod.id)
    } else if FileManager.default.fileExists(atPath: bundle.directory) {
      await launcher.shims.cleanUpAfterDeadShim(containerID: pod.id, handler: pod.runtimeHandler, rootfs: nil)
    }
    bundle.remove()
  }
}
