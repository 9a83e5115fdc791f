import CRIAPI
import CrispCore
import GRPCCore

extension RuntimeService {
  /// Filters: ID (or a prefix of one), pod, state, and labels that must all match.
  func listContainers(request: Runtime_V1_ListContainersRequest, context: ServerContext) async throws
    -> Runtime_V1_ListContainersResponse
  {
    try await rpc { () async throws(CrispError) in
      let filter = request.hasFilter ? request.filter : nil
      var podID: String? = nil
      if let wanted = filter?.podSandboxID, !wanted.isEmpty {
        guard let pod = try sandboxes.resolve(wanted) else { return .init() }
        podID = pod.id
      }
      let listed = containers.records.all { container in
        if let podID, container.podID != podID { return false }
        if let id = filter?.id, !id.isEmpty, !container.id.hasPrefix(id) { return false }
        if let selector = filter?.labelSelector, !selector.allSatisfy({ container.config.labels[$0.key] == $0.value }) {
          return false
        }
        return true
      }
      var response = Runtime_V1_ListContainersResponse()
      for view in await containers.views(listed) {
        if let filter, filter.hasState, filter.state.state != view.state { continue }
        let record = view.record
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
