import CRIAPI
import CrispCore
import CrispIPC
import Foundation
import GRPCCore
import SpecBuilder

/// Resource updates and runtime configuration: UpdateContainerResources (runc update
/// through the container's shim), UpdatePodSandboxResources, RuntimeConfig,
/// UpdateRuntimeConfig (the pod CIDR, to netd), and CheckpointContainer (not done).
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

  /// kubelet owns the pod-level cgroup (it creates `cgroup_parent` itself), and crisp
  /// runs no pod-level process to confine: the resources are checked and logged; the
  /// containers' own limits come through UpdateContainerResources.
  func updatePodSandboxResources(request: Runtime_V1_UpdatePodSandboxResourcesRequest, context: ServerContext)
    async throws -> Runtime_V1_UpdatePodSandboxResourcesResponse
  {
    try await rpc { () async throws(CrispError) in
      guard let pod = try runtime.resolvePod(request.podSandboxID) else {
        throw CrispError(.notFound, "pod sandbox \"\(request.podSandboxID)\" not found")
      }
      let options = try specOptions()
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

  /// The cgroup driver crisp is configured with (`frontd.cgroup_driver`), which kubelet
  /// adopts when it asks.
  func runtimeConfig(request: Runtime_V1_RuntimeConfigRequest, context: ServerContext) async throws
    -> Runtime_V1_RuntimeConfigResponse
  {
    var response = Runtime_V1_RuntimeConfigResponse()
    response.linux.cgroupDriver = runtime.config.frontd.cgroupDriver == "systemd" ? .systemd : .cgroupfs
    return response
  }

  /// The node's pod CIDR, handed to netd (which keeps it and gives it to CNI
  /// configurations that leave their subnet to the node). An empty CIDR is ignored.
  func updateRuntimeConfig(request: Runtime_V1_UpdateRuntimeConfigRequest, context: ServerContext) async throws
    -> Runtime_V1_UpdateRuntimeConfigResponse
  {
    try await rpc { () async throws(CrispError) in
      let cidr = request.runtimeConfig.networkConfig.podCidr
      guard !cidr.isEmpty else { return .init() }
      let answer = try await peers.netd.call(NetUpdateRuntimeConfig.self, .init(podCIDR: cidr))
      logger.info("pod CIDR handed to netd", metadata: ["cidrs": "\(answer.podCIDRs.joined(separator: ","))"])
      return .init()
    }
  }

  func checkpointContainer(request: Runtime_V1_CheckpointContainerRequest, context: ServerContext) async throws
    -> Runtime_V1_CheckpointContainerResponse
  {
    throw RPCError(
      code: .unimplemented,
      message: "CheckpointContainer is not implemented by crisp: checkpoint and restore need CRIU "
        + "(runc checkpoint/restore), which crisp does not use")
  }
}
