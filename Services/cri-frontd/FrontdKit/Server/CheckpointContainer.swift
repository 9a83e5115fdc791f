import CRIAPI
import CrispCore
import CrispIPC
import Foundation
import GRPCCore
import SpecBuilder

extension RuntimeService {
  /// Checkpoint and restore need CRIU (`runc checkpoint`), which crisp does not use:
  /// kubelet gets UNIMPLEMENTED, as from a runtime without the feature.
  func checkpointContainer(request: Runtime_V1_CheckpointContainerRequest, context: ServerContext) async throws
    -> Runtime_V1_CheckpointContainerResponse
  {
    throw RPCError(
      code: .unimplemented,
      message: "CheckpointContainer is not implemented by crisp: checkpoint and restore need CRIU "
        + "(runc checkpoint/restore), which crisp does not use")
  }
}
