import CoreMetrics
import CrispCore
import GRPCCore
import Prometheus

/// frontd's Prometheus families. Code records through the swift-metrics API (`Timer`,
/// `Counter`), which does nothing until `bootstrap` hands swift-metrics a factory backed
/// by the registry the `/metrics` endpoint serves: with `metrics_port = 0` recording costs
/// nothing and the Prometheus code never runs.
enum FrontdMetrics {
  enum Family: String, CaseIterable {
    case requestDuration = "crisp_cri_request_duration_seconds"
    case requestErrors = "crisp_cri_request_errors_total"
    case imagePullDuration = "crisp_image_pull_duration_seconds"
    case imagePullBytes = "crisp_image_pull_bytes_total"
    case cniDuration = "crisp_cni_duration_seconds"
    case shims = "crisp_shims"
    case containers = "crisp_containers"
    case pods = "crisp_pods"

    var help: String {
      switch self {
      case .requestDuration: return "Latency of CRI calls by method (streams: until the stream ends)."
      case .requestErrors: return "CRI calls that failed, by method and gRPC status code."
      case .imagePullDuration: return "Duration of image pulls (PullImage through imaged), by result."
      case .imagePullBytes: return "Compressed size (layers and config) of the images PullImage pulled."
      case .cniDuration:
        return "Pod network setup (namespaces and CNI ADD) and teardown (CNI DEL) by netd, as frontd waits for them."
      case .shims: return "shimd processes answering on their sockets (one per container)."
      case .containers: return "Containers by CRI state."
      case .pods: return "Pod sandboxes by CRI state."
      }
    }

    /// Histogram buckets; nil for counters and gauges.
    var buckets: [Duration]? {
      switch self {
      case .requestDuration:
        return [
          .microseconds(500), .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10),
          .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
          .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
        ]
      case .imagePullDuration:
        return [
          .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5),
          .seconds(10), .seconds(30), .seconds(60), .seconds(120), .seconds(300), .seconds(600),
        ]
      case .cniDuration:
        return [
          .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
          .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30),
        ]
      default: return nil
      }
    }
  }

  /// Makes swift-metrics record into `registry`. Once per process (swift-metrics' rule).
  static func bootstrap(_ registry: PrometheusCollectorRegistry) {
    MetricsSystem.bootstrap(RegistryFactory(registry: registry))
  }

  static func recordRequest(method: String, duration: Duration, error: RPCError.Code?) {
    CoreMetrics.Timer(label: Family.requestDuration.rawValue, dimensions: [("method", method)]).recordNanoseconds(
      duration.metricNanoseconds)
    if let error {
      CoreMetrics.Counter(
        label: Family.requestErrors.rawValue, dimensions: [("method", method), ("code", Self.codeName(error))]
      ).increment()
    }
  }

  static func recordPull(duration: Duration, bytes: UInt64?) {
    CoreMetrics.Timer(
      label: Family.imagePullDuration.rawValue, dimensions: [("result", bytes == nil ? "error" : "success")]
    )
    .recordNanoseconds(duration.metricNanoseconds)
    if let bytes { CoreMetrics.Counter(label: Family.imagePullBytes.rawValue).increment(by: Int(clamping: bytes)) }
  }

  enum NetworkOperation: String { case add = "ADD", del = "DEL" }

  /// Times a netd call that runs CNI plugins.
  static func timeNetwork<T>(_ operation: NetworkOperation, _ body: () async throws(CrispError) -> T)
    async throws(CrispError) -> T
  {
    let start = ContinuousClock.now
    var result = "success"
    defer {
      CoreMetrics.Timer(
        label: Family.cniDuration.rawValue, dimensions: [("operation", operation.rawValue), ("result", result)]
      )
      .recordNanoseconds((ContinuousClock.now - start).metricNanoseconds)
    }
    do {
      return try await body()
    } catch {
      result = "error"
      throw error
    }
  }

  /// Sets a gauge family's series (computed at scrape).
  static func set(_ family: Family, _ value: Int, labels: [(String, String)] = []) {
    CoreMetrics.Gauge(label: family.rawValue, dimensions: labels).record(value)
  }

  /// gRPC's canonical names, as grpc-go's Prometheus middleware labels them.
  static func codeName(_ code: RPCError.Code) -> String {
    switch code {
    case .cancelled: return "Canceled"
    case .unknown: return "Unknown"
    case .invalidArgument: return "InvalidArgument"
    case .deadlineExceeded: return "DeadlineExceeded"
    case .notFound: return "NotFound"
    case .alreadyExists: return "AlreadyExists"
    case .permissionDenied: return "PermissionDenied"
    case .resourceExhausted: return "ResourceExhausted"
    case .failedPrecondition: return "FailedPrecondition"
    case .aborted: return "Aborted"
    case .outOfRange: return "OutOfRange"
    case .unimplemented: return "Unimplemented"
    case .internalError: return "Internal"
    case .unavailable: return "Unavailable"
    case .dataLoss: return "DataLoss"
    case .unauthenticated: return "Unauthenticated"
    default: return "Code\(code.rawValue)"
    }
  }
}

extension Duration {
  /// Whole nanoseconds, saturating (a duration past 292 years is not a latency).
  var metricNanoseconds: Int64 {
    let (seconds, attoseconds) = components
    let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
    return overflow ? .max : whole &+ attoseconds / 1_000_000_000
  }
}
