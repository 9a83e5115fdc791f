import CRIAPI
import CrispCore
import GRPCCore

extension RuntimeService {
  /// Kills the container if it runs, deletes it, releases its root filesystem and
  /// forgets it. Idempotent.
  func removeContainer(request: Runtime_V1_RemoveContainerRequest, context: ServerContext) async throws
    -> Runtime_V1_RemoveContainerResponse
  {
    try await rpc { () async throws(CrispError) in
      guard let container = try containers.resolve(request.containerID) else { return .init() }
      try await containers.withLock(container.id) { () async throws(CrispError) in
        // Removed meanwhile by another call that held the lock.
        guard let current = containers.records.get(container.id) else { return }
        try await containers.remove(current)
      }
      return .init()
    }
  }
}
