import CRIAPI
import CrispCore
import Foundation
import GRPCCore

extension RuntimeService {
  /// Checks the request and runs the pod (`Sandboxes.run`).
  func runPodSandbox(request: Runtime_V1_RunPodSandboxRequest, context: ServerContext) async throws
    -> Runtime_V1_RunPodSandboxResponse
  {
    try await rpc { () async throws(CrispError) in
      let config = request.config
      guard request.hasConfig, config.hasMetadata else {
        throw CrispError(.invalidArgument, "RunPodSandbox: config.metadata is required")
      }
      let metadata = config.metadata
      for (field, value) in [("name", metadata.name), ("namespace", metadata.namespace), ("uid", metadata.uid)]
      where value.isEmpty {
        throw CrispError(.invalidArgument, "RunPodSandbox: config.metadata.\(field) must not be empty")
      }
      guard let runtimePath = launcher.config.frontd.runtimePath(handler: request.runtimeHandler) else {
        throw CrispError(
          .invalidArgument,
          "RunPodSandbox: unknown runtime_handler \"\(request.runtimeHandler)\" (crisp has: "
            + launcher.handlerNames.joined(separator: ", ") + ")")
      }
      guard access(runtimePath, X_OK) == 0 else {
        throw CrispError(
          .failedPrecondition,
          "RunPodSandbox: runtime_handler \"\(request.runtimeHandler)\": \(runtimePath) is not an executable")
      }
      let namespaces = config.linux.securityContext.namespaceOptions
      if namespaces.hasUsernsOptions && namespaces.usernsOptions.mode == .pod {
        throw CrispError(.unimplemented, "RunPodSandbox: user namespaces are not supported")
      }
      var hostname = config.hostname
      if namespaces.network == .node || hostname.isEmpty {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        hostname = buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
      }
      var response = Runtime_V1_RunPodSandboxResponse()
      response.podSandboxID = try await sandboxes.run(
        .init(
          config: config, handler: request.runtimeHandler.isEmpty ? "runc" : request.runtimeHandler,
          hostname: hostname))
      return response
    }
  }
}
