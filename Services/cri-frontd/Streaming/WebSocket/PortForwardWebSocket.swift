import CrispCore
import Logging
import NIOCore
import NIOWebSocket

/// Port forwarding over WebSocket (kubelet's portforward websocket.go): for the i-th port of
/// the request, channel 2i carries data and 2i+1 errors; the first message on each is the port,
/// 2 bytes little-endian. One connection per port for the whole WebSocket.
final class PortForwardWebSocket: ChannelInboundHandler {
  typealias InboundIn = WebSocketFrame
  typealias OutboundOut = WebSocketFrame

  private final class Forward {
    let index: Int
    let port: UInt16
    var channel: Channel?
    var queued: [ByteBuffer] = []
    var done = false
    var pausedClient = false

    init(index: Int, port: UInt16) {
      self.index = index
      self.port = port
    }
  }

  private let podID: String
  private let backend: any StreamingBackend
  private let logger: Logger
  private var forwards: [Forward]
  private var writer: WebSocketChannelWriter?

  init(podID: String, ports: [UInt16], backend: any StreamingBackend, logger: Logger) {
    self.podID = podID
    self.backend = backend
    self.logger = logger
    self.forwards = ports.enumerated().map { Forward(index: $0.offset, port: $0.element) }
  }

  func handlerAdded(context: ChannelHandlerContext) {
    let writer = WebSocketChannelWriter(channel: context.channel)
    self.writer = writer
    for forward in forwards {
      var port = ByteBuffer()
      port.writeInteger(forward.port, endianness: .little)
      writer.write(channel: UInt8(2 * forward.index), port)
      writer.write(channel: UInt8(2 * forward.index + 1), port)
    }
    for forward in forwards { start(forward, eventLoop: context.eventLoop) }
  }

  private func start(_ forward: Forward, eventLoop: EventLoop) {
    setPaused(forward, true)
    let backend = self.backend
    let podID = self.podID
    let port = forward.port
    let me = NIOLoopBound(self, eventLoop: eventLoop)
    let bound = NIOLoopBound(forward, eventLoop: eventLoop)
    BackendConnection.obtain(on: eventLoop) {
      try await backend.portForward(podID: podID, port: port)
    } then: { result in
      switch result {
      case .failure(let error):
        me.value.fail(bound.value, error.message)
      case .success(let fd):
        guard !bound.value.done else {
          closeFD(fd)
          return
        }
        BackendConnection.connect(fd: fd, on: eventLoop) { channel in
          try channel.pipeline.syncOperations.addHandler(PortForwardRelayHandler(me.value.relay(for: bound.value)))
        }.whenComplete { result in
          switch result {
          case .success(let channel): me.value.connected(bound.value, channel)
          case .failure(let error): me.value.fail(bound.value, "cannot use the forwarded socket: \(error)")
          }
        }
      }
    }
  }

  private func connected(_ forward: Forward, _ channel: Channel) {
    guard !forward.done else {
      channel.close(promise: nil)
      return
    }
    forward.channel = channel
    for data in forward.queued { channel.write(data, promise: nil) }
    forward.queued.removeAll()
    channel.flush()
    setPaused(forward, !channel.isWritable)
  }

  private func relay(for forward: Forward) -> PortForwardRelay {
    PortForwardRelay(
      data: { [weak self, weak forward] data in
        guard let self, let forward, let writer = self.writer else { return }
        writer.write(channel: UInt8(2 * forward.index), data)
        if !writer.isWritable {
          try? forward.channel?.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
        }
      },
      inputClosed: { [weak self, weak forward] in
        // WebSocket has no half-close: the pod's EOF ends this port's forwarding.
        guard let self, let forward else { return }
        self.end(forward)
      },
      writable: { [weak self, weak forward] in
        guard let self, let forward else { return }
        self.setPaused(forward, false)
      },
      closed: { [weak self, weak forward] in
        guard let self, let forward else { return }
        self.end(forward)
      })
  }

  private func setPaused(_ forward: Forward, _ paused: Bool) {
    guard paused != forward.pausedClient else { return }
    forward.pausedClient = paused
    if paused { writer?.pauseReading() } else { writer?.resumeReading() }
  }

  private func fail(_ forward: Forward, _ message: String) {
    guard !forward.done else { return }
    logger.info("port-forward to port \(forward.port) of pod \(podID): \(message)")
    var buffer = ByteBuffer()
    buffer.writeString("error forwarding port \(forward.port) to pod \(podID), uid : \(message)")
    writer?.write(channel: UInt8(2 * forward.index + 1), buffer)
    end(forward)
  }

  private func end(_ forward: Forward) {
    guard !forward.done else { return }
    forward.done = true
    setPaused(forward, false)
    forward.channel?.close(promise: nil)
    // kubelet closes the WebSocket once every port's forwarding is over.
    if forwards.allSatisfy(\.done) { writer?.close() }
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    guard let writer, let payload = writer.handleControl(unwrapInboundIn(data)) else { return }
    guard let number = payload.getInteger(at: payload.readerIndex, as: UInt8.self), number % 2 == 0,
      Int(number / 2) < forwards.count
    else { return }
    let forward = forwards[Int(number / 2)]
    guard !forward.done, payload.readableBytes > 1 else { return }
    let body = payload.getSlice(at: payload.readerIndex + 1, length: payload.readableBytes - 1)!
    if let channel = forward.channel {
      channel.writeAndFlush(body, promise: nil)
      if !channel.isWritable { setPaused(forward, true) }
    } else {
      forward.queued.append(body)
    }
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable {
      for forward in forwards where !forward.done {
        if let channel = forward.channel {
          try? channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
          channel.read()
        }
      }
    }
    context.fireChannelWritabilityChanged()
  }

  func channelInactive(context: ChannelHandlerContext) {
    for forward in forwards where !forward.done {
      forward.done = true
      forward.channel?.close(promise: nil)
    }
    context.fireChannelInactive()
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if event is IdleStateHandler.IdleStateEvent {
      context.close(promise: nil)
      return
    }
    context.fireUserInboundEventTriggered(event)
  }

  func errorCaught(context: ChannelHandlerContext, error: Error) {
    logger.debug("WebSocket port-forward connection: \(error)")
    context.close(promise: nil)
  }
}
