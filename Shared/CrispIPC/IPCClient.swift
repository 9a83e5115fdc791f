import CNNG
import CrispCore
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Calls one daemon over a REQ socket. Each call gets its own context, so calls from
/// many tasks run at once; each has a deadline. A daemon that is down fails a call
/// fast with `CrispError(.unavailable)` naming it (after a short grace for a redial),
/// and a daemon that dies while a call waits for its answer fails that call at once,
/// rather than NNG resending it to the restarted daemon much later. NNG keeps
/// redialling, so the client recovers by itself when the daemon comes back.
public final class IPCClient: Sendable {
  public let peer: String
  public let address: String
  public let defaultTimeoutMs: Int32
  private let socket: NNGSocket
  private let pipes: PipeCounter

  /// How long after a connection was lost (or the client was made) a call still waits
  /// for one: a daemon restarting is back well within it; a daemon down for longer
  /// fails calls at once.
  public let connectGraceMs: Int64

  /// Counts live connections (NNG pipes), so an error can tell "down" from "slow",
  /// and holds the receives waiting for an answer, so that a lost connection can
  /// cancel them.
  final class PipeCounter: Sendable {
    struct AIO: @unchecked Sendable { let raw: OpaquePointer }
    let count = Atomic<Int>(0)
    /// When the last connection went away (monotonic ms); the creation time at first.
    let downSince = Atomic<Int64>(MonotonicClock.milliseconds())
    private let waiting = Mutex<(next: UInt64, aios: [UInt64: AIO], lost: Set<UInt64>)>((0, [:], []))

    func track(_ aio: OpaquePointer) -> UInt64 {
      waiting.withLock {
        $0.next += 1
        $0.aios[$0.next] = AIO(raw: aio)
        return $0.next
      }
    }

    /// Stops tracking; true when the connection was lost while it waited.
    func untrack(_ id: UInt64) -> Bool {
      waiting.withLock {
        $0.aios[id] = nil
        return $0.lost.remove(id) != nil
      }
    }

    func connectionLost() {
      // Under the lock: `untrack` runs before the aio is freed, so none is freed here.
      waiting.withLock {
        for (id, aio) in $0.aios {
          $0.lost.insert(id)
          nng_aio_cancel(aio.raw)
        }
      }
    }
  }

  public init(
    peer: String, address: String, defaultTimeoutMs: Int32 = 5_000, connectGraceMs: Int64 = 2_000
  ) throws(NNGError) {
    self.peer = peer
    self.connectGraceMs = connectGraceMs
    self.address = address
    self.defaultTimeoutMs = defaultTimeoutMs
    socket = try NNGSocket(.req)
    pipes = PipeCounter()
    let arg = Unmanaged.passUnretained(pipes).toOpaque()
    do {
      try nngCheck(
        // ADD_PRE pairs with REM_POST for every pipe, even one refused during its handshake.
        nng_pipe_notify(
          socket.raw, NNG_PIPE_EV_ADD_PRE,
          { _, _, arg in
            Unmanaged<PipeCounter>.fromOpaque(arg!).takeUnretainedValue().count.add(1, ordering: .relaxed)
          }, arg), "watch connections")
      try nngCheck(
        nng_pipe_notify(
          socket.raw, NNG_PIPE_EV_REM_POST,
          { _, _, arg in
            let pipes = Unmanaged<PipeCounter>.fromOpaque(arg!).takeUnretainedValue()
            if pipes.count.subtract(1, ordering: .relaxed).newValue == 0 {
              pipes.downSince.store(MonotonicClock.milliseconds(), ordering: .relaxed)
            }
            pipes.connectionLost()
          }, arg), "watch connections")
      // A restarted daemon is found again within half a second.
      try socket.setDuration(NNG_OPT_RECONNMINT, milliseconds: 20)
      try socket.setDuration(NNG_OPT_RECONNMAXT, milliseconds: 500)
      try socket.dial(address)
    } catch {
      socket.close()
      throw error
    }
  }

  deinit {
    socket.close()
  }

  public var isConnected: Bool { pipes.count.load(ordering: .relaxed) > 0 }

  public func close() {
    socket.close()
  }

  public func call<M: IPCMethod>(
    _ method: M.Type, _ request: M.Request, timeoutMs: Int32? = nil
  ) async throws(CrispError) -> M.Response {
    guard let tracer = IPCTracing.current else {
      return try await send(method, request, trace: nil, timeoutMs: timeoutMs)
    }
    return try await tracer.traceCall(peer: peer, method: M.name) { trace throws(CrispError) in
      try await send(method, request, trace: trace, timeoutMs: timeoutMs)
    }
  }

  private func send<M: IPCMethod>(
    _ method: M.Type, _ request: M.Request, trace: IPCTraceContext?, timeoutMs: Int32?
  ) async throws(CrispError) -> M.Response {
    var envelope = RequestEnvelope(method: M.name, params: request)
    envelope.traceparent = trace?.traceparent
    envelope.tracestate = trace?.tracestate
    let bytes: [UInt8]
    do {
      bytes = try WireCodec.encode(envelope)
    } catch {
      throw CrispError(.internal, "cannot encode \(M.name) request: \(error)")
    }
    let reply = try await roundTrip(bytes, method: M.name, timeoutMs: timeoutMs ?? defaultTimeoutMs)
    return try Self.decodeReply(M.Response.self, reply, method: M.name, peer: peer)
  }

  public func call<M: IPCMethod>(_ method: M.Type, timeoutMs: Int32? = nil) async throws(CrispError) -> M.Response
  where M.Request == Empty {
    try await call(method, Empty(), timeoutMs: timeoutMs)
  }

  /// Sends raw bytes and returns the raw reply: for tests and debugging tools.
  public func roundTrip(_ bytes: [UInt8], method: String, timeoutMs: Int32) async throws(CrispError) -> [UInt8] {
    let start = MonotonicClock.milliseconds()
    // Not connected: the request waits in NNG for a connection, but only for a short
    // grace (a daemon restarting), not for the whole deadline of a long call.
    let graceLeft = connectGraceMs - (start - pipes.downSince.load(ordering: .relaxed))
    let sendTimeoutMs = isConnected ? timeoutMs : min(timeoutMs, Int32(clamping: max(graceLeft, 20)))
    let ctx: NNGContext
    let aio: AsyncAIO
    do {
      ctx = try NNGContext(socket)
    } catch {
      throw CrispError(.unavailable, "\(peer) client at \(address) is closed: \(error)")
    }
    defer { ctx.close() }
    do {
      aio = try AsyncAIO()
    } catch {
      throw CrispError(.resourceExhausted, "cannot call \(peer): \(error)")
    }
    defer { aio.free() }

    let message: OpaquePointer
    do {
      message = try NNGMessage.make(bytes)
    } catch {
      throw CrispError(.resourceExhausted, "cannot call \(peer): \(error)")
    }
    nng_aio_set_msg(aio.aio, message)
    let sent = await aio.perform(timeoutMs: sendTimeoutMs) { nng_ctx_send(ctx.raw, $0) }
    if sent != 0 {
      if let unsent = aio.takeMessage() { nng_msg_free(unsent) }
      throw failure(sent, method: method, timeoutMs: sendTimeoutMs)
    }
    let remaining = max(1, timeoutMs - Int32(clamping: MonotonicClock.milliseconds() - start))
    let waiting = pipes.track(aio.aio)
    let received = await aio.perform(timeoutMs: remaining) { nng_ctx_recv(ctx.raw, $0) }
    let lost = pipes.untrack(waiting)
    if received != 0 {
      if lost {
        throw CrispError(.unavailable, "\(peer) went away while answering \(method) (connection to \(address) lost)")
      }
      throw failure(received, method: method, timeoutMs: timeoutMs)
    }
    guard let reply = aio.takeMessage() else {
      throw CrispError(.internal, "\(peer) answered \(method) with no message")
    }
    return NNGMessage.take(reply)
  }

  private func failure(_ code: Int32, method: String, timeoutMs: Int32) -> CrispError {
    let error = NNGError(code, method)
    if error.isCanceled {
      return CrispError(.deadlineExceeded, "call \(method) to \(peer) was cancelled")
    }
    if error.isTimeout {
      if isConnected {
        return CrispError(
          .deadlineExceeded, "\(peer) did not answer \(method) within \(timeoutMs) ms (at \(address))")
      }
      return CrispError(
        .unavailable,
        "\(peer) is not reachable at \(address) (no answer to \(method) within \(timeoutMs) ms; is \(peer) running?)")
    }
    return CrispError(.unavailable, "cannot reach \(peer) at \(address): \(error)")
  }

  static func decodeReply<R: Codable>(_ type: R.Type, _ bytes: [UInt8], method: String, peer: String)
    throws(CrispError) -> R
  {
    let header: ReplyHeader
    do {
      header = try WireCodec.decode(ReplyHeader.self, from: bytes)
    } catch {
      throw CrispError(.internal, "undecodable reply from \(peer) to \(method): \(WireCodec.describe(error))")
    }
    guard header.v == IPCProtocol.version else {
      throw CrispError(
        .failedPrecondition,
        "\(peer) speaks IPC protocol version \(header.v.map(String.init) ?? "none"), crisp speaks \(IPCProtocol.version)"
      )
    }
    if let error = header.error {
      let code = CrispError.Code(rawValue: error.code) ?? .internal
      throw CrispError(code, error.message)
    }
    do {
      guard let result = try WireCodec.decode(ReplyEnvelope<R>.self, from: bytes).result else {
        throw CrispError(.internal, "reply from \(peer) to \(method) has neither result nor error")
      }
      return result
    } catch let error as CrispError {
      throw error
    } catch {
      throw CrispError(.internal, "undecodable reply from \(peer) to \(method): \(WireCodec.describe(error))")
    }
  }

}
