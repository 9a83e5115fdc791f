import CRIAPI
import CrispCore
import GRPCCore

extension RuntimeService {
  /// Stops the pod if it still runs, then deletes it and its files. Idempotent.
  func removePodSandbox(request: Runtime_V1_RemovePodSandboxRequest, context: ServerContext) async throws
    -> Runtime_V1_RemovePodSandboxResponse
  {
    try await rpc { () async throws(CrispError) in
      guard let pod = try runtime.resolvePod(request.podSandboxID) else { return .init() }
      try await runtime.withPodLock(pod.id) { () async throws(CrispError) in
        try await stopPod(pod)
        for container in try runtime.store.containers(podID: pod.id) {
          try await runtime.withContainerLock(container.id) { () async throws(CrispError) in
            try await remove(container)
          }
        }
        await removeInfra(pod)
        PodFiles.remove(runtime.podDirectory(pod.id))
        try runtime.store.deletePod(pod.id)
        logger.info("pod sandbox removed", metadata: ["pod": "\(pod.id)"])
      }
      return .init()
    }
  }
}
