import CRIAPI
import CrispCore
import GRPCCore

extension RuntimeService {
  /// The image's stop signal, then SIGKILL after `timeout` seconds (0: at once).
  /// Idempotent: a stopped, exited or unknown container succeeds.
  func stopContainer(request: Runtime_V1_StopContainerRequest, context: ServerContext) async throws
    -> Runtime_V1_StopContainerResponse
  {
    try await rpc { () async throws(CrispError) in
      guard request.timeout >= 0 else {
        throw CrispError(.invalidArgument, "StopContainer: timeout must not be negative, got \(request.timeout)")
      }
      guard let container = try containers.resolve(request.containerID) else { return .init() }
      try await containers.withLock(container.id) { () async throws(CrispError) in
        try await containers.stop(container, timeoutSeconds: request.timeout)
      }
      return .init()
    }
  }
}
