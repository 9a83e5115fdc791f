import CRIAPI
import CrispCore
import GRPCCore

extension RuntimeService {
  /// Validates the pod and the ports and answers the streaming server's URL; each
  /// connection the client opens there is a TCP connection to 127.0.0.1:<port> inside
  /// the pod's network namespace, made by netd.
  func portForward(request: Runtime_V1_PortForwardRequest, context: ServerContext) async throws
    -> Runtime_V1_PortForwardResponse
  {
    try await rpc { () async throws(CrispError) in
      let pod = try sandbox(request.podSandboxID).record
      guard pod.state == .ready else {
        throw CrispError(.failedPrecondition, "PortForward: pod sandbox \(pod.id) is not ready")
      }
      var ports: [UInt16] = []
      for port in request.port {
        guard (1...65535).contains(port) else {
          throw CrispError(.invalidArgument, "PortForward: port \(port) is not in 1...65535")
        }
        ports.append(UInt16(port))
      }
      var response = Runtime_V1_PortForwardResponse()
      response.url = try streamURL(.portForward(podID: pod.id, ports: ports))
      return response
    }
  }
}
