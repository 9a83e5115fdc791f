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
      for pod in try runtime.store.pods() {
        if let id = filter?.id, !id.isEmpty, !pod.id.hasPrefix(id) { continue }
        let state: Runtime_V1_PodSandboxState = pod.state == .ready ? .sandboxReady : .sandboxNotready
        if let filter, filter.hasState, filter.state.state != state { continue }
        let config = try Self.decodePodConfig(pod)
        if let selector = filter?.labelSelector, !selector.allSatisfy({ config.labels[$0.key] == $0.value }) {
          continue
        }
        var item = Runtime_V1_PodSandbox()
        item.id = pod.id
        item.metadata = config.metadata
        item.state = state
        item.createdAt = pod.createdAt
        item.labels = config.labels
        item.annotations = config.annotations
        item.runtimeHandler = pod.runtimeHandler
        response.items.append(item)
      }
      return response
    }
  }
}
