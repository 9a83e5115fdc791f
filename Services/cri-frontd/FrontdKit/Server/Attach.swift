import CRIAPI
import CrispCore
import GRPCCore

extension RuntimeService {
  /// Validates the request and answers the streaming server's URL for it; the client
  /// is attached to the container's own stdio (held by its shim) when it connects.
  func attach(request: Runtime_V1_AttachRequest, context: ServerContext) async throws -> Runtime_V1_AttachResponse {
    try await rpc { () async throws(CrispError) in
      let options = try Self.streamOptions(
        "Attach", stdin: request.stdin, stdout: request.stdout, stderr: request.stderr, tty: request.tty)
      let id = try await runningContainerID("Attach", request.containerID)
      var response = Runtime_V1_AttachResponse()
      response.url = try streamURL(.attach(containerID: id, options: options))
      return response
    }
  }
}
