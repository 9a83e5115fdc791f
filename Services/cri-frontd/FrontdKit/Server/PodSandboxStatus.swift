import CRIAPI
import CrispCore
import Foundation
import GRPCCore

extension RuntimeService {
  func podSandboxStatus(request: Runtime_V1_PodSandboxStatusRequest, context: ServerContext) async throws
    -> Runtime_V1_PodSandboxStatusResponse
  {
    try await rpc { () async throws(CrispError) in
      let sandbox = try sandbox(request.podSandboxID)
      var response = Runtime_V1_PodSandboxStatusResponse()
      response.status = Self.status(of: sandbox)
      if request.verbose {
        let pod = sandbox.record
        let info: [String: Any] = [
          "namespaces": ["network": pod.netns, "ipc": pod.ipcns, "uts": pod.utsns],
          "directory": launcher.podDirectory(pod.id),
        ]
        if let data = try? JSONSerialization.data(withJSONObject: info, options: [.sortedKeys]) {
          response.info["info"] = String(decoding: data, as: UTF8.self)
        }
      }
      return response
    }
  }

  /// The CRI status of a pod (PodSandboxStatus, and the container events).
  static func status(of sandbox: Sandbox) -> Runtime_V1_PodSandboxStatus {
    let pod = sandbox.record
    let config = sandbox.config
    var status = Runtime_V1_PodSandboxStatus()
    status.id = pod.id
    status.metadata = config.metadata
    status.state = sandbox.criState
    status.createdAt = pod.createdAt
    if let first = pod.ips.first {
      status.network.ip = first
      status.network.additionalIps = pod.ips.dropFirst().map {
        var ip = Runtime_V1_PodIP()
        ip.ip = $0
        return ip
      }
    }
    status.linux.namespaces.options = config.linux.securityContext.namespaceOptions
    status.labels = config.labels
    status.annotations = config.annotations
    status.runtimeHandler = pod.runtimeHandler
    return status
  }
}
