import CRIAPI

/// The gauges computed when `/metrics` is scraped: containers by state (as
/// ListContainers reports them), pods by state, and the shims that answer.
extension RuntimeService {
  func refreshMetricGauges() async {
    var byState: [Runtime_V1_ContainerState: Int] = [:]
    var pods: [Runtime_V1_PodSandboxState: Int] = [:]
    var shims = 0
    for sandbox in sandboxes.records.all() {
      pods[sandbox.criState, default: 0] += 1
      // Pods sharing one PID namespace have an infra process under a shim of their own.
      if await monitors.state(sandbox.id) != nil { shims += 1 }
    }
    // One question to each container's shim, all at once, as ListContainers asks.
    for view in await containers.views(containers.records.all()) {
      if view.monitorAnswered { shims += 1 }
      byState[view.state, default: 0] += 1
    }
    let containerStates: [(Runtime_V1_ContainerState, String)] = [
      (.containerCreated, "created"), (.containerRunning, "running"), (.containerExited, "exited"),
      (.containerUnknown, "unknown"),
    ]
    for (state, name) in containerStates {
      FrontdMetrics.set(.containers, byState[state] ?? 0, labels: [("state", name)])
    }
    FrontdMetrics.set(.pods, pods[.sandboxReady] ?? 0, labels: [("state", "ready")])
    FrontdMetrics.set(.pods, pods[.sandboxNotready] ?? 0, labels: [("state", "notready")])
    FrontdMetrics.set(.shims, shims)
  }
}
