import CRIAPI
import CrispCore
import GRPCCore

extension RuntimeService {
  /// Checks the request and creates the container in its pod (`Containers.create`).
  func createContainer(request: Runtime_V1_CreateContainerRequest, context: ServerContext) async throws
    -> Runtime_V1_CreateContainerResponse
  {
    try await rpc { () async throws(CrispError) in
      let config = request.config
      guard request.hasConfig, config.hasMetadata, !config.metadata.name.isEmpty else {
        throw CrispError(.invalidArgument, "CreateContainer: config.metadata.name is required")
      }
      guard config.hasImage, !config.image.image.isEmpty else {
        throw CrispError(.invalidArgument, "CreateContainer: config.image.image is required")
      }
      let pod = try sandbox(request.podSandboxID)
      var response = Runtime_V1_CreateContainerResponse()
      response.containerID = try await containers.create(inPod: pod.id, config)
      return response
    }
  }
}
