import CNNG
import CrispCore
import Logging

/// A REP socket serving an `IPCRouter`. `workers` contexts receive at once, so up to
/// that many requests are handled concurrently and a slow one blocks none of the others.
public final class IPCServer: Sendable {
  public let address: String
  private let socket: NNGSocket
  private let router: IPCRouter
  private let workers: Int
  private let logger: Logger

  /// Binds at once, so a caller knows the socket exists when this returns.
  public init(address: String, router: IPCRouter, workers: Int = 32, logger: Logger) throws(NNGError) {
    self.address = address
    self.router = router
    self.workers = max(1, workers)
    self.logger = logger
    socket = try NNGSocket(.rep)
    do {
      try socket.listen(address)
    } catch {
      socket.close()
      throw error
    }
  }

  /// Serves until `close()` is called or the task is cancelled.
  public func run() async {
    await withTaskCancellationHandler {
      await withDiscardingTaskGroup { group in
        for _ in 0..<workers {
          group.addTask { await self.serveOneContext() }
        }
      }
    } onCancel: {
      self.close()
    }
  }

  /// Closes the socket (NNG removes the socket file); pending receives end at once.
  public func close() {
    socket.close()
  }

  private func serveOneContext() async {
    let ctx: NNGContext
    let aio: AsyncAIO
    do {
      ctx = try NNGContext(socket)
      aio = try AsyncAIO()
    } catch {
      if !error.isClosed { logger.error("cannot start IPC worker", metadata: ["error": "\(error)"]) }
      return
    }
    defer {
      aio.free()
      ctx.close()
    }
    while !Task.isCancelled {
      let received = await aio.perform(timeoutMs: nil) { nng_ctx_recv(ctx.raw, $0) }
      if received != 0 {
        let error = NNGError(received, "receive on \(address)")
        if error.isClosed || error.isCanceled { return }
        logger.warning("IPC receive failed", metadata: ["error": "\(error)"])
        continue
      }
      guard let message = aio.takeMessage() else { continue }
      let request = NNGMessage.take(message)
      let reply = await router.handle(request)
      let out: OpaquePointer
      do {
        out = try NNGMessage.make(reply)
      } catch {
        logger.error("cannot build IPC reply", metadata: ["error": "\(error)"])
        continue
      }
      nng_aio_set_msg(aio.aio, out)
      let sent = await aio.perform(timeoutMs: 5_000) { nng_ctx_send(ctx.raw, $0) }
      if sent != 0 {
        // On failure the message is still ours.
        if let unsent = aio.takeMessage() { nng_msg_free(unsent) }
        let error = NNGError(sent, "reply on \(address)")
        if error.isClosed { return }
        logger.debug("IPC reply not delivered (requester gone)", metadata: ["error": "\(error)"])
      }
    }
  }
}
