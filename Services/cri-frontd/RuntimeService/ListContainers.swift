import CRIAPI
import CrispCore
import CrispIPC
import Foundation
import GRPCCore

extension RuntimeService {
  func listContainers(request: Runtime_V1_ListContainersRequest, context: ServerContext) async throws
    -> Runtime_V1_ListContainersResponse
  {
    try await rpc { () async throws(CrispError) in
      let filter = request.hasFilter ? request.filter : nil
      var podID: String? = nil
      if let wanted = filter?.podSandboxID, !wanted.isEmpty {
        guard let pod = try runtime.resolvePod(wanted) else { return .init() }
        podID = pod.id
      }
      var response = Runtime_V1_ListContainersResponse()
      let records = try runtime.store.containers(podID: podID).filter { record in
        guard let id = filter?.id, !id.isEmpty else { return true }
        return record.id.hasPrefix(id)
      }
      for view in try await views(records) {
        let record = view.record
        if let filter, filter.hasState, filter.state.state != view.state { continue }
        if let selector = filter?.labelSelector, !selector.allSatisfy({ view.config.labels[$0.key] == $0.value }) {
          continue
        }
        var item = Runtime_V1_Container()
        item.id = record.id
        item.podSandboxID = record.podID
        item.metadata = view.config.metadata
        item.image = view.config.image
        item.imageRef = record.imageID
        item.imageID = record.imageID
        item.state = view.state
        item.createdAt = record.createdAt
        item.labels = view.config.labels
        item.annotations = view.config.annotations
        response.containers.append(item)
      }
      return response
    }
  }
}
