import CrispIPC
import Logging

/// Serves until SIGTERM or SIGINT, then closes the server (which removes its socket
/// file) and returns.
public func serveUntilTerminated(
  _ server: IPCServer, signals: TerminationSignals, logger: Logger
) async {
  await withDiscardingTaskGroup { group in
    group.addTask { await server.run() }
    SystemdNotify.send("READY=1")
    let signo = await signals.wait()
    logger.info("shutting down", metadata: ["signal": "\(signo)"])
    SystemdNotify.send("STOPPING=1")
    server.close()
  }
}
