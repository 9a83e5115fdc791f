import CrispCore
import Logging
import NIOCore

/// Port forwarding over SPDY (kubelet's portforward httpStreamHandler): for each forwarded
/// connection the client opens an error stream and a data stream with the same `requestID` and
/// `port` headers; we connect to the port inside the pod and relay the data stream both ways,
/// half-closes included. A failure is written as text on the error stream.
final class PortForwardSPDY: SPDYStreamDelegate {
  private final class Pair {
    let requestID: String
    let port: UInt16
    var dataStream: UInt32?
    var errorStream: UInt32?
    var channel: Channel?
    var started = false
    var done = false
    var clientFinished = false
    var podFinished = false
    var queued: [ByteBuffer] = []
    var pausedClient = false
    var timer: Scheduled<Void>?

    init(requestID: String, port: UInt16) {
      self.requestID = requestID
      self.port = port
    }
  }

  private let podID: String
  private let allowedPorts: [UInt16]
  private let backend: any StreamingBackend
  private let logger: Logger
  private let creationTimeout: TimeAmount
  private weak var connection: SPDYConnectionHandler?
  private var pairs: [String: Pair] = [:]
  private var byStream: [UInt32: Pair] = [:]

  init(
    podID: String, allowedPorts: [UInt16], backend: any StreamingBackend, logger: Logger, creationTimeout: TimeAmount
  ) {
    self.podID = podID
    self.allowedPorts = allowedPorts
    self.backend = backend
    self.logger = logger
    self.creationTimeout = creationTimeout
  }

  func attached(to connection: SPDYConnectionHandler) {
    self.connection = connection
    connection.delegate = self
  }

  func spdyStreamOpened(_ streamID: UInt32, headers: SPDYHeaders, connection: SPDYConnectionHandler) -> Bool {
    // kubelet's checks: a port in 1...65535, a stream type of data or error.
    guard let portText = headers["port"], let port = UInt16(portText), port > 0 else {
      logger.info("port-forward stream without a valid port header refused")
      return false
    }
    let type = headers["streamtype"]
    guard type == "data" || type == "error" else {
      logger.info("port-forward stream of type \(type ?? "(none)") refused")
      return false
    }
    guard let requestID = headers["requestid"] else {
      logger.info("port-forward stream without requestID refused (clients before Kubernetes 1.5)")
      return false
    }
    let pair: Pair
    if let existing = pairs[requestID] {
      pair = existing
      guard pair.port == port, !pair.started else { return false }
    } else {
      pair = Pair(requestID: requestID, port: port)
      pairs[requestID] = pair
      pair.timer = connection.eventLoop?.assumeIsolated().scheduleTask(in: creationTimeout) { [weak self, weak pair] in
        guard let self, let pair, !pair.started else { return }
        self.logger.info("port-forward request \(requestID): the client opened only one of its two streams")
        self.end(pair)
      }
    }
    if type == "data" {
      guard pair.dataStream == nil else { return false }
      pair.dataStream = streamID
    } else {
      guard pair.errorStream == nil else { return false }
      pair.errorStream = streamID
    }
    byStream[streamID] = pair
    if pair.dataStream != nil && pair.errorStream != nil {
      pair.started = true
      pair.timer?.cancel()
      connection.eventLoop?.assumeIsolated().execute { [weak self] in self?.start(pair) }
    }
    return true
  }

  private func start(_ pair: Pair) {
    guard let connection, let eventLoop = connection.eventLoop, !pair.done else { return }
    if !allowedPorts.isEmpty && !allowedPorts.contains(pair.port) {
      fail(pair, "port \(pair.port) was not part of the PortForward request")
      return
    }
    setPaused(pair, true)  // client data waits until the pod's port is connected
    let backend = self.backend
    let podID = self.podID
    let port = pair.port
    let me = NIOLoopBound(self, eventLoop: eventLoop)
    let boundPair = NIOLoopBound(pair, eventLoop: eventLoop)
    BackendConnection.obtain(on: eventLoop) {
      try await backend.portForward(podID: podID, port: port)
    } then: { result in
      let this = me.value
      let pair = boundPair.value
      switch result {
      case .failure(let error):
        this.fail(pair, error.message)
      case .success(let fd):
        guard !pair.done else {
          closeFD(fd)
          return
        }
        BackendConnection.connect(fd: fd, on: eventLoop) { channel in
          try channel.pipeline.syncOperations.addHandler(PortForwardRelayHandler(me.value.relay(for: boundPair.value)))
        }.whenComplete { result in
          switch result {
          case .success(let channel): me.value.connected(boundPair.value, channel)
          case .failure(let error): me.value.fail(boundPair.value, "cannot use the forwarded socket: \(error)")
          }
        }
      }
    }
  }

  private func connected(_ pair: Pair, _ channel: Channel) {
    guard !pair.done else {
      channel.close(promise: nil)
      return
    }
    pair.channel = channel
    for data in pair.queued { channel.write(data, promise: nil) }
    pair.queued.removeAll()
    channel.flush()
    if pair.clientFinished { channel.close(mode: .output, promise: nil) }
    setPaused(pair, !channel.isWritable)
  }

  private func relay(for pair: Pair) -> PortForwardRelay {
    PortForwardRelay(
      data: { [weak self, weak pair] data in
        guard let self, let pair, let stream = pair.dataStream, let connection = self.connection else { return }
        connection.send(stream, data)
        if !connection.canSend(stream) {
          try? pair.channel?.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
        }
      },
      inputClosed: { [weak self, weak pair] in
        guard let self, let pair, let stream = pair.dataStream else { return }
        pair.podFinished = true
        self.connection?.finish(stream)
        if pair.clientFinished { self.end(pair) }
      },
      writable: { [weak self, weak pair] in
        guard let self, let pair else { return }
        self.setPaused(pair, false)
      },
      closed: { [weak self, weak pair] in
        guard let self, let pair else { return }
        self.end(pair)
      })
  }

  private func setPaused(_ pair: Pair, _ paused: Bool) {
    guard paused != pair.pausedClient else { return }
    pair.pausedClient = paused
    if paused { connection?.pauseReading() } else { connection?.resumeReading() }
  }

  /// Reports `message` on the pair's error stream (kubelet's wording) and ends the pair.
  private func fail(_ pair: Pair, _ message: String) {
    guard !pair.done else { return }
    logger.info("port-forward to port \(pair.port) of pod \(podID): \(message)")
    if let stream = pair.errorStream {
      var buffer = ByteBuffer()
      buffer.writeString("error forwarding port \(pair.port) to pod \(podID), uid : \(message)")
      connection?.send(stream, buffer)
    }
    end(pair)
  }

  private func end(_ pair: Pair) {
    guard !pair.done else { return }
    pair.done = true
    pair.timer?.cancel()
    setPaused(pair, false)
    pair.channel?.close(promise: nil)
    for stream in [pair.dataStream, pair.errorStream].compactMap({ $0 }) {
      connection?.finish(stream)
      byStream[stream] = nil
    }
    pairs[pair.requestID] = nil
  }

  func spdyStreamData(_ streamID: UInt32, data: ByteBuffer) {
    guard let pair = byStream[streamID], streamID == pair.dataStream, !pair.done else { return }
    if let channel = pair.channel {
      channel.writeAndFlush(data, promise: nil)
      if !channel.isWritable { setPaused(pair, true) }
    } else {
      pair.queued.append(data)
    }
  }

  func spdyStreamRemoteFinished(_ streamID: UInt32) {
    guard let pair = byStream[streamID], streamID == pair.dataStream else { return }
    pair.clientFinished = true
    if pair.podFinished {
      end(pair)
      return
    }
    // The client's EOF becomes a TCP half-close towards the pod's port.
    pair.channel?.close(mode: .output, promise: nil)
  }

  func spdyStreamReset(_ streamID: UInt32) {
    guard let pair = byStream[streamID] else { return }
    byStream[streamID] = nil
    if streamID == pair.dataStream { pair.dataStream = nil } else { pair.errorStream = nil }
    end(pair)
  }

  func spdyWritable() {
    for pair in pairs.values {
      guard let channel = pair.channel, let stream = pair.dataStream, connection?.canSend(stream) == true else {
        continue
      }
      try? channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
      channel.read()
    }
  }

  func spdyConnectionClosed() {
    for pair in Array(pairs.values) { end(pair) }
  }
}

/// Callbacks from a forwarded TCP socket to whoever relays it.
struct PortForwardRelay {
  var data: (ByteBuffer) -> Void
  var inputClosed: () -> Void
  var writable: () -> Void
  var closed: () -> Void
}

final class PortForwardRelayHandler: ChannelInboundHandler {
  typealias InboundIn = ByteBuffer

  private let relay: PortForwardRelay

  init(_ relay: PortForwardRelay) {
    self.relay = relay
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    relay.data(unwrapInboundIn(data))
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if case ChannelEvent.inputClosed = event { relay.inputClosed() }
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable { relay.writable() }
  }

  func channelInactive(context: ChannelHandlerContext) {
    relay.closed()
  }

  func errorCaught(context: ChannelHandlerContext, error: Error) {
    context.close(promise: nil)
  }
}
