import CRIAPI
import CrispCore
import GRPCCore

extension RuntimeService {
  /// Stops the pod's containers and tears down its network (`Sandboxes.stop`).
  /// Idempotent: an unknown or already stopped pod succeeds, as kubelet retries freely.
  func stopPodSandbox(request: Runtime_V1_StopPodSandboxRequest, context: ServerContext) async throws
    -> Runtime_V1_StopPodSandboxResponse
  {
    try await rpc { () async throws(CrispError) in
      guard let pod = try sandboxes.resolve(request.podSandboxID) else { return .init() }
      try await sandboxes.withLock(pod.id) { () async throws(CrispError) in
        try await sandboxes.stop(pod.id, containers: containers)
      }
      return .init()
    }
  }
}
