import CRIAPI
import CrispCore
import CrispIPC
import GRPCCore

extension RuntimeService {
  func startContainer(request: Runtime_V1_StartContainerRequest, context: ServerContext) async throws
    -> Runtime_V1_StartContainerResponse
  {
    try await rpc { () async throws(CrispError) in
      guard let record = try runtime.resolveContainer(request.containerID) else {
        throw CrispError(.notFound, "container \"\(request.containerID)\" not found")
      }
      try await runtime.withContainerLock(record.id) { () async throws(CrispError) in
        guard let shim = runtime.shims.client(record.id) else {
          throw CrispError(.failedPrecondition, "container \(record.id) has no monitor left; remove it")
        }
        let state = try await shim.call(ShimStart.self, Empty(), timeoutMs: 60_000)
        events.record(.started, record, at: state.startedAt)
      }
      logger.info("container started", metadata: ["container": "\(record.id)"])
      return .init()
    }
  }
}
