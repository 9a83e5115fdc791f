import CRIAPI
import CrispCore
import GRPCCore

extension RuntimeService {
  /// Stops the pod if it still runs, then deletes it, its containers and its files
  /// (`Sandboxes.remove`). Idempotent.
  func removePodSandbox(request: Runtime_V1_RemovePodSandboxRequest, context: ServerContext) async throws
    -> Runtime_V1_RemovePodSandboxResponse
  {
    try await rpc { () async throws(CrispError) in
      guard let pod = try sandboxes.resolve(request.podSandboxID) else { return .init() }
      try await sandboxes.withLock(pod.id) { () async throws(CrispError) in
        try await sandboxes.remove(pod.id, containers: containers)
      }
      return .init()
    }
  }
}
