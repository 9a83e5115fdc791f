import CrispConfig
import CrispCore
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import Synchronization

/// `GET /metrics` in Prometheus' text format, on `metrics_address:metrics_port` (HTTP/1.1,
/// one request per connection). Runs on NIO's shared event loops (gRPC's), so it adds no
/// threads. Before each answer `refresh` sets the gauges computed from the store.
final class MetricsServer: Sendable {
  typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

  let registry: PrometheusCollectorRegistry
  private let listener: NIOAsyncChannel<Connection, Never>
  private let refresh: @Sendable () async -> Void
  private let logger: Logger
  /// Open connections, closed by `stop`.
  private let open = Mutex<[ObjectIdentifier: any Channel]>([:])
  /// A client that sends no complete request within this long is disconnected.
  static let requestTimeout: TimeAmount = .seconds(10)

  /// The bound port (the configured one, or the one the kernel chose for 0).
  let port: Int

  /// Binds; `run` serves.
  init(
    address: String, port: Int, registry: PrometheusCollectorRegistry, logger: Logger,
    refresh: @escaping @Sendable () async -> Void
  ) async throws(CrispError) {
    self.registry = registry
    self.refresh = refresh
    self.logger = logger
    do {
      listener = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .serverChannelOption(.backlog, value: 64)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .bind(host: address, port: port) { channel in
          channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: Self.requestTimeout))
            try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
            try channel.pipeline.syncOperations.addHandler(IdleCloser())
            return try Connection(wrappingChannelSynchronously: channel)
          }
        }
    } catch {
      throw CrispError(.unavailable, "metrics: cannot listen on \(address):\(port): \(error)")
    }
    self.port = listener.channel.localAddress?.port ?? port
  }

  func run() async {
    do {
      try await withThrowingDiscardingTaskGroup { group in
        try await listener.executeThenClose { inbound in
          for try await connection in inbound {
            group.addTask { await self.serve(connection) }
          }
        }
      }
    } catch {
      logger.debug("metrics listener ended", metadata: ["error": "\(error)"])
    }
  }

  func stop() async {
    try? await listener.channel.close()
    for channel in open.withLock({ Array($0.values) }) { try? await channel.close() }
  }

  private func serve(_ connection: Connection) async {
    let key = ObjectIdentifier(connection.channel)
    open.withLock { $0[key] = connection.channel }
    defer { open.withLock { _ = $0.removeValue(forKey: key) } }
    do {
      try await connection.executeThenClose { inbound, outbound in
        var head: HTTPRequestHead?
        for try await part in inbound {
          switch part {
          case .head(let request): head = request
          case .body: continue  // a scrape has none; anything sent is ignored
          case .end:
            guard let request = head else { return }
            try await respond(to: request, outbound)
            return  // one request per connection: nothing to keep alive across stop
          }
        }
      }
    } catch {
      logger.debug("metrics connection ended", metadata: ["error": "\(error)"])
    }
  }

  private func respond(to request: HTTPRequestHead, _ outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>)
    async throws
  {
    let path = request.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
    let status: HTTPResponseStatus
    var body: [UInt8]
    var headers = HTTPHeaders()
    if path != "/metrics" {
      status = .notFound
      body = Array("not found: only /metrics is served\n".utf8)
      headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
    } else if request.method != .GET && request.method != .HEAD {
      status = .methodNotAllowed
      body = Array("method not allowed: use GET\n".utf8)
      headers.add(name: "Allow", value: "GET, HEAD")
      headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
    } else {
      await refresh()
      status = .ok
      body = registry.emitToBuffer()
      headers.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
    }
    headers.add(name: "Content-Length", value: "\(body.count)")
    headers.add(name: "Connection", value: "close")
    if request.method == .HEAD { body = [] }
    try await outbound.write(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers)))
    if !body.isEmpty { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
    try await outbound.write(.end(nil))
  }
}

/// Closes a connection whose client went quiet before finishing its request.
private final class IdleCloser: ChannelInboundHandler, Sendable {
  typealias InboundIn = HTTPServerRequestPart

  func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
    if event is IdleStateHandler.IdleStateEvent {
      context.close(promise: nil)
    } else {
      context.fireUserInboundEventTriggered(event)
    }
  }
}

extension MetricsServer {
  /// The endpoint `metrics_port` asks for (swift-metrics bootstrapped to its registry),
  /// or nil when it is 0.
  static func startIfConfigured(_ frontd: CrispConfig.Frontd, runtime: RuntimeService, logger: Logger)
    async throws(CrispError) -> MetricsServer?
  {
    guard frontd.metricsPort != 0 else { return nil }
    let registry = PrometheusCollectorRegistry()
    FrontdMetrics.bootstrap(registry)
    let server = try await MetricsServer(
      address: frontd.metricsAddress, port: frontd.metricsPort, registry: registry, logger: logger
    ) { await runtime.refreshMetricGauges() }
    logger.info("metrics served", metadata: ["url": "http://\(frontd.metricsAddress):\(server.port)/metrics"])
    return server
  }
}
