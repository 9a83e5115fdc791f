import CRIAPI
import CrispDaemon
import Logging

/// The CRI RuntimeService. One file per RPC group beside this one; the RPCs not
/// implemented yet answer UNIMPLEMENTED naming themselves (Shared/CRIAPI).
struct RuntimeService: Runtime_V1_RuntimeService.SimpleServiceProtocol {
  let peers: DaemonPeers
  let healthTimeoutMs: Int32
  let identity: DaemonIdentity
  let logger: Logger
}
