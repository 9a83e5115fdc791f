import CrispIPC
import Dispatch
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// Serves until SIGTERM or SIGINT, then closes the server (which removes its socket
/// file) and returns.
///
/// NNG 1.5's reaper was seen waiting for good on a pipe it destroys (`pipe_destroy` in
/// `nni_task_wait`) while the socket closed, about once in 40 stops of a busy shimd: the
/// daemon then never exited. So the stop has a deadline, kept on a Dispatch thread (the
/// few threads of Swift's pool may all be held in NNG): past it the daemon removes its
/// socket file itself and exits (`_exit`: other threads are still in NNG).
public func serveUntilTerminated(
  _ server: IPCServer, signals: TerminationSignals, logger: Logger
) async {
  await withDiscardingTaskGroup { group in
    group.addTask { await server.run() }
    SystemdNotify.send("READY=1")
    let signo = await signals.wait()
    logger.info("shutting down", metadata: ["signal": "\(signo)"])
    SystemdNotify.send("STOPPING=1")
    let address = server.address
    DispatchQueue.global().asyncAfter(deadline: .now() + .seconds(5)) {
      logger.warning("the IPC socket did not close within 5 s (NNG's reaper); exiting without it")
      if address.hasPrefix("ipc://") { unlink(String(address.dropFirst("ipc://".count))) }
      _exit(0)
    }
    server.close()
  }
}
