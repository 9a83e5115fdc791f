import CRIAPI
import CrispCore
import CrispIPC
import Foundation
import GRPCCore
import SpecBuilder

extension RuntimeService {
  /// kubelet owns the pod-level cgroup (it creates `cgroup_parent` itself), and crisp
  /// runs no pod-level process to confine: the resources are checked and logged; the
  /// containers' own limits come through UpdateContainerResources.
  func updatePodSandboxResources(request: Runtime_V1_UpdatePodSandboxResourcesRequest, context: ServerContext)
    async throws -> Runtime_V1_UpdatePodSandboxResourcesResponse
  {
    try await rpc { () async throws(CrispError) in
      let pod = try sandbox(request.podSandboxID)
      let options = try launcher.specOptions()
      if request.hasOverhead { _ = try SpecBuilder.resourceUpdate(request.overhead, options: options) }
      if request.hasResources { _ = try SpecBuilder.resourceUpdate(request.resources, options: options) }
      logger.info(
        "pod sandbox resources noted (the pod cgroup is kubelet's)",
        metadata: [
          "pod": "\(pod.id)", "cpuQuota": "\(request.resources.cpuQuota)",
          "memoryLimit": "\(request.resources.memoryLimitInBytes)",
        ])
      return .init()
    }
  }
}
