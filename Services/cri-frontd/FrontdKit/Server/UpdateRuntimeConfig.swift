import CRIAPI
import CrispCore
import CrispIPC
import Foundation
import GRPCCore
import SpecBuilder

extension RuntimeService {
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
}
