import CRIAPI
import CrispCore
import GRPCCore

extension RuntimeService {
  func startContainer(request: Runtime_V1_StartContainerRequest, context: ServerContext) async throws
    -> Runtime_V1_StartContainerResponse
  {
    try await rpc { () async throws(CrispError) in
      try await containers.start(try container(request.containerID))
      return .init()
    }
  }
}
