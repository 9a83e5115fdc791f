import Logging
import NIOCore
import NIOWebSocket

/// remotecommand over WebSocket (kubelet's createWebSocketStreams): channels 0 stdin, 1 stdout,
/// 2 stderr, 3 error, 4 resize; v5 adds 255 = "close channel N" (stdin EOF). An empty message on
/// the first output channel tells the client the session is set up.
final class RemoteCommandWebSocket: ChannelInboundHandler, RemoteCommandTransport {
  typealias InboundIn = WebSocketFrame
  typealias OutboundOut = WebSocketFrame

  private let version: RemoteCommandProtocol
  private let session: RemoteCommandSession
  private let logger: Logger
  private var writer: WebSocketChannelWriter?
  private var resizeParser = ResizeParser()
  private var ended = false

  init(version: RemoteCommandProtocol, session: RemoteCommandSession, logger: Logger) {
    self.version = version
    self.session = session
    self.logger = logger
  }

  func handlerAdded(context: ChannelHandlerContext) {
    let writer = WebSocketChannelWriter(channel: context.channel)
    self.writer = writer
    let options = session.options
    writer.write(channel: options.stdout ? 1 : options.stderr ? 2 : 3, ByteBuffer())
    session.start()
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard let writer, let payload = writer.handleControl(unwrapInboundIn(data)) else { return }
    guard let number = payload.getInteger(at: payload.readerIndex, as: UInt8.self) else { return }
    let body = payload.getSlice(at: payload.readerIndex + 1, length: payload.readableBytes - 1)!
    switch number {
    case 0:
      if body.readableBytes > 0 { session.clientStdin(body) }
    case 4:
      for size in resizeParser.feed(body.readableBytesView) { session.clientResize(size) }
    case 255 where version == .v5:
      if body.getInteger(at: body.readerIndex, as: UInt8.self) == 0 { session.clientStdinEnd() }
    default:
      logger.debug("WebSocket message on channel \(number) ignored")
    }
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable { session.clientWritable() }
    context.fireChannelWritabilityChanged()
  }

  func channelInactive(context: ChannelHandlerContext) {
    ended = true
    session.clientGone()
    context.fireChannelInactive()
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if event is IdleStateHandler.IdleStateEvent {
      logger.info("streaming connection idle too long: closing it")
      context.close(promise: nil)
      return
    }
    context.fireUserInboundEventTriggered(event)
  }

  func errorCaught(context: ChannelHandlerContext, error: Error) {
    logger.debug("WebSocket streaming connection: \(error)")
    context.close(promise: nil)
  }

  // MARK: RemoteCommandTransport

  func send(_ output: RemoteCommandOutput, _ data: ByteBuffer) {
    let wanted = output == .stdout ? session.options.stdout : session.options.stderr
    guard wanted else { return }
    writer?.write(channel: output == .stdout ? 1 : 2, data)
  }

  var canSend: Bool { writer?.isWritable ?? true }

  func pauseReading() { writer?.pauseReading() }

  func resumeReading() { writer?.resumeReading() }

  func end(status: RemoteCommandStatus) {
    guard !ended, let writer else { return }
    ended = true
    if let text = version.statusIsJSON ? status.json : status.plainText {
      var buffer = ByteBuffer()
      buffer.writeString(text)
      writer.write(channel: 3, buffer)
    }
    writer.close()
  }
}
