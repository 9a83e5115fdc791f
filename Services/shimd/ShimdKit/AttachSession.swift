import CrispCore
import CrispIPC
import Logging

#if canImport(Glibc)
  import Glibc
#endif

extension ContainerShim {
  /// `shim.streamAttach`: checks the request, listens on a fresh session socket and
  /// leaves the relay to a session thread.
  func streamAttach(_ request: SessionStreams) throws(CrispError) -> SessionSocket {
    try request.validate("shim.streamAttach")
    guard try currentPhase() != .exited else {
      throw CrispError(.failedPrecondition, "container \(settings.id) has exited: nothing to attach to")
    }
    guard request.tty == settings.tty else {
      throw CrispError(
        .failedPrecondition,
        "container \(settings.id) \(settings.tty ? "has" : "has no") terminal: attach with tty=\(settings.tty)")
    }
    try beginSession()
    let number = nextExecNumber()
    let listener: SessionListener
    let tap: AttachTap
    do throws(CrispError) {
      listener = try SessionListener(
        path: SessionListener.path(
          bundle: bundle.path, runRoot: settings.runRoot, containerID: settings.id, number: number))
      do throws(CrispError) {
        tap = try AttachTap(stdout: request.stdout, stderr: request.stderr)
      } catch {
        _ = listener.acceptOne(timeoutMs: 0)
        throw error
      }
    } catch {
      endSession()
      throw error
    }
    let session = AttachSession(shim: self, request: request, listener: listener, tap: tap)
    do {
      try ShimThread.detach {
        session.run()
        self.endSession()
      }
    } catch {
      _ = listener.acceptOne(timeoutMs: 0)
      endSession()
      throw error
    }
    return SessionSocket(socketPath: listener.path)
  }
}

/// One attach: the container's output as it is logged, its stdin (when it was created
/// with stdin), resizes of its terminal; ends with the container's exit code. frontd
/// going away only detaches (with stdin_once, the container's stdin then closes).
final class AttachSession: Sendable {
  let shim: ContainerShim
  let request: SessionStreams
  let listener: SessionListener
  let tap: AttachTap

  init(shim: ContainerShim, request: SessionStreams, listener: SessionListener, tap: AttachTap) {
    self.shim = shim
    self.request = request
    self.listener = listener
    self.tap = tap
  }

  func run() {
    defer { ContainerShim.trimMemorySoon() }
    let logger = shim.logger
    guard let socket = listener.acceptOne(timeoutMs: SessionSocket.acceptTimeoutMs) else {
      logger.warning("nobody connected to an attach session", metadata: ["socket": "\(listener.path)"])
      return
    }
    defer { close(socket) }
    let forwards = request.stdin && shim.settings.stdin
    if request.stdin && !forwards {
      logger.info("attach with stdin to a container created without stdin: its input is dropped")
    }
    let input = AttachInput(container: shim.input, forwards: forwards, stdinOnce: shim.settings.stdinOnce)
    shim.supervisor.attachments.add(tap)
    defer { shim.supervisor.attachments.remove(tap) }
    var pump = SessionPump(socket: socket, input: input)
    pump.queue = tap
    let outcome = pump.run()
    if tap.dropped > 0 {
      logger.warning(
        "an attach client did not keep up: output dropped for it (the log has all of it)",
        metadata: ["bytes": "\(tap.dropped)"])
    }
    switch outcome {
    case .finished(let exitCode):
      _ = writeAll(socket: socket, SessionFrame.end(exitCode: exitCode ?? 255), timeoutMs: 10_000)
    case .clientGone(let reason):
      logger.debug("attach session detached", metadata: ["reason": "\(reason)"])
      if forwards && shim.settings.stdinOnce { shim.input.closeInput() }
    }
  }
}
