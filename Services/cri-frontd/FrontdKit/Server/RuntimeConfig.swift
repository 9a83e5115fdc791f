import CRIAPI
import CrispCore
import CrispIPC
import Foundation
import GRPCCore
import SpecBuilder

extension RuntimeService {
  /// The cgroup driver crisp is configured with (`frontd.cgroup_driver`), which kubelet
  /// adopts when it asks.
  func runtimeConfig(request: Runtime_V1_RuntimeConfigRequest, context: ServerContext) async throws
    -> Runtime_V1_RuntimeConfigResponse
  {
    var response = Runtime_V1_RuntimeConfigResponse()
    response.linux.cgroupDriver = launcher.config.frontd.cgroupDriver == .systemd ? .systemd : .cgroupfs
    return response
  }
}
