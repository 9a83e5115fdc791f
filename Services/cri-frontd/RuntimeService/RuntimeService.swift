import CRIAPI
import CrispCore
import CrispDaemon
import GRPCCore
import Logging
import Streaming

/// The CRI RuntimeService. One file per RPC group beside this one; the RPCs not
/// implemented yet answer UNIMPLEMENTED naming themselves (Shared/CRIAPI).
struct RuntimeService: Runtime_V1_RuntimeService.SimpleServiceProtocol {
  let peers: DaemonPeers
  let runtime: RuntimeContext
  let healthTimeoutMs: Int32
  let identity: DaemonIdentity
  let logger: Logger
  /// Exec, Attach and PortForward answer URLs on it.
  let streaming: StreamingServer
  /// Cgroup locations, CPU readings and writable-layer sizes kept between stats calls.
  let stats = StatsCollector()
  /// Container events for GetContainerEvents subscribers.
  let events = ContainerEventHub()

  /// Runs a call's body, handing crisp errors to kubelet as their gRPC status.
  func rpc<T: Sendable>(_ body: () async throws(CrispError) -> T) async throws -> T {
    do {
      return try await body()
    } catch {
      throw RPCError(error)
    }
  }
}
