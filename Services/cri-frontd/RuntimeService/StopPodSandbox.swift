import CRIAPI
import CrispCore
import CrispIPC
import GRPCCore

extension RuntimeService {
  /// Stops the pod's containers, runs CNI DEL (netd does so from its cache, also after
  /// restarts) and has netd unpin its namespaces and unmount its /dev/shm. Idempotent: an unknown or already
  /// stopped pod succeeds, as kubelet retries freely.
  func stopPodSandbox(request: Runtime_V1_StopPodSandboxRequest, context: ServerContext) async throws
    -> Runtime_V1_StopPodSandboxResponse
  {
    try await rpc { () async throws(CrispError) in
      guard let pod = try runtime.resolvePod(request.podSandboxID) else { return .init() }
      try await runtime.withPodLock(pod.id) { () async throws(CrispError) in try await stopPod(pod) }
      return .init()
    }
  }

  /// Must be called with the pod's lock held.
  func stopPod(_ pod: PodRecord) async throws(CrispError) {
    guard let current = try runtime.store.pod(pod.id) else { return }
    for container in try runtime.store.containers(podID: pod.id) {
      try await runtime.withContainerLock(container.id) { () async throws(CrispError) in
        try await stop(container, timeoutSeconds: 0)
      }
    }
    try await stopInfra(pod.id)
    _ = try await FrontdMetrics.timeNetwork(.del) { () async throws(CrispError) in
      try await peers.netd.call(PodNetworkTeardown.self, .init(podID: pod.id), timeoutMs: runtime.networkTimeoutMs)
    }
    if current.state != .notReady {
      var stopped = current
      stopped.state = .notReady
      try runtime.store.updatePod(stopped)
      logger.info("pod sandbox stopped", metadata: ["pod": "\(pod.id)"])
    }
  }
}
