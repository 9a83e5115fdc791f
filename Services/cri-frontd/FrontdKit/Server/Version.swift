import CRIAPI
import CrispCore
import GRPCCore

extension RuntimeService {
  func version(request: Runtime_V1_VersionRequest, context: ServerContext) async throws
    -> Runtime_V1_VersionResponse
  {
    var response = Runtime_V1_VersionResponse()
    // "version" is the kubelet runtime API version this answer is written against.
    response.version = "0.1.0"
    response.runtimeName = CrispVersion.runtimeName
    response.runtimeVersion = CrispVersion.string
    response.runtimeApiVersion = CrispVersion.criAPIVersion
    return response
  }
}
