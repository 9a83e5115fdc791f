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
      let container = try container(request.containerID)
      let record = container.record
      guard request.hasLinux else {
        throw CrispError(.invalidArgument, "UpdateContainerResources: linux resources are required")
      }
      let built = try SpecBuilder.resourceUpdate(request.linux, options: try launcher.specOptions())
      for note in built.notes { logger.debug("resources", metadata: ["container": "\(record.id)", "note": "\(note)"]) }
      let json: String
      do {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        json = String(decoding: try encoder.encode(built.resources), as: UTF8.self)
      } catch {
        throw CrispError(.internal, "cannot encode the resources: \(error)")
      }
      try await containers.updateResources(container, request.linux, json: json)
      logger.info("container resources updated", metadata: ["container": "\(record.id)", "resources": "\(json)"])
      return .init()
    }
  }
}
