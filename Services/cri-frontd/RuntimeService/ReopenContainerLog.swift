import CRIAPI
import CrispCore
import CrispIPC
import Foundation
import GRPCCore

extension RuntimeService {
  /// kubelet renamed the container's log file (rotation): the shim opens a new one at
  /// the old name.
  func reopenContainerLog(request: Runtime_V1_ReopenContainerLogRequest, context: ServerContext) async throws
    -> Runtime_V1_ReopenContainerLogResponse
  {
    try await rpc { () async throws(CrispError) in
      guard let record = try runtime.resolveContainer(request.containerID) else {
        throw CrispError(.notFound, "container \"\(request.containerID)\" not found")
      }
      guard let shim = runtime.shims.client(record.id) else {
        throw CrispError(.failedPrecondition, "container \(record.id) is not running")
      }
      _ = try await shim.call(ShimReopenLog.self, Empty())
      return .init()
    }
  }
}
