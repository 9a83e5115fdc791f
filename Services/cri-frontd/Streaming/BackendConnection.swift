import CrispCore
import NIOCore
import NIOPosix

#if canImport(Glibc)
  import Glibc
#endif

/// Puts a backend's connected socket (exec/attach session or port-forward TCP) into a NIO channel
/// on the client connection's event loop, so that relaying between the two needs no locks.
enum BackendConnection {
  static func connect(
    fd: Int32, on eventLoop: EventLoop,
    handlers: @escaping @Sendable (Channel) throws -> Void
  ) -> EventLoopFuture<Channel> {
    ClientBootstrap(group: eventLoop)
      // Port forwarding half-closes: EOF from the pod's port must not tear down the other way.
      .channelOption(.allowRemoteHalfClosure, value: true)
      .channelInitializer { channel in
        do {
          try handlers(channel)
          return channel.eventLoop.makeSucceededVoidFuture()
        } catch {
          return channel.eventLoop.makeFailedFuture(error)
        }
      }
      .withConnectedSocket(fd)
  }

  /// Runs `start` (a backend call) off the event loop and comes back to it with the fd, or the
  /// error as a CrispError. An fd that arrives after the client left is closed at once.
  static func obtain(
    on eventLoop: EventLoop, _ start: @escaping @Sendable () async throws -> Int32,
    then deliver: @escaping @Sendable (Result<Int32, CrispError>) -> Void
  ) {
    Task {
      let result: Result<Int32, CrispError>
      do {
        result = .success(try await start())
      } catch let error as CrispError {
        result = .failure(error)
      } catch {
        result = .failure(CrispError(.internal, "\(error)"))
      }
      eventLoop.execute { deliver(result) }
    }
  }
}

/// Hands the backend's session frames and events to the session that owns the connection.
final class BackendSessionHandler: ChannelInboundHandler {
  typealias InboundIn = SessionFrame

  private let session: RemoteCommandSession

  init(session: RemoteCommandSession) {
    self.session = session
  }

  func channelRead(context: ChannelHandlerContext, data: NIOAny) {
    session.backendFrame(unwrapInboundIn(data))
  }

  func channelWritabilityChanged(context: ChannelHandlerContext) {
    if context.channel.isWritable { session.backendWritable() }
    context.fireChannelWritabilityChanged()
  }

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if case ChannelEvent.inputClosed = event {
      // The shim closes after its end frame; without one the session is cut.
      context.close(promise: nil)
    }
  }

  func channelInactive(context: ChannelHandlerContext) {
    session.backendClosed()
  }

  func errorCaught(context: ChannelHandlerContext, error: Error) {
    session.backendFailed("\(error)")
    context.close(promise: nil)
  }
}

func closeFD(_ fd: Int32) {
  _ = Glibc.close(fd)
}
