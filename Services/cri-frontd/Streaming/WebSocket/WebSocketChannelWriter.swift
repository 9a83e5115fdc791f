import NIOCore
import NIOWebSocket

/// The Kubernetes channel framing over WebSocket (wsstream): every binary message starts with
/// one channel byte. Shared by remotecommand and port forwarding; lives on the event loop.
final class WebSocketChannelWriter {
  private weak var channel: Channel?
  private var pauses = 0
  private var closing = false

  init(channel: Channel) {
    self.channel = channel
  }

  func write(channel number: UInt8, _ data: ByteBuffer) {
    guard let channel, !closing else { return }
    var buffer = channel.allocator.buffer(capacity: 1 + data.readableBytes)
    buffer.writeInteger(number)
    var data = data
    buffer.writeBuffer(&data)
    channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .binary, data: buffer), promise: nil)
  }

  var isWritable: Bool { channel?.isWritable ?? false }

  func pauseReading() {
    pauses += 1
    if pauses == 1, let channel {
      try? channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
    }
  }

  func resumeReading() {
    guard pauses > 0 else { return }
    pauses -= 1
    if pauses == 0, let channel {
      try? channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
      channel.read()
    }
  }

  /// Sends a close frame once everything before it is out, and closes the connection when the
  /// client answers or after a grace period.
  func close(code: WebSocketErrorCode = .normalClosure, grace: TimeAmount = .seconds(5)) {
    guard let channel, !closing else { return }
    closing = true
    while pauses > 0 { resumeReading() }
    var data = channel.allocator.buffer(capacity: 2)
    data.write(webSocketErrorCode: code)
    channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, data: data), promise: nil)
    channel.eventLoop.scheduleTask(in: grace) { [weak channel] in channel?.close(promise: nil) }
  }

  var isClosing: Bool { closing }

  /// Answers the protocol's control frames; returns the data frame's payload, or nil.
  func handleControl(_ frame: WebSocketFrame) -> ByteBuffer? {
    guard let channel else { return nil }
    switch frame.opcode {
    case .binary, .text:
      return frame.unmaskedData
    case .ping:
      channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData), promise: nil)
    case .connectionClose:
      if closing {
        channel.close(promise: nil)
      } else {
        // Echo the client's close, then close.
        closing = true
        var data = channel.allocator.buffer(capacity: 2)
        data.write(webSocketErrorCode: .normalClosure)
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)).whenComplete {
          [weak channel] _ in channel?.close(promise: nil)
        }
      }
    default:
      break
    }
    return nil
  }
}
