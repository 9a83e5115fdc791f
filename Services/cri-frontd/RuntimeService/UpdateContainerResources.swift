import CRIAPI
import CrispCore
import CrispIPC
import Foundation
import GRPCCore
import SpecBuilder

extension RuntimeService {
  /// New limits for a created or running container, applied by `runc update` (cgroup
  /// v1 or v2) and kept with the container, so ContainerStatus shows them.
  func updateContainerResources(request: Runtime_V1_UpdateContainerResourcesRequest, context: ServerContext)
    async throws -> Runtime_V1_UpdateContainerResourcesResponse
  {
    try await rpc { () async throws(CrispError) in
      guard let record = try runtime.resolveContainer(request.containerID) else {
        throw CrispError(.notFound, "container \"\(request.containerID)\" not found")
      }
      guard request.hasLinux else {
        throw CrispError(.invalidArgument, "UpdateContainerResources: linux resources are required")
      }
      let built = try SpecBuilder.resourceUpdate(request.linux, options: try specOptions())
      for note in built.notes { logger.debug("resources", metadata: ["container": "\(record.id)", "note": "\(note)"]) }
      let json: String
      do {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        json = String(decoding: try encoder.encode(built.resources), as: UTF8.self)
      } catch {
        throw CrispError(.internal, "cannot encode the resources: \(error)")
      }
      try await runtime.withContainerLock(record.id) { () async throws(CrispError) in
        guard let shim = runtime.shims.client(record.id) else {
          throw CrispError(.failedPrecondition, "container \(record.id) is not running: its monitor is gone")
        }
        _ = try await shim.call(ShimUpdateResources.self, .init(resources: json), timeoutMs: 40_000)
        var config = try Self.decodeContainerConfig(record)
        config.linux.resources = request.linux
        try runtime.store.updateContainerConfig(record.id, config: try Self.encode(config))
      }
      logger.info("container resources updated", metadata: ["container": "\(record.id)", "resources": "\(json)"])
      return .init()
    }
  }
}
