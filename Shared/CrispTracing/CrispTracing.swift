import CrispConfig
import CrispCore
import CrispIPC
import Logging
import OTel
import ServiceLifecycle
import Tracing

/// OpenTelemetry tracing of one singleton daemon: installs swift-otel's tracer as the
/// process's tracer and the IPC spans (IPCSpans) in CrispIPC, and runs its
/// exporter, OTLP/HTTP + protobuf to `[tracing] endpoint`, until `shutdown()`, which
/// sends what is still queued. Only cri-frontd, imaged and netd link this library:
/// shimd (one per container) links no tracing library at all.
public final class CrispTracing: Sendable {
  public let serviceName: String
  public let tracesURL: String
  private let group: ServiceGroup
  private let logger: Logger

  /// The OpenTelemetry service name of each daemon.
  public static func serviceName(for daemon: CrispConfig.Daemon) -> String {
    switch daemon {
    case .frontd: "crisp-frontd"
    case .imaged: "crisp-imaged"
    case .netd: "crisp-netd"
    case .shimd: "crisp-shimd"
    }
  }

  /// nil when tracing is off (an empty endpoint). Call once, before serving: the
  /// process-wide tracer can be installed only once.
  public static func start(
    _ config: CrispConfig.Tracing, daemon: CrispConfig.Daemon, logger: Logger
  ) throws(CrispError) -> CrispTracing? {
    guard config.enabled else { return nil }
    let url = tracesURL(config.endpoint)
    var otel = OTel.Configuration.default
    otel.serviceName = serviceName(for: daemon)
    otel.resourceAttributes = ["service.version": CrispVersion.string]
    otel.logs.enabled = false
    otel.metrics.enabled = false
    otel.traces.enabled = true
    otel.traces.exporter = .otlp
    otel.traces.otlpExporter.endpoint = url
    otel.traces.otlpExporter.protocol = .httpProtobuf
    // A collector that does not answer must not hold up a daemon's shutdown for long.
    otel.traces.otlpExporter.timeout = .seconds(2)
    otel.traces.batchSpanProcessor.exportTimeout = .seconds(2)
    otel.traces.batchSpanProcessor.scheduleDelay = .milliseconds(config.exportIntervalMs)
    // Parent-based: a call in a trace kubelet or another daemon sampled is recorded.
    guard
      let sampler = OTel.Configuration.TracesConfiguration.SamplerConfiguration.parentBasedTraceIDRatio(
        ratio: config.samplingRatio)
    else {
      throw CrispError(.invalidArgument, "tracing.sampling_ratio \(config.samplingRatio) is not within 0...1")
    }
    otel.traces.sampler = sampler
    otel.propagators = [.traceContext]
    otel.diagnosticLogger = .custom(logger)
    otel.diagnosticLogLevel = .warning
    let service: any Service
    do {
      // No OTEL_* environment overrides: crisp.toml is the one place tracing is set.
      service = try OTel.bootstrap(configuration: otel, environment: [:])
    } catch {
      throw CrispError(.invalidArgument, "cannot start tracing to \(url): \(error)")
    }
    IPCTracing.install(IPCSpans())
    logger.info("tracing", metadata: ["endpoint": "\(url)", "service": "\(otel.serviceName)"])
    return CrispTracing(
      serviceName: otel.serviceName, tracesURL: url,
      group: ServiceGroup(services: [service], logger: logger), logger: logger)
  }

  private init(serviceName: String, tracesURL: String, group: ServiceGroup, logger: Logger) {
    self.serviceName = serviceName
    self.tracesURL = tracesURL
    self.group = group
    self.logger = logger
  }

  /// The collector's traces URL: the OTLP/HTTP base with `/v1/traces`, unless the
  /// configured URL names a path ending in it already.
  static func tracesURL(_ endpoint: String) -> String {
    if endpoint.hasSuffix("/v1/traces") { return endpoint }
    return endpoint.hasSuffix("/") ? endpoint + "v1/traces" : endpoint + "/v1/traces"
  }

  /// Exports batches until `shutdown()`.
  public func run() async {
    do {
      try await group.run()
    } catch {
      logger.error("tracing exporter stopped", metadata: ["error": "\(error)"])
    }
  }

  /// Ends `run()` after sending the spans still queued (within the export timeout).
  public func shutdown() async {
    await group.triggerGracefulShutdown()
  }
}

extension CrispTracing {
  /// How long a stopping daemon waits for its last spans to be sent.
  static let shutdownDeadline: Duration = .seconds(2)

  /// Runs `body` (a daemon's serving) with the exporter of `tracing`, if any, beside it,
  /// and sends the spans still queued once `body` returns, for `shutdownDeadline` at most.
  public static func exporting(_ tracing: CrispTracing?, while body: () async -> Void) async {
    guard let tracing else { return await body() }
    await withTaskGroup(of: Void.self) { group in
      group.addTask { await tracing.run() }
      await body()
      await tracing.shutdown()
      // Spans a collector has not taken within the deadline are dropped rather than hold
      // up the daemon's exit (a restart waits on it).
      group.addTask { try? await Task.sleep(for: shutdownDeadline) }
      _ = await group.next()
      group.cancelAll()
    }
  }
}
