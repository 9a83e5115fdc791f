import Logging
import NIOCore

/// What a SPDY connection's application (remotecommand, port-forward) is told. All calls come
/// on the connection's event loop.
protocol SPDYStreamDelegate: AnyObject {
  /// A client stream opened; return false to refuse it (RST_STREAM REFUSED_STREAM).
  func spdyStreamOpened(_ streamID: UInt32, headers: SPDYHeaders, connection: SPDYConnectionHandler) -> Bool
  func spdyStreamData(_ streamID: UInt32, data: ByteBuffer)
  /// The client half-closed the stream (FIN).
  func spdyStreamRemoteFinished(_ streamID: UInt32)
  /// The client reset the stream: both directions are gone.
  func spdyStreamReset(_ streamID: UInt32)
  /// The connection can take more output again (after `canSend` was false).
  func spdyWritable()
  /// The connection is gone (client closed, error, idle timeout).
  func spdyConnectionClosed()
}

/// Server side of a SPDY/3.1 session: stream table, SYN_REPLY, PING echo, GOAWAY, and flow
/// control.
///
/// Flow control: we grant the client 64 KiB per stream and per session and replenish it as data
/// is handed on (our real back-pressure is to stop reading the socket). Our own sending honours
/// the client's windows only once the client shows it speaks flow control (a WINDOW_UPDATE or
/// an INITIAL_WINDOW_SIZE setting): moby/spdystream, which kubectl and the API server use,
/// never sends WINDOW_UPDATE, and waiting for one would stall every exec after 64 KiB.
final class SPDYConnectionHandler: ChannelInboundHandler {
  typealias InboundIn = SPDYFrame
  typealias OutboundOut = SPDYFrame

  static let defaultWindow = 65536
  static let maxWindow = Int(Int32.max)

  private struct Stream {
    var remoteFinished: Bool
    var localFinished = false
    var sendWindow: Int
    var pending: [(ByteBuffer, fin: Bool)] = []
    var unacknowledged = 0  // received bytes not yet returned by WINDOW_UPDATE
  }

  weak var delegate: (any SPDYStreamDelegate)?
  /// Keeps the application (the delegate) alive as long as the connection.
  var application: AnyObject?
  private var context: ChannelHandlerContext?
  private var streams: [UInt32: Stream] = [:]
  private var lastClientStreamID: UInt32 = 0
  private var goingAway = false
  private var closed = false
  private var enforceSendWindow = false
  private var sessionSendWindow = SPDYConnectionHandler.defaultWindow
  private var sessionUnacknowledged = 0
  private var initialSendWindow = SPDYConnectionHandler.defaultWindow
  private let maxStreams: Int
  private let logger: Logger

  init(maxStreams: Int = 256, logger: Logger) {
    self.maxStreams = maxStreams
    self.logger = logger
  }

  var eventLoop: EventLoop? { context?.eventLoop }
  var channel: Channel? { context?.channel }

  func handlerAdded(context: ChannelHandlerContext) {
    self.context = context
  }

  func handlerRemoved(context: ChannelHandlerContext) {
    self.context = nil
  }

  // MARK: inbound

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .synStream(let syn):
      openStream(syn)
    case .data(let streamID, let fin, let payload):
      receiveData(streamID: streamID, fin: fin, payload: payload)
    case .rstStream(let streamID, _):
      if streams.removeValue(forKey: streamID) != nil {
        delegate?.spdyStreamReset(streamID)
      }
      closeIfGoneAway()
    case .settings(_, let entries):
      for entry in entries where entry.id == SPDYSetting.initialWindowSize {
        guard entry.value <= UInt32(Self.maxWindow) else {
          protocolError("INITIAL_WINDOW_SIZE \(entry.value) is too large")
          return
        }
        // The draft: existing streams' windows move by the difference.
        let delta = Int(entry.value) - initialSendWindow
        initialSendWindow = Int(entry.value)
        for id in streams.keys { streams[id]!.sendWindow += delta }
        enforceSendWindow = true
      }
      windowsReopened()
    case .ping(let id):
      // Odd IDs are the client's own pings: echo them. Even ones would answer ours (we send none).
      if id & 1 == 1 {
        context.writeAndFlush(wrapOutboundOut(.ping(id: id)), promise: nil)
      }
    case .goAway:
      goingAway = true
      closeIfGoneAway()
    case .headers(let streamID, let fin, _):
      if fin { remoteFinish(streamID) }
    case .windowUpdate(let streamID, let delta):
      guard delta > 0 else {
        protocolError("WINDOW_UPDATE with delta 0")
        return
      }
      enforceSendWindow = true
      if streamID == 0 {
        sessionSendWindow += Int(delta)
        if sessionSendWindow > Self.maxWindow {
          protocolError("session window over 2^31-1")
          return
        }
      } else if streams[streamID] != nil {
        streams[streamID]!.sendWindow += Int(delta)
        if streams[streamID]!.sendWindow > Self.maxWindow {
          reset(streamID, status: .flowControlError)
          return
        }
      }
      windowsReopened()
    case .synReply(let streamID, _, _):
      // We open no streams, so there is nothing to reply to.
      context.writeAndFlush(wrapOutboundOut(.rstStream(streamID: streamID, status: .invalidStream)), promise: nil)
    case .unknownControl:
      break  // the draft: ignore unknown control frames
    }
  }

  private func openStream(_ syn: SPDYFrame.SynStream) {
    guard let context else { return }
    // Client streams are odd and increasing; anything else is a protocol error for that stream.
    guard syn.streamID & 1 == 1, syn.streamID > lastClientStreamID else {
      context.writeAndFlush(wrapOutboundOut(.rstStream(streamID: syn.streamID, status: .protocolError)), promise: nil)
      return
    }
    lastClientStreamID = syn.streamID
    guard !goingAway, streams.count < maxStreams else {
      context.writeAndFlush(wrapOutboundOut(.rstStream(streamID: syn.streamID, status: .refusedStream)), promise: nil)
      return
    }
    streams[syn.streamID] = Stream(remoteFinished: syn.fin, sendWindow: initialSendWindow)
    guard delegate?.spdyStreamOpened(syn.streamID, headers: syn.headers, connection: self) == true else {
      streams[syn.streamID] = nil
      context.writeAndFlush(wrapOutboundOut(.rstStream(streamID: syn.streamID, status: .refusedStream)), promise: nil)
      return
    }
    // The delegate may have closed the connection or reset the stream meanwhile.
    guard streams[syn.streamID] != nil else { return }
    context.writeAndFlush(
      wrapOutboundOut(.synReply(streamID: syn.streamID, fin: false, headers: SPDYHeaders())), promise: nil)
    if syn.fin { delegate?.spdyStreamRemoteFinished(syn.streamID) }
  }

  private func receiveData(streamID: UInt32, fin: Bool, payload: ByteBuffer) {
    guard let context else { return }
    guard var stream = streams[streamID] else {
      context.writeAndFlush(wrapOutboundOut(.rstStream(streamID: streamID, status: .invalidStream)), promise: nil)
      return
    }
    guard !stream.remoteFinished else {
      reset(streamID, status: .streamAlreadyClosed)
      return
    }
    let count = payload.readableBytes
    if count > 0 {
      // Return the window once half of it is used: the data is handed on right away, and
      // back-pressure works by not reading the socket.
      stream.unacknowledged += count
      sessionUnacknowledged += count
      if stream.unacknowledged >= Self.defaultWindow / 2 && !fin {
        context.write(
          wrapOutboundOut(.windowUpdate(streamID: streamID, delta: UInt32(stream.unacknowledged))), promise: nil)
        stream.unacknowledged = 0
      }
      if sessionUnacknowledged >= Self.defaultWindow / 2 {
        context.write(wrapOutboundOut(.windowUpdate(streamID: 0, delta: UInt32(sessionUnacknowledged))), promise: nil)
        sessionUnacknowledged = 0
      }
      streams[streamID] = stream
      delegate?.spdyStreamData(streamID, data: payload)
    }
    if fin { remoteFinish(streamID) }
  }

  private func remoteFinish(_ streamID: UInt32) {
    guard var stream = streams[streamID], !stream.remoteFinished else { return }
    stream.remoteFinished = true
    streams[streamID] = stream
    delegate?.spdyStreamRemoteFinished(streamID)
    removeIfDone(streamID)
  }

  func channelReadComplete(context: ChannelHandlerContext) {
    context.flush()
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable {
      flushPending()
      delegate?.spdyWritable()
    }
    context.fireChannelWritabilityChanged()
  }

  func channelInactive(context: ChannelHandlerContext) {
    connectionGone()
    context.fireChannelInactive()
  }

  func errorCaught(context: ChannelHandlerContext, error: Error) {
    if let error = error as? SPDYProtocolError {
      protocolError(error.description)
    } else {
      logger.debug("streaming connection error: \(error)")
      context.close(promise: nil)
    }
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if event is IdleStateHandler.IdleStateEvent {
      logger.info("streaming connection idle too long: closing it")
      goAwayAndClose()
      return
    }
    context.fireUserInboundEventTriggered(event)
  }

  private func connectionGone() {
    guard !closed else { return }
    closed = true
    streams.removeAll()
    delegate?.spdyConnectionClosed()
  }

  private func protocolError(_ why: String) {
    logger.info("SPDY protocol error from the client: \(why); closing the connection")
    guard let context, !closed else { return }
    context.writeAndFlush(
      wrapOutboundOut(.goAway(lastGoodStreamID: lastClientStreamID, status: .protocolError)), promise: nil)
    context.close(promise: nil)
  }

  // MARK: outbound, for the delegate

  /// Whether more output for `streamID` goes out now rather than into a queue.
  func canSend(_ streamID: UInt32) -> Bool {
    guard let context, context.channel.isWritable else { return false }
    return streams[streamID]?.pending.isEmpty ?? true
  }

  var isWritable: Bool { context?.channel.isWritable ?? false }

  private var readPauses = 0

  /// Stops reading the client's socket (back-pressure towards it); calls nest.
  func pauseReading() {
    readPauses += 1
    if readPauses == 1, let channel {
      try? channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
    }
  }

  func resumeReading() {
    guard readPauses > 0 else { return }
    readPauses -= 1
    if readPauses == 0, let channel {
      try? channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
      channel.read()
    }
  }

  /// Sends data on a stream (queued while the client's windows are closed). Dropped when the
  /// stream is gone or already finished by us.
  func send(_ streamID: UInt32, _ data: ByteBuffer, fin: Bool = false) {
    guard var stream = streams[streamID], !stream.localFinished else { return }
    if fin { stream.localFinished = true }
    stream.pending.append((data, fin: fin))
    streams[streamID] = stream
    flushPending(streamID)
    context?.flush()
    if fin { removeIfDone(streamID) }
  }

  /// Half-closes our side of the stream.
  func finish(_ streamID: UInt32) {
    send(streamID, ByteBuffer(), fin: true)
  }

  func reset(_ streamID: UInt32, status: SPDYResetStatus) {
    guard let context, streams.removeValue(forKey: streamID) != nil else { return }
    context.writeAndFlush(wrapOutboundOut(.rstStream(streamID: streamID, status: status)), promise: nil)
    delegate?.spdyStreamReset(streamID)
  }

  /// Says goodbye (GOAWAY OK) once queued output is out, half-closes, and closes for good when
  /// the client closes or after a grace period: closing with unread input would send a TCP
  /// reset that can destroy output the client has not read yet.
  func goAwayAndClose(grace: TimeAmount = .seconds(5)) {
    guard !closing else { return }
    closing = true
    closeGrace = grace
    goingAway = true
    finishCloseWhenDrained()
  }

  private var closing = false
  private var closeGrace = TimeAmount.seconds(5)
  private var goAwaySent = false

  private func finishCloseWhenDrained() {
    guard closing, !goAwaySent, let context, !closed else { return }
    guard streams.values.allSatisfy({ $0.pending.isEmpty }) else { return }
    goAwaySent = true
    let grace = closeGrace
    let channel = context.channel
    context.writeAndFlush(wrapOutboundOut(.goAway(lastGoodStreamID: lastClientStreamID, status: .ok)))
      .whenComplete { _ in
        channel.close(mode: .output, promise: nil)
      }
    channel.eventLoop.scheduleTask(in: grace) { channel.close(promise: nil) }
  }

  /// The client returned window: queued output may go now, and the application, which stopped
  /// reading its source when `canSend` said no, must hear that it can send again (otherwise an
  /// exec or a forwarded port stalls for good once the client's window ran out).
  private func windowsReopened() {
    flushPending()
    if context?.channel.isWritable == true { delegate?.spdyWritable() }
  }

  private func flushPending() {
    for id in streams.keys.sorted() {
      flushPending(id)
      removeIfDone(id)
    }
    context?.flush()
    finishCloseWhenDrained()
  }

  private func flushPending(_ streamID: UInt32) {
    guard let context else { return }
    while var stream = streams[streamID], !stream.pending.isEmpty {
      var (data, fin) = stream.pending[0]
      var chunk = data
      if enforceSendWindow && data.readableBytes > 0 {
        let allowed = min(stream.sendWindow, sessionSendWindow)
        guard allowed > 0 else { return }
        if allowed < data.readableBytes {
          chunk = data.readSlice(length: allowed)!
          stream.pending[0] = (data, fin: fin)
          fin = false
        } else {
          stream.pending.removeFirst()
        }
        stream.sendWindow -= chunk.readableBytes
        sessionSendWindow -= chunk.readableBytes
      } else {
        // Counted all the same: a client that starts flow control later starts from the truth.
        stream.pending.removeFirst()
        stream.sendWindow -= chunk.readableBytes
        sessionSendWindow -= chunk.readableBytes
      }
      streams[streamID] = stream
      context.write(wrapOutboundOut(.data(streamID: streamID, fin: fin, payload: chunk)), promise: nil)
    }
  }

  private func removeIfDone(_ streamID: UInt32) {
    guard let stream = streams[streamID], stream.remoteFinished, stream.localFinished, stream.pending.isEmpty else {
      return
    }
    streams[streamID] = nil
    closeIfGoneAway()
  }

  /// After the client's GOAWAY, the connection ends once its last stream does.
  private func closeIfGoneAway() {
    if goingAway && streams.isEmpty && !closing {
      goAwayAndClose()
    }
  }
}
