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
      let record = try container(request.containerID).record
      guard let shim = monitors.monitor(record.id) else {
        throw CrispError(.failedPrecondition, "container \(record.id) is not running")
      }
      try await shim.reopenLog()
      return .init()
    }
  }
}
