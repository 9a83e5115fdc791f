import CRIAPI
import Logging

/// The CRI ImageService; its calls are carried out by imaged. The RPCs not
/// implemented yet answer UNIMPLEMENTED naming themselves (Shared/CRIAPI).
struct ImageService: Runtime_V1_ImageService.SimpleServiceProtocol {
  let peers: DaemonPeers
  let logger: Logger
}
