import CNNG
import CrispCore
import Logging

/// Pushes events (a shim's "container exited") to frontd's PULL socket. Events only
/// make frontd prompt: the truth is on disk, so a send that times out while frontd
/// is down loses nothing.
public final class IPCEventSender: Sendable {
  private let socket: NNGSocket

  public init(address: String) throws(NNGError) {
    socket = try NNGSocket(.push)
    do {
      try socket.setDuration(NNG_OPT_RECONNMINT, milliseconds: 20)
      try socket.setDuration(NNG_OPT_RECONNMAXT, milliseconds: 1_000)
      try socket.dial(address)
    } catch {
      socket.close()
      throw error
    }
  }

  deinit { socket.close() }

  public func send<E: IPCEvent>(_ event: E, timeoutMs: Int32 = 1_000) async throws(CrispError) {
    let bytes: [UInt8]
    do {
      bytes = try WireCodec.encode(EventEnvelope(event: E.name, data: event))
    } catch {
      throw CrispError(.internal, "cannot encode event \(E.name): \(error)")
    }
    let aio: AsyncAIO
    let message: OpaquePointer
    do {
      aio = try AsyncAIO()
      message = try NNGMessage.make(bytes)
    } catch {
      throw CrispError(.resourceExhausted, "cannot send event \(E.name): \(error)")
    }
    defer { aio.free() }
    nng_aio_set_msg(aio.aio, message)
    let sent = await aio.perform(timeoutMs: timeoutMs) { nng_send_aio(socket.raw, $0) }
    if sent != 0 {
      if let unsent = aio.takeMessage() { nng_msg_free(unsent) }
      throw CrispError(.unavailable, "event \(E.name) not delivered: \(NNGError(sent, "push"))")
    }
  }
}

/// One received event: its name, and its data still to be decoded by type.
public struct ReceivedEvent: Sendable {
  public let name: String
  let bytes: [UInt8]

  public func decode<E: IPCEvent>(_ type: E.Type) throws(CrispError) -> E {
    guard name == E.name else {
      throw CrispError(.invalidArgument, "event is \(name), not \(E.name)")
    }
    do {
      return try WireCodec.decode(EventEnvelope<E>.self, from: bytes).data
    } catch {
      throw CrispError(.invalidArgument, "bad \(name) event: \(WireCodec.describe(error))")
    }
  }
}

/// frontd's PULL socket: every shim pushes here. Undecodable or foreign-version
/// messages are logged and dropped.
public final class IPCEventReceiver: Sendable {
  public let address: String
  private let socket: NNGSocket
  private let logger: Logger

  public init(address: String, logger: Logger) throws(NNGError) {
    self.address = address
    self.logger = logger
    socket = try NNGSocket(.pull)
    do {
      try socket.listen(address)
    } catch {
      socket.close()
      throw error
    }
  }

  public func close() { socket.close() }

  /// Waits for the next valid event; nil once the receiver is closed.
  public func next() async -> ReceivedEvent? {
    let aio: AsyncAIO
    do {
      aio = try AsyncAIO()
    } catch {
      logger.error("cannot receive events", metadata: ["error": "\(error)"])
      return nil
    }
    defer { aio.free() }
    while true {
      let rv = await aio.perform(timeoutMs: nil) { nng_recv_aio(socket.raw, $0) }
      if rv != 0 {
        let error = NNGError(rv, "receive event")
        if error.isClosed || error.isCanceled { return nil }
        logger.warning("event receive failed", metadata: ["error": "\(error)"])
        continue
      }
      guard let message = aio.takeMessage() else { continue }
      let bytes = NNGMessage.take(message)
      guard bytes.count <= IPCProtocol.maxMessageBytes,
        let header = try? WireCodec.decode(EventHeader.self, from: bytes),
        header.v == IPCProtocol.version, let name = header.event
      else {
        logger.warning("dropped an undecodable event", metadata: ["bytes": "\(bytes.count)"])
        continue
      }
      return ReceivedEvent(name: name, bytes: bytes)
    }
  }
}
