import CNNG
import CrispCore
import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// A REP socket serving an `IPCRouter`. `workers` contexts receive at once, so up to
/// that many requests are handled concurrently and a slow one blocks none of the others.
public final class IPCServer: Sendable {
  public let address: String
  private let socket: NNGSocket
  private let router: IPCRouter
  private let workers: Int
  private let logger: Logger
  private let lifecycle = Mutex(Lifecycle())

  /// The workers' aios, and whether the server runs or is closing. Only a worker
  /// touches its context; closing cancels the workers' operations, and the socket is
  /// closed once every worker has closed its context and returned. NNG 1.5 panics
  /// (SIGABRT, "pthread_mutex_lock: Invalid argument" in nng_ctx_send) when a socket is
  /// closed while a context of it sends, which killed daemons replying as SIGTERM came
  /// (or hung their exit).
  private struct Lifecycle {
    var aios: [ObjectIdentifier: AsyncAIO] = [:]
    var running = false
    var closing = false
    var socketClosing = false
    var socketClosed = false
    var waiting: [CheckedContinuation<Void, Never>] = []
  }

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
    socketFile = address.hasPrefix("ipc://") ? SocketFile(path: String(address.dropFirst(6))) : nil
  }

  /// The ipc:// socket's file as bound: NNG unlinks it on its reaper thread after
  /// nng_close returns, so a process that exits at once (shimd after a delete) could
  /// leave it behind; the server removes it itself, unless another server has bound
  /// the path since.
  private struct SocketFile {
    let path: String
    let device: UInt64
    let inode: UInt64

    init?(path: String) {
      var info = stat()
      guard stat(path, &info) == 0 else { return nil }
      self.path = path
      device = UInt64(info.st_dev)
      inode = UInt64(info.st_ino)
    }

    func remove() {
      var info = stat()
      guard stat(path, &info) == 0, UInt64(info.st_dev) == device, UInt64(info.st_ino) == inode else { return }
      unlink(path)
    }
  }
  private let socketFile: SocketFile?

  /// Serves until `close()` is called or the task is cancelled; returns once the
  /// socket is closed.
  public func run() async {
    let start = lifecycle.withLock { state -> Bool in
      if state.closing || state.running { return false }
      state.running = true
      return true
    }
    guard start else { return }
    await withTaskCancellationHandler {
      await withDiscardingTaskGroup { group in
        for _ in 0..<workers {
          group.addTask { await self.serveOneContext() }
        }
      }
    } onCancel: {
      self.close()
    }
    closeSocket()
  }

  /// Stops serving: pending receives end at once, a reply not yet sent is dropped, and the
  /// socket (with its file) is closed as the last worker returns (at once when the
  /// server does not run).
  public func close() {
    let running = lifecycle.withLock { state in
      state.closing = true
      // Under the lock: a worker starts each operation under it too, so none starts
      // unseen after this.
      for aio in state.aios.values { aio.cancel() }
      return state.running
    }
    if !running { closeSocket() }
  }

  /// `close()`, then waits until the socket is closed, `timeoutMs` at most (a worker may
  /// be inside a long request). Returns whether it was.
  @discardableResult
  public func closeAndWait(timeoutMs: Int) async -> Bool {
    close()
    return await withTaskGroup(of: Bool.self) { group in
      group.addTask {
        await withCheckedContinuation { continuation in
          let closed = self.lifecycle.withLock { state -> Bool in
            if state.socketClosed { return true }
            state.waiting.append(continuation)
            return false
          }
          if closed { continuation.resume() }
        }
        return true
      }
      group.addTask {
        try? await Task.sleep(for: .milliseconds(timeoutMs))
        return false
      }
      let first = await group.next() ?? false
      group.cancelAll()
      if !first { closeSocket() }  // Late: whatever a worker still does, the caller goes.
      return first
    }
  }

  private var isClosing: Bool { lifecycle.withLock { $0.closing } }

  private func closeSocket() {
    let claimed = lifecycle.withLock { state -> Bool in
      if state.socketClosing { return false }
      state.socketClosing = true
      return true
    }
    guard claimed else { return }
    socket.close()
    socketFile?.remove()
    // Waiters are told only now: shimd _exits as soon as closeAndWait returns.
    let waiting = lifecycle.withLock { state -> [CheckedContinuation<Void, Never>] in
      state.socketClosed = true
      defer { state.waiting = [] }
      return state.waiting
    }
    for continuation in waiting { continuation.resume() }
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
    let admitted = lifecycle.withLock { state -> Bool in
      if state.closing { return false }
      state.aios[ObjectIdentifier(aio)] = aio
      return true
    }
    defer {
      lifecycle.withLock { _ = $0.aios.removeValue(forKey: ObjectIdentifier(aio)) }
      aio.free()
      ctx.close()
    }
    guard admitted else { return }
    while !Task.isCancelled {
      // Started under the lock, and cancelled at once when closing: close() cancels
      // only the operations already started.
      let received = await aio.perform(timeoutMs: nil) { raw in
        lifecycle.withLock { state in
          nng_ctx_recv(ctx.raw, raw)
          if state.closing { nng_aio_cancel(raw) }
        }
      }
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
        if error.isClosed || (error.isCanceled && isClosing) { return }
        logger.debug("IPC reply not delivered (requester gone)", metadata: ["error": "\(error)"])
      }
    }
  }
}
