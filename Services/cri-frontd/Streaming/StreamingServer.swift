import CrispCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import Synchronization

/// Settings of the streaming server (the `stream_*` keys of `[frontd]`).
public struct StreamingServerConfiguration: Sendable, Equatable {
  public var address = "127.0.0.1"
  /// 0 picks a free port.
  public var port = 0
  /// PEM files; empty cert and key mean plain HTTP. A client CA makes client certificates mandatory.
  public var tlsCertificatePath = ""
  public var tlsKeyPath = ""
  public var tlsClientCAPath = ""
  /// A connection with no traffic this long is closed (kubelet's default: 4 hours).
  public var idleTimeoutMs: Int64 = 4 * 3600 * 1000
  /// How long a URL returned by Exec/Attach/PortForward stays valid.
  public var tokenTTLMs: Int64 = 60_000
  /// Upgraded connections at once; more are refused with 429.
  public var maxSessions = 256
  /// How long a SPDY client may take to open its streams (kubelet: 30 s).
  public var streamCreationTimeoutMs: Int64 = 30_000

  public init() {}
}

/// The HTTP server behind the URLs that Exec, Attach and PortForward return: SPDY/3.1 and
/// WebSocket upgrades, single-use tokens, and relaying to a `StreamingBackend`.
public final class StreamingServer: Sendable {
  public let configuration: StreamingServerConfiguration
  public let tokens: TokenCache
  let backend: any StreamingBackend
  let logger: Logger
  private let group: MultiThreadedEventLoopGroup
  private let listener = Mutex<(channel: Channel?, baseURL: String?)>((nil, nil))
  private let sessions = Mutex(0)

  public init(configuration: StreamingServerConfiguration, backend: any StreamingBackend, logger: Logger) {
    self.configuration = configuration
    self.tokens = TokenCache(ttlMs: configuration.tokenTTLMs)
    self.backend = backend
    self.logger = logger
    self.group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
  }

  /// Binds and serves; returns the base URL (scheme://host:port).
  @discardableResult
  public func start() async throws -> String {
    let sslContext = try makeSSLContext()
    let idle = TimeAmount.milliseconds(configuration.idleTimeoutMs)
    let bootstrap = ServerBootstrap(group: group)
      .serverChannelOption(.backlog, value: 256)
      .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
      // IPPROTO_TCP: at SOL_SOCKET, option 1 is SO_DEBUG, which frontd (no CAP_NET_ADMIN)
      // is refused, and NIO then closes every connection.
      .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
      .childChannelInitializer { [self] channel in
        channel.eventLoop.makeCompletedFuture {
          let sync = channel.pipeline.syncOperations
          if let sslContext {
            try sync.addHandler(NIOSSLServerHandler(context: sslContext))
          }
          try sync.addHandler(IdleStateHandler(allTimeout: idle))
          try self.configurePipeline(channel)
        }
      }
    let channel: Channel
    do {
      channel = try await bootstrap.bind(host: configuration.address, port: configuration.port).get()
    } catch {
      throw CrispError(
        .unavailable, "streaming server: cannot listen on \(configuration.address):\(configuration.port): \(error)")
    }
    let port = channel.localAddress?.port ?? configuration.port
    let host = configuration.address.contains(":") ? "[\(configuration.address)]" : configuration.address
    let url = "\(sslContext == nil ? "http" : "https")://\(host):\(port)"
    listener.withLock { $0 = (channel, url) }
    logger.info("streaming server listening on \(url)")
    return url
  }

  public func stop() async {
    let channel = listener.withLock { state in
      defer { state.channel = nil }
      return state.channel
    }
    try? await channel?.close()
    try? await group.shutdownGracefully()
  }

  public var baseURL: String? { listener.withLock { $0.baseURL } }

  /// Stores a validated request and returns the URL its client must connect to.
  public func url(for request: StreamRequest) throws -> String {
    guard let base = baseURL else { throw CrispError(.unavailable, "the streaming server is not running") }
    let token = try tokens.insert(request)
    return "\(base)/\(request.pathKind)/\(token)"
  }

  public var activeSessions: Int { sessions.withLock { $0 } }

  private func makeSSLContext() throws -> NIOSSLContext? {
    let cert = configuration.tlsCertificatePath
    let key = configuration.tlsKeyPath
    guard !cert.isEmpty || !key.isEmpty else { return nil }
    guard !cert.isEmpty, !key.isEmpty else {
      throw CrispError(.invalidArgument, "streaming TLS needs both stream_tls_cert and stream_tls_key")
    }
    do {
      var tls = TLSConfiguration.makeServerConfiguration(
        certificateChain: try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) },
        privateKey: .privateKey(try NIOSSLPrivateKey(file: key, format: .pem)))
      if !configuration.tlsClientCAPath.isEmpty {
        tls.trustRoots = .file(configuration.tlsClientCAPath)
        tls.certificateVerification = .noHostnameVerification
      }
      return try NIOSSLContext(configuration: tls)
    } catch {
      throw CrispError(.invalidArgument, "streaming TLS (\(cert), \(key)): \(error)")
    }
  }

  // MARK: per connection

  private func configurePipeline(_ channel: Channel) throws {
    let state = StreamingConnectionState()
    let spdy = SPDYUpgrader(server: self)
    let loopState = NIOLoopBound(state, eventLoop: channel.eventLoop)
    let webSocket = NIOWebSocketServerUpgrader(
      maxFrameSize: 1 << 20, automaticErrorHandling: true,
      shouldUpgrade: { [self] channel, head in
        do {
          let prepared = try self.prepare(head, webSocket: true)
          loopState.value.prepared = prepared
          var headers = HTTPHeaders()
          if !prepared.protocolName.isEmpty {
            headers.add(name: "Sec-WebSocket-Protocol", value: prepared.protocolName)
          }
          return channel.eventLoop.makeSucceededFuture(headers)
        } catch {
          return channel.eventLoop.makeFailedFuture(error)
        }
      },
      upgradePipelineHandler: { [self] channel, _ in
        channel.eventLoop.makeCompletedFuture {
          guard let prepared = loopState.value.prepared else { throw StreamingRefusal.notFound() }
          try self.startWebSocket(prepared, channel: channel)
        }
      })
    spdy.state = state
    try channel.pipeline.syncOperations.configureHTTPServerPipeline(
      withPipeliningAssistance: false,
      // The upgrade handler calls this before the upgrader adds its handlers (at the end of
      // the pipeline): the HTTP fallback must be gone by then, or it would see protocol bytes.
      withServerUpgrade: (
        upgraders: [spdy, webSocket],
        completionHandler: { context in
          context.pipeline.syncOperations.removeHandler(name: StreamingHTTPHandler.name, promise: nil)
        }
      ),
      withErrorHandling: true)
    try channel.pipeline.syncOperations.addHandler(
      StreamingHTTPHandler(state: state, server: self), name: StreamingHTTPHandler.name)
  }

  /// A request that passed every check: its token was valid (and is now used up).
  struct PreparedSession {
    var request: StreamRequest
    var protocolName: String
    /// WebSocket port forwarding names its ports in the query (`?port=8080&port=9090`).
    var webSocketPorts: [UInt16]? = nil
  }

  /// Routes and checks an upgrade request; consumes its token. Throws the HTTP refusal.
  func prepare(_ head: HTTPRequestHead, webSocket: Bool) throws -> PreparedSession {
    guard head.method == .GET || head.method == .POST else {
      throw StreamingRefusal(status: .methodNotAllowed, message: "\(head.method) is not allowed")
    }
    let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
    let parts = path.split(separator: "/", omittingEmptySubsequences: true)
    guard parts.count == 2, let request = tokens.consume(String(parts[1])), request.pathKind == parts[0] else {
      throw StreamingRefusal.notFound()
    }
    let offered: [String]
    if webSocket {
      offered = head.headers["Sec-WebSocket-Protocol"].flatMap { $0.split(separator: ",") }.map {
        $0.trimmingCharacters(in: .whitespaces)
      }
    } else {
      offered = head.headers["X-Stream-Protocol-Version"].flatMap { $0.split(separator: ",") }.map {
        $0.trimmingCharacters(in: .whitespaces)
      }
    }
    let supported: [String]
    switch (request, webSocket) {
    case (.portForward, false): supported = [PortForwardProtocol.spdy]
    case (.portForward, true): supported = PortForwardProtocol.webSocket
    case (_, false): supported = RemoteCommandProtocol.spdy.map(\.rawValue)
    case (_, true): supported = RemoteCommandProtocol.webSocket.map(\.rawValue)
    }
    let chosen: String
    if offered.isEmpty {
      // kubelet: SPDY clients must negotiate; a WebSocket client without a subprotocol gets
      // the original channel protocol.
      guard webSocket else {
        throw StreamingRefusal(status: .badRequest, message: "unable to upgrade: X-Stream-Protocol-Version is required")
      }
      chosen = ""
    } else if let match = offered.first(where: supported.contains) {
      chosen = match
    } else {
      throw StreamingRefusal(
        status: .forbidden,
        message:
          "unable to upgrade: unable to negotiate protocol: client supports \(offered), server accepts \(supported)",
        headers: webSocket ? [] : supported.map { ("X-Accepted-Stream-Protocol-Versions", $0) })
    }
    var webSocketPorts: [UInt16]?
    if webSocket, case .portForward(_, let allowed) = request {
      let ports = try Self.queryPorts(head.uri)
      guard !ports.isEmpty || !allowed.isEmpty else {
        throw StreamingRefusal(status: .badRequest, message: "query parameter \"port\" is required")
      }
      if let refused = ports.first(where: { !allowed.isEmpty && !allowed.contains($0) }) {
        throw StreamingRefusal(status: .badRequest, message: "port \(refused) was not part of the PortForward request")
      }
      webSocketPorts = ports.isEmpty ? allowed : ports
    }
    let admitted = sessions.withLock { count in
      guard count < configuration.maxSessions else { return false }
      count += 1
      return true
    }
    guard admitted else {
      throw StreamingRefusal(
        status: .tooManyRequests, message: "too many streaming sessions (\(configuration.maxSessions)); try again later"
      )
    }
    return PreparedSession(request: request, protocolName: chosen, webSocketPorts: webSocketPorts)
  }

  /// `port` query parameters, each a port or a comma-separated list (kubelet's NewV4Options).
  static func queryPorts(_ uri: String) throws -> [UInt16] {
    guard let query = uri.split(separator: "?", maxSplits: 1).dropFirst().first else { return [] }
    var ports: [UInt16] = []
    for item in query.split(separator: "&") {
      let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
      guard pair.count == 2, pair[0] == "port" else { continue }
      for text in pair[1].split(separator: ",", omittingEmptySubsequences: false) {
        guard let port = UInt16(text), port > 0 else {
          throw StreamingRefusal(status: .badRequest, message: "unable to parse \"\(pair[1])\" as a port")
        }
        ports.append(port)
      }
    }
    return ports
  }

  /// An admitted session's connection is gone.
  func sessionEnded() {
    sessions.withLock { $0 -= 1 }
  }

  /// A plain (not upgraded) request: its token is used up all the same, as kubelet does.
  func refusalForPlainRequest(_ head: HTTPRequestHead) -> StreamingRefusal {
    let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
    let parts = path.split(separator: "/", omittingEmptySubsequences: true)
    guard parts.count == 2, let request = tokens.consume(String(parts[1])), request.pathKind == parts[0] else {
      return .notFound()
    }
    return StreamingRefusal(status: .badRequest, message: "unable to upgrade: missing upgrade headers in request")
  }

  // MARK: starting sessions

  func startSPDY(_ prepared: PreparedSession, context: ChannelHandlerContext) throws {
    let channel = context.channel
    channel.closeFuture.whenComplete { [self] _ in self.sessionEnded() }
    let connection = SPDYConnectionHandler(logger: logger)
    let sync = channel.pipeline.syncOperations
    try sync.addHandler(ByteToMessageHandler(SPDYFrameDecoder()))
    try sync.addHandler(SPDYFrameEncoder())
    try sync.addHandler(connection)
    switch prepared.request {
    case .exec, .attach:
      let version = RemoteCommandProtocol(rawValue: prepared.protocolName) ?? .v4
      let session = makeSession(prepared.request, eventLoop: channel.eventLoop)
      let adapter = RemoteCommandSPDY(version: version, session: session, logger: logger)
      session.transport = adapter
      connection.application = adapter
      adapter.attached(to: connection, creationTimeout: .milliseconds(configuration.streamCreationTimeoutMs))
    case .portForward(let podID, let ports):
      let adapter = PortForwardSPDY(
        podID: podID, allowedPorts: ports, backend: backend, logger: logger,
        creationTimeout: .milliseconds(configuration.streamCreationTimeoutMs))
      connection.application = adapter
      adapter.attached(to: connection)
    }
  }

  func startWebSocket(_ prepared: PreparedSession, channel: Channel) throws {
    channel.closeFuture.whenComplete { [self] _ in self.sessionEnded() }
    let sync = channel.pipeline.syncOperations
    try sync.addHandler(
      NIOWebSocketFrameAggregator(
        minNonFinalFragmentSize: 0, maxAccumulatedFrameCount: 64, maxAccumulatedFrameSize: 1 << 20))
    switch prepared.request {
    case .exec, .attach:
      let version = RemoteCommandProtocol(rawValue: prepared.protocolName) ?? .v1
      let session = makeSession(prepared.request, eventLoop: channel.eventLoop)
      let handler = RemoteCommandWebSocket(version: version, session: session, logger: logger)
      session.transport = handler
      try sync.addHandler(handler)
    case .portForward(let podID, let ports):
      try sync.addHandler(
        PortForwardWebSocket(podID: podID, ports: prepared.webSocketPorts ?? ports, backend: backend, logger: logger))
    }
  }

  private func makeSession(_ request: StreamRequest, eventLoop: EventLoop) -> RemoteCommandSession {
    switch request {
    case .exec(let containerID, let command, let options):
      return RemoteCommandSession(
        kind: .exec(containerID: containerID, command: command), options: options, backend: backend,
        eventLoop: eventLoop, logger: logger, onFinish: {})
    case .attach(let containerID, let options):
      return RemoteCommandSession(
        kind: .attach(containerID: containerID), options: options, backend: backend, eventLoop: eventLoop,
        logger: logger, onFinish: {})
    case .portForward:
      preconditionFailure("port forwarding is no remotecommand session")
    }
  }
}

/// The SPDY/3.1 upgrade: checks the request in `buildUpgradeResponse` (a refusal fails the
/// future, and `StreamingHTTPHandler` answers it), then swaps HTTP for SPDY.
final class SPDYUpgrader: HTTPServerProtocolUpgrader {
  let supportedProtocol = "SPDY/3.1"
  let requiredUpgradeHeaders: [String] = []
  private let server: StreamingServer
  var state: StreamingConnectionState?

  init(server: StreamingServer) {
    self.server = server
  }

  func buildUpgradeResponse(channel: Channel, upgradeRequest: HTTPRequestHead, initialResponseHeaders: HTTPHeaders)
    -> EventLoopFuture<HTTPHeaders>
  {
    do {
      let prepared = try server.prepare(upgradeRequest, webSocket: false)
      state?.prepared = prepared
      var headers = initialResponseHeaders
      headers.add(name: "X-Stream-Protocol-Version", value: prepared.protocolName)
      return channel.eventLoop.makeSucceededFuture(headers)
    } catch {
      return channel.eventLoop.makeFailedFuture(error)
    }
  }

  func upgrade(context: ChannelHandlerContext, upgradeRequest: HTTPRequestHead) -> EventLoopFuture<Void> {
    guard let prepared = state?.prepared else {
      return context.eventLoop.makeFailedFuture(StreamingRefusal.notFound())
    }
    do {
      try server.startSPDY(prepared, context: context)
      return context.eventLoop.makeSucceededVoidFuture()
    } catch {
      return context.eventLoop.makeFailedFuture(error)
    }
  }
}

/// Port-forward sub-protocols.
enum PortForwardProtocol {
  static let spdy = "portforward.k8s.io"
  /// kubelet's WebSocket port forwarding answers "" and v4.channel.k8s.io; the names the API
  /// server's tunnel uses are accepted as the same channel protocol.
  static let webSocket = ["v4.channel.k8s.io", "portforward.k8s.io"]
}
