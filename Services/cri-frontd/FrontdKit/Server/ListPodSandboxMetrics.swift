import CRIAPI
import CrispCgroups
import CrispCore
import CrispIPC
import GRPCCore

#if canImport(Glibc)
  import Glibc
#endif

/// ListPodSandboxMetrics, StreamPodSandboxMetrics: the metrics of ListMetricDescriptors
/// for every pod and each of its containers that has a cgroup. Values come from the
/// same readings as the stats calls (StatsCollector: cgroup locations, the writable-layer
/// cache; netd for the pod's interfaces) plus the cgroup files only metrics need
/// (`CgroupDetails`). Values are live, so timestamps are 0 (kubelet stamps them), except
/// the writable layer's, which is cached and carries the time of its walk.
extension RuntimeService {
  func listPodSandboxMetrics(request: Runtime_V1_ListPodSandboxMetricsRequest, context: ServerContext) async throws
    -> Runtime_V1_ListPodSandboxMetricsResponse
  {
    try await rpc { () async throws(CrispError) in
      var response = Runtime_V1_ListPodSandboxMetricsResponse()
      response.podMetrics = try await podMetrics()
      return response
    }
  }

  func streamPodSandboxMetrics(
    request: Runtime_V1_StreamPodSandboxMetricsRequest, response: RPCWriter<Runtime_V1_StreamPodSandboxMetricsResponse>,
    context: ServerContext
  ) async throws {
    let all = try await rpc { () async throws(CrispError) in try await podMetrics() }
    for start in stride(from: 0, to: all.count, by: Self.statsChunk) {
      var message = Runtime_V1_StreamPodSandboxMetricsResponse()
      message.podSandboxMetrics = Array(all[start..<min(start + Self.statsChunk, all.count)])
      try await response.write(message)
    }
  }

  func podMetrics() async throws(CrispError) -> [Runtime_V1_PodSandboxMetrics] {
    let filesystem = MetricFilesystem(path: launcher.paths.imagesDir)
    var result: [Runtime_V1_PodSandboxMetrics] = []
    for pod in sandboxes.records.all(where: { $0.record.state != .creating }).map(\.record) {
      var metrics = Runtime_V1_PodSandboxMetrics()
      metrics.podSandboxID = pod.id
      var own = MetricList(base: [pod.id, "POD", ""])
      own.add(.lastSeen, UInt64(WallClock.nowNanoseconds() / 1_000_000_000))
      if pod.state == .ready, !pod.netns.isEmpty {
        do {
          let counters = try await peers.netd.call(PodNetworkStats.self, .init(podID: pod.id))
          for interface in counters.interfaces { own.addNetwork(interface) }
        } catch {
          logger.debug("no network counters", metadata: ["pod": "\(pod.id)", "error": "\(error)"])
        }
      }
      metrics.metrics = own.metrics
      for container in containers.records.all(where: { $0.podID == pod.id }) {
        let record = container.record
        let config = container.config
        let (stats, sample) = await statsAndSample(of: record, config: config)
        // No cgroup: a container that exited (or was never created) uses nothing.
        guard let sample else { continue }
        let cgroup = self.stats.facts(for: record.id, bundle: launcher.bundle(record.id)).cgroup
        var list = MetricList(base: [record.id, config.metadata.name, record.image])
        list.addContainer(
          sample: sample, details: cgroup?.details() ?? CgroupDetails(), stats: stats, filesystem: filesystem)
        var container = Runtime_V1_ContainerMetrics()
        container.containerID = record.id
        container.metrics = list.metrics
        metrics.containerMetrics.append(container)
      }
      result.append(metrics)
    }
    return result
  }
}

/// Metrics of one pod or container, labelled with its base values.
struct MetricList {
  let base: [String]
  private(set) var metrics: [Runtime_V1_Metric] = []

  init(base: [String]) { self.base = base }

  /// A value, when there is one; `extra` follows the metric's extra label keys.
  mutating func add(_ metric: CadvisorMetric, _ value: UInt64?, extra: [String] = [], timestamp: Int64 = 0) {
    guard let value else { return }
    var entry = Runtime_V1_Metric()
    entry.name = metric.rawValue
    entry.metricType = metric.type
    entry.timestamp = timestamp
    entry.labelValues = base + extra
    entry.value.value = value
    metrics.append(entry)
  }

  /// Nanoseconds as whole seconds: the CRI carries integers (as CRI-O does, truncated).
  static func seconds(_ nanoseconds: UInt64?) -> UInt64? { nanoseconds.map { $0 / 1_000_000_000 } }

  mutating func addNetwork(_ interface: InterfaceCounters) {
    let name = [interface.name]
    add(.networkReceiveBytesTotal, interface.rxBytes, extra: name)
    add(.networkReceivePacketsTotal, interface.rxPackets, extra: name)
    add(.networkReceivePacketsDroppedTotal, interface.rxDropped, extra: name)
    add(.networkReceiveErrorsTotal, interface.rxErrors, extra: name)
    add(.networkTransmitBytesTotal, interface.txBytes, extra: name)
    add(.networkTransmitPacketsTotal, interface.txPackets, extra: name)
    add(.networkTransmitPacketsDroppedTotal, interface.txDropped, extra: name)
    add(.networkTransmitErrorsTotal, interface.txErrors, extra: name)
  }

  mutating func addContainer(
    sample: CgroupSample, details: CgroupDetails, stats: Runtime_V1_ContainerStats, filesystem: MetricFilesystem?
  ) {
    add(.cpuUsageSecondsTotal, Self.seconds(sample.cpuUsageNanoseconds), extra: ["total"])
    add(.cpuUserSecondsTotal, Self.seconds(details.cpuUserNanoseconds))
    add(.cpuSystemSecondsTotal, Self.seconds(details.cpuSystemNanoseconds))
    add(.cpuCfsPeriodsTotal, details.cfsPeriods)
    add(.cpuCfsThrottledPeriodsTotal, details.cfsThrottledPeriods)
    add(.cpuCfsThrottledSecondsTotal, Self.seconds(details.cfsThrottledNanoseconds))
    add(.specCpuShares, details.cpuShares)
    add(.specCpuQuota, details.cpuQuota)
    add(.specCpuPeriod, details.cpuPeriod)

    if let memory = sample.memory {
      add(.memoryUsageBytes, memory.usage)
      add(.memoryWorkingSetBytes, memory.workingSet)
      add(.memoryRSS, memory.rss)
      add(.memorySwap, memory.swapUsage)
      for scope in ["container", "hierarchy"] {
        add(.memoryFailuresTotal, memory.pageFaults, extra: ["pgfault", scope])
        add(.memoryFailuresTotal, memory.majorPageFaults, extra: ["pgmajfault", scope])
      }
      // cAdvisor shows "unlimited" as 0.
      add(.specMemoryLimitBytes, memory.limit ?? 0)
      add(.specMemorySwapLimitBytes, memory.swapLimit ?? 0)
    }
    add(.memoryCache, details.cache)
    add(.memoryMappedFile, details.mappedFile)
    add(.memoryMaxUsageBytes, details.maxUsage)
    add(.memoryFailcnt, details.failcnt)
    add(.oomEventsTotal, details.oomKills)
    add(.specMemoryReservationLimitBytes, details.memoryReservation)

    add(.processes, details.processes)
    add(.threads, details.threads ?? sample.processes)
    add(.threadsMax, details.threadsMax ?? 0)

    if stats.hasWritableLayer {
      add(.fsUsageBytes, stats.writableLayer.usedBytes.value, timestamp: stats.writableLayer.timestamp)
    }
    if let filesystem {
      add(.fsLimitBytes, filesystem.capacityBytes)
      add(.fsInodesTotal, filesystem.inodesTotal)
      add(.fsInodesFree, filesystem.inodesFree)
    }
    add(.lastSeen, UInt64(WallClock.nowNanoseconds() / 1_000_000_000))
  }
}

/// The file system holding the writable layers (`<root>/images`), read once per call.
struct MetricFilesystem {
  var capacityBytes: UInt64
  var inodesTotal: UInt64
  var inodesFree: UInt64

  init?(path: String) {
    var fs = statvfs()
    guard statvfs(path, &fs) == 0 else { return nil }
    capacityBytes = UInt64(fs.f_blocks) &* UInt64(fs.f_frsize)
    inodesTotal = UInt64(fs.f_files)
    inodesFree = UInt64(fs.f_favail)
  }
}
