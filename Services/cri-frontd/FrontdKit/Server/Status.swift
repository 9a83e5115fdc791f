import CRIAPI
import CrispCore
import CrispDaemon
import CrispIPC
import Foundation
import GRPCCore

extension RuntimeService {
  /// RuntimeReady follows imaged (no container can be created without an image
  /// store), NetworkReady follows netd and its CNI configuration. Both are asked live,
  /// concurrently, with a short deadline, so Status never hangs on a dead daemon.
  func status(request: Runtime_V1_StatusRequest, context: ServerContext) async throws
    -> Runtime_V1_StatusResponse
  {
    async let imaged = health(of: peers.imaged)
    async let netd = health(of: peers.netd)
    let (imagedHealth, netdHealth) = await (imaged, netd)

    var runtime = Runtime_V1_RuntimeCondition()
    runtime.type = "RuntimeReady"
    switch imagedHealth {
    case .success(let health) where health.ready:
      runtime.status = true
    case .success(let health):
      runtime.status = false
      runtime.reason = health.reason ?? "ImageDaemonNotReady"
      runtime.message = health.message ?? "imaged is not ready"
    case .failure(let error):
      runtime.status = false
      runtime.reason = "ImageDaemonUnavailable"
      runtime.message = error.message
    }

    var network = Runtime_V1_RuntimeCondition()
    network.type = "NetworkReady"
    switch netdHealth {
    case .success(let health) where health.ready:
      network.status = true
    case .success(let health):
      network.status = false
      network.reason = health.reason ?? "NetworkPluginNotReady"
      network.message = health.message ?? "netd is not ready"
    case .failure(let error):
      network.status = false
      network.reason = "NetworkPluginNotReady"
      network.message = error.message
    }

    var response = Runtime_V1_StatusResponse()
    response.status.conditions = [runtime, network]
    // The default handler ("") is runc. Recursive read-only mounts where the handler's
    // runtime and the kernel can (probed at start); user namespaces are not offered.
    response.runtimeHandlers = ([""] + ["runc"] + self.launcher.config.frontd.runtimeHandlers.keys.sorted()).map {
      var handler = Runtime_V1_RuntimeHandler()
      handler.name = $0
      handler.features = Runtime_V1_RuntimeHandlerFeatures()
      handler.features.recursiveReadOnlyMounts = self.launcher.handlerFeatures[$0]?.recursiveReadOnlyMounts ?? false
      return handler
    }
    // SpecBuilder applies supplemental_groups_policy (Merge, Strict), and ContainerStatus
    // reports the groups the process really has.
    response.features.supplementalGroupsPolicy = true
    if request.verbose {
      response.info = [
        "cri-frontd": Self.describe(
          [
            "version": CrispVersion.string, "pid": Int(getpid()), "uptimeSeconds": identity.uptimeSeconds,
            "orphansSweptAt": Int(self.sweep.sweptAt.load(ordering: .relaxed)),
          ]),
        "imaged": Self.describe(imagedHealth),
        "netd": Self.describe(netdHealth),
        "features": Self.describe(
          self.launcher.handlerFeatures.filter { !$0.value.reasons.isEmpty }.mapValues { $0.reasons }),
      ]
    }
    return response
  }

  private func health(of client: IPCClient) async -> Result<Health.Response, CrispError> {
    do {
      return .success(try await client.call(Health.self, timeoutMs: healthTimeoutMs))
    } catch {
      return .failure(error)
    }
  }

  private static func describe(_ result: Result<Health.Response, CrispError>) -> String {
    switch result {
    case .success(let health):
      var fields: [String: Any] = [
        "version": health.version, "pid": Int(health.pid), "uptimeSeconds": health.uptimeSeconds,
        "ready": health.ready,
      ]
      if let reason = health.reason { fields["reason"] = reason }
      if let message = health.message { fields["message"] = message }
      return describe(fields)
    case .failure(let error):
      return describe(["reachable": false, "error": error.message])
    }
  }

  private static func describe(_ fields: [String: Any]) -> String {
    guard
      let data = try? JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys, .withoutEscapingSlashes])
    else { return "{}" }
    return String(decoding: data, as: UTF8.self)
  }
}
