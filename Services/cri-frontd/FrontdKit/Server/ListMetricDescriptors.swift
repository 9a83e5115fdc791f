import CRIAPI
import GRPCCore

/// ListMetricDescriptors: the cAdvisor metrics crisp serves through ListPodSandboxMetrics.
/// kubelet (`PodAndContainerStatsFromCRI`) asks once at start and turns each into a
/// Prometheus family of `/metrics/cadvisor`, appending its own `namespace`, `pod` and
/// `container` labels; a metric whose name is not described here, or whose label values
/// do not match the keys in number, is dropped by kubelet.
extension RuntimeService {
  func listMetricDescriptors(request: Runtime_V1_ListMetricDescriptorsRequest, context: ServerContext) async throws
    -> Runtime_V1_ListMetricDescriptorsResponse
  {
    var response = Runtime_V1_ListMetricDescriptorsResponse()
    response.descriptors = CadvisorMetric.allCases.map(\.descriptor)
    return response
  }
}

/// The metrics, named and labelled as cAdvisor (and CRI-O) name them. Every one carries
/// `id`, `name`, `image` (a container's ID, its metadata name, its image; `POD` and no
/// image for the pod's own metrics), then its own extra keys.
enum CadvisorMetric: String, CaseIterable, Sendable {
  case cpuUsageSecondsTotal = "container_cpu_usage_seconds_total"
  case cpuUserSecondsTotal = "container_cpu_user_seconds_total"
  case cpuSystemSecondsTotal = "container_cpu_system_seconds_total"
  case cpuCfsPeriodsTotal = "container_cpu_cfs_periods_total"
  case cpuCfsThrottledPeriodsTotal = "container_cpu_cfs_throttled_periods_total"
  case cpuCfsThrottledSecondsTotal = "container_cpu_cfs_throttled_seconds_total"

  case memoryUsageBytes = "container_memory_usage_bytes"
  case memoryMaxUsageBytes = "container_memory_max_usage_bytes"
  case memoryWorkingSetBytes = "container_memory_working_set_bytes"
  case memoryRSS = "container_memory_rss"
  case memoryCache = "container_memory_cache"
  case memoryMappedFile = "container_memory_mapped_file"
  case memorySwap = "container_memory_swap"
  case memoryFailcnt = "container_memory_failcnt"
  case memoryFailuresTotal = "container_memory_failures_total"
  case oomEventsTotal = "container_oom_events_total"

  case specMemoryLimitBytes = "container_spec_memory_limit_bytes"
  case specMemorySwapLimitBytes = "container_spec_memory_swap_limit_bytes"
  case specMemoryReservationLimitBytes = "container_spec_memory_reservation_limit_bytes"
  case specCpuShares = "container_spec_cpu_shares"
  case specCpuQuota = "container_spec_cpu_quota"
  case specCpuPeriod = "container_spec_cpu_period"

  case networkReceiveBytesTotal = "container_network_receive_bytes_total"
  case networkReceivePacketsTotal = "container_network_receive_packets_total"
  case networkReceivePacketsDroppedTotal = "container_network_receive_packets_dropped_total"
  case networkReceiveErrorsTotal = "container_network_receive_errors_total"
  case networkTransmitBytesTotal = "container_network_transmit_bytes_total"
  case networkTransmitPacketsTotal = "container_network_transmit_packets_total"
  case networkTransmitPacketsDroppedTotal = "container_network_transmit_packets_dropped_total"
  case networkTransmitErrorsTotal = "container_network_transmit_errors_total"

  case processes = "container_processes"
  case threads = "container_threads"
  case threadsMax = "container_threads_max"

  case fsUsageBytes = "container_fs_usage_bytes"
  case fsInodesFree = "container_fs_inodes_free"
  case fsInodesTotal = "container_fs_inodes_total"
  case fsLimitBytes = "container_fs_limit_bytes"

  case lastSeen = "container_last_seen"

  static let baseLabelKeys = ["id", "name", "image"]

  /// Keys after the base ones; each metric's values follow them in this order.
  var extraLabelKeys: [String] {
    switch self {
    case .cpuUsageSecondsTotal: return ["cpu"]
    case .memoryFailuresTotal: return ["failure_type", "scope"]
    case .networkReceiveBytesTotal, .networkReceivePacketsTotal, .networkReceivePacketsDroppedTotal,
      .networkReceiveErrorsTotal, .networkTransmitBytesTotal, .networkTransmitPacketsTotal,
      .networkTransmitPacketsDroppedTotal, .networkTransmitErrorsTotal:
      return ["interface"]
    default: return []
    }
  }

  var type: Runtime_V1_MetricType {
    switch self {
    case .cpuUsageSecondsTotal, .cpuUserSecondsTotal, .cpuSystemSecondsTotal, .cpuCfsPeriodsTotal,
      .cpuCfsThrottledPeriodsTotal, .cpuCfsThrottledSecondsTotal, .memoryFailcnt, .memoryFailuresTotal,
      .oomEventsTotal, .networkReceiveBytesTotal, .networkReceivePacketsTotal, .networkReceivePacketsDroppedTotal,
      .networkReceiveErrorsTotal, .networkTransmitBytesTotal, .networkTransmitPacketsTotal,
      .networkTransmitPacketsDroppedTotal, .networkTransmitErrorsTotal:
      return .counter
    default: return .gauge
    }
  }

  var help: String {
    switch self {
    case .cpuUsageSecondsTotal: return "Cumulative cpu time consumed in seconds."
    case .cpuUserSecondsTotal: return "Cumulative user cpu time consumed in seconds."
    case .cpuSystemSecondsTotal: return "Cumulative system cpu time consumed in seconds."
    case .cpuCfsPeriodsTotal: return "Number of elapsed enforcement period intervals."
    case .cpuCfsThrottledPeriodsTotal: return "Number of throttled period intervals."
    case .cpuCfsThrottledSecondsTotal: return "Total time duration the container has been throttled."
    case .memoryUsageBytes:
      return "Current memory usage in bytes, including all memory regardless of when it was accessed"
    case .memoryMaxUsageBytes: return "Maximum memory usage recorded in bytes"
    case .memoryWorkingSetBytes: return "Current working set in bytes."
    case .memoryRSS: return "Size of RSS in bytes."
    case .memoryCache: return "Number of bytes of page cache memory."
    case .memoryMappedFile: return "Size of memory mapped files in bytes."
    case .memorySwap: return "Container swap usage in bytes."
    case .memoryFailcnt: return "Number of memory usage hits limits"
    case .memoryFailuresTotal: return "Cumulative count of memory allocation failures."
    case .oomEventsTotal: return "Count of out of memory events observed for the container"
    case .specMemoryLimitBytes: return "Memory limit for the container."
    case .specMemorySwapLimitBytes: return "Memory swap limit for the container."
    case .specMemoryReservationLimitBytes: return "Memory reservation limit for the container."
    case .specCpuShares: return "CPU share of the container."
    case .specCpuQuota: return "CPU quota of the container."
    case .specCpuPeriod: return "CPU period of the container."
    case .networkReceiveBytesTotal: return "Cumulative count of bytes received"
    case .networkReceivePacketsTotal: return "Cumulative count of packets received"
    case .networkReceivePacketsDroppedTotal: return "Cumulative count of packets dropped while receiving"
    case .networkReceiveErrorsTotal: return "Cumulative count of errors encountered while receiving"
    case .networkTransmitBytesTotal: return "Cumulative count of bytes transmitted"
    case .networkTransmitPacketsTotal: return "Cumulative count of packets transmitted"
    case .networkTransmitPacketsDroppedTotal: return "Cumulative count of packets dropped while transmitting"
    case .networkTransmitErrorsTotal: return "Cumulative count of errors encountered while transmitting"
    case .processes: return "Number of processes running inside the container."
    case .threads: return "Number of threads running inside the container"
    case .threadsMax: return "Maximum number of threads allowed inside the container, infinity if value is zero"
    case .fsUsageBytes: return "Number of bytes that are consumed by the container on this filesystem."
    case .fsInodesFree: return "Number of available Inodes"
    case .fsInodesTotal: return "Number of Inodes"
    case .fsLimitBytes: return "Number of bytes that can be consumed by the container on this filesystem."
    case .lastSeen: return "Last time a container was seen by the exporter"
    }
  }

  var descriptor: Runtime_V1_MetricDescriptor {
    var descriptor = Runtime_V1_MetricDescriptor()
    descriptor.name = rawValue
    descriptor.help = help
    descriptor.labelKeys = Self.baseLabelKeys + extraLabelKeys
    return descriptor
  }
}
