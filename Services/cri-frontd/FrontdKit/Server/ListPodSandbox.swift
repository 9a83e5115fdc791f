import CRIAPI
import CrispCore
import GRPCCore

extension RuntimeService {
  /// Filters: ID (or a prefix of one), state, and labels that must all match.
  func listPodSandbox(request: Runtime_V1_ListPodSandboxRequest, context: ServerContext) async throws
    -> Runtime_V1_ListPodSandboxResponse
  {
    try await rpc { () async throws(CrispError) in
      let filter = request.hasFilter ? request.filter : nil
      var response = Runtime_V1_ListPodSandboxResponse()
      for sandbox in sandboxes.records.all() {
        if let id = filter?.id, !id.isEmpty, !sandbox.id.hasPrefix(id) { continue }
        if let filter, filter.hasState, filter.state.state != sandbox.criState { continue }
        let config = sandbox.config
        if let selector = filter?.labelSelector, !selector.allSatisfy({ config.labels[$0.key] == $0.value }) {
          continue
        }
        var item = Runtime_V1_PodSandbox()
        item.id = sandbox.id
        item.metadata = config.metadata
        item.state = sandbox.criState
        item.createdAt = sandbox.createdAt
        item.labels = config.labels
        item.annotations = config.annotations
        item.runtimeHandler = sandbox.record.runtimeHandler
        response.items.append(item)
      }
      return response
    }
  }
}
