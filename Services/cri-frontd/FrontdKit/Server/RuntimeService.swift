import CRIAPI
import CrispCore
import CrispDaemon
import GRPCCore
import Logging
import Streaming

/// The CRI RuntimeService: one file per RPC beside this one, each a thin translation
/// between the CRI's messages and the lifecycle in `Sandboxes` and `Containers`. The
/// RPCs not implemented answer UNIMPLEMENTED naming themselves (Shared/CRIAPI).
struct RuntimeService: Runtime_V1_RuntimeService.SimpleServiceProtocol {
  let sandboxes: Sandboxes
  let containers: Containers
  let sweep: OrphanSweep
  /// imaged and netd, for what is not lifecycle: health, stats, port forwarding.
  let peers: DaemonPeers
  let healthTimeoutMs: Int32
  let identity: DaemonIdentity
  let logger: Logger
  /// Exec, Attach and PortForward answer URLs on it.
  let streaming: StreamingServer
  /// Cgroup locations, CPU readings and writable-layer sizes kept between stats calls.
  let stats = StatsCollector()

  var launcher: ContainerLauncher { containers.launcher }
  var monitors: any ContainerMonitors { containers.monitors }
  /// Container events for GetContainerEvents subscribers.
  var events: ContainerEventHub { containers.events }

  /// Runs a call's body, handing crisp errors to kubelet as their gRPC status.
  func rpc<T: Sendable>(_ body: () async throws(CrispError) -> T) async throws -> T {
    do {
      return try await body()
    } catch {
      throw RPCError(error)
    }
  }

  /// The container a request names by ID or unique prefix; NotFound when none.
  func container(_ text: String) throws(CrispError) -> Container {
    guard let container = try containers.resolve(text) else {
      throw CrispError(.notFound, "container \"\(text)\" not found")
    }
    return container
  }

  /// The pod a request names by ID or unique prefix; NotFound when none.
  func sandbox(_ text: String) throws(CrispError) -> Sandbox {
    guard let sandbox = try sandboxes.resolve(text) else {
      throw CrispError(.notFound, "pod sandbox \"\(text)\" not found")
    }
    return sandbox
  }
}
