import CrispConfig
import CrispCore
import CrispIPC

/// frontd's IPC clients for the singleton daemons. They dial in the background and
/// redial after a daemon restarts, so frontd starts and serves whether or not its
/// peers are up yet; a call to a peer that is down fails with `unavailable`.
final class DaemonPeers: Sendable {
  let imaged: IPCClient
  let netd: IPCClient
  /// Deadline of a pull: far longer than other calls, since images can be large.
  let pullTimeoutMs: Int32

  init(config: CrispConfig) throws {
    let timeout = Int32(config.ipc.requestTimeoutMs)
    pullTimeoutMs = Int32(clamping: config.ipc.pullTimeoutMs)
    imaged = try IPCClient(
      peer: "imaged", address: CrispPaths.ipcAddress(config.paths.imagedSocket), defaultTimeoutMs: timeout)
    netd = try IPCClient(
      peer: "netd", address: CrispPaths.ipcAddress(config.paths.netdSocket), defaultTimeoutMs: timeout)
  }

  func close() {
    imaged.close()
    netd.close()
  }
}
