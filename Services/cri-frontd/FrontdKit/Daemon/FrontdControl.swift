import CrispCore
import CrispDaemon
import CrispIPC
import Logging

/// frontd's own IPC socket (`<run_root>/cri-frontd.ipc`), the way in for crispctl
/// (`health`, `ping`) and, with --test-hooks, the tests (`debug.syscall`): frontd's
/// other sockets speak gRPC (kubelet) or only receive (shim events).
enum FrontdControl {
  static func listen(
    paths: CrispPaths, identity: DaemonIdentity, testHooks: Bool, logger: Logger
  ) throws -> IPCServer {
    var router = IPCRouter()
    router.register(Health.self) { _ in identity.health() }
    if testHooks { TestHooks.register(in: &router, logger: logger) }
    // crispctl asks one thing at a time: two workers are plenty.
    return try IPCServer(address: CrispPaths.ipcAddress(paths.frontdSocket), router: router, workers: 2, logger: logger)
  }
}
