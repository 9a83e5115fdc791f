import NIOCore
import NIOHTTP1

/// Why a streaming HTTP request is answered with an error instead of an upgrade: carried from
/// the upgraders (as the error of their response future) to `StreamingHTTPHandler`, which
/// writes it.
struct StreamingRefusal: Error, Sendable {
  var status: HTTPResponseStatus
  var message: String
  var headers: [(String, String)] = []

  static func notFound() -> StreamingRefusal {
    StreamingRefusal(status: .notFound, message: "404 page not found")
  }
}

/// The per-connection hand-over between the upgrader that accepted a request and the handler
/// that writes a refusal. Lives on the connection's event loop.
final class StreamingConnectionState {
  var refusal: StreamingRefusal?
  var prepared: StreamingServer.PreparedSession?
}

/// Answers every request that is not upgraded: the refusal an upgrader left, or 404/400 for
/// plain requests. Then closes the connection (one request per connection here).
final class StreamingHTTPHandler: ChannelInboundHandler, RemovableChannelHandler {
  static let name = "crisp-streaming-http"

  typealias InboundIn = HTTPServerRequestPart
  typealias OutboundOut = HTTPServerResponsePart

  private let state: StreamingConnectionState
  private let server: StreamingServer
  private var head: HTTPRequestHead?

  init(state: StreamingConnectionState, server: StreamingServer) {
    self.state = state
    self.server = server
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    switch unwrapInboundIn(data) {
    case .head(let head):
      self.head = head
    case .body:
      break
    case .end:
      guard let head else { return }
      self.head = nil
      respond(context: context, refusal: state.refusal ?? server.refusalForPlainRequest(head))
    }
  }

  func errorCaught(context: ChannelHandlerContext, error: Error) {
    if let refusal = error as? StreamingRefusal {
      state.refusal = refusal
      return
    }
    context.close(promise: nil)
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if event is IdleStateHandler.IdleStateEvent {
      context.close(promise: nil)
      return
    }
    context.fireUserInboundEventTriggered(event)
  }

  private func respond(context: ChannelHandlerContext, refusal: StreamingRefusal) {
    var headers = HTTPHeaders(refusal.headers)
    let body = refusal.message + "\n"
    headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
    headers.add(name: "Content-Length", value: String(body.utf8.count))
    headers.add(name: "Connection", value: "close")
    context.write(
      wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: refusal.status, headers: headers))),
      promise: nil)
    var buffer = context.channel.allocator.buffer(capacity: body.utf8.count)
    buffer.writeString(body)
    context.write(wrapOutboundOut(.body(.byteBuffer(buffer))), promise: nil)
    let channel = context.channel
    context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
  }
}
