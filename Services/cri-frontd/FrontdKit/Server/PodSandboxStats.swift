import CRIAPI
import CrispCgroups
import CrispCore
import CrispIPC
import GRPCCore

/// PodSandboxStats, ListPodSandboxStats, StreamPodSandboxStats: the pod's cgroup when
/// kubelet gave it one (`cgroup_parent`), else the sum of its containers'; the network
/// counters of its namespace from netd, which owns the namespaces.
extension RuntimeService {
  func podSandboxStats(request: Runtime_V1_PodSandboxStatsRequest, context: ServerContext) async throws
    -> Runtime_V1_PodSandboxStatsResponse
  {
    try await rpc { () async throws(CrispError) in
      let sandbox = try sandbox(request.podSandboxID)
      var response = Runtime_V1_PodSandboxStatsResponse()
      response.stats = await stats(of: sandbox.record, config: sandbox.config)
      return response
    }
  }

  func listPodSandboxStats(request: Runtime_V1_ListPodSandboxStatsRequest, context: ServerContext) async throws
    -> Runtime_V1_ListPodSandboxStatsResponse
  {
    try await rpc { () async throws(CrispError) in
      var response = Runtime_V1_ListPodSandboxStatsResponse()
      response.stats = try await podStats(filter: request.hasFilter ? request.filter : nil)
      return response
    }
  }

  func streamPodSandboxStats(
    request: Runtime_V1_StreamPodSandboxStatsRequest, response: RPCWriter<Runtime_V1_StreamPodSandboxStatsResponse>,
    context: ServerContext
  ) async throws {
    let all = try await rpc { () async throws(CrispError) in
      try await podStats(filter: request.hasFilter ? request.filter : nil)
    }
    try await writeInChunks(all, size: Self.statsChunk, to: response) { chunk in
      var message = Runtime_V1_StreamPodSandboxStatsResponse()
      message.podSandboxStats = chunk
      return message
    }
  }

  func podStats(filter: Runtime_V1_PodSandboxStatsFilter?) async throws(CrispError) -> [Runtime_V1_PodSandboxStats] {
    var result: [Runtime_V1_PodSandboxStats] = []
    for sandbox in sandboxes.records.all(where: { $0.record.state != .creating }) {
      let pod = sandbox.record
      if let id = filter?.id, !id.isEmpty, !pod.id.hasPrefix(id) { continue }
      let config = sandbox.config
      if let selector = filter?.labelSelector, !selector.allSatisfy({ config.labels[$0.key] == $0.value }) {
        continue
      }
      result.append(await stats(of: pod, config: config))
    }
    return result
  }

  func stats(of pod: PodRecord, config: Runtime_V1_PodSandboxConfig) async -> Runtime_V1_PodSandboxStats {
    var result = Runtime_V1_PodSandboxStats()
    result.attributes.id = pod.id
    result.attributes.metadata = config.metadata
    result.attributes.labels = config.labels
    result.attributes.annotations = config.annotations
    let now = WallClock.nowNanoseconds()

    var samples: [CgroupSample] = []
    for container in containers.records.all(where: { $0.podID == pod.id }) {
      let (containerStats, sample) = await statsAndSample(of: container.record, config: container.config)
      result.linux.containers.append(containerStats)
      if let sample { samples.append(sample) }
    }
    let own = config.linux.cgroupParent.isEmpty ? nil : stats.podSample(cgroupParent: config.linux.cgroupParent)
    let sample = own ?? (samples.isEmpty ? nil : CgroupSample.sum(samples))
    if let sample {
      if let cpu = sample.cpuUsageNanoseconds {
        result.linux.cpu = Self.cpuUsage(cpu, nanoCores: stats.nanoCores("pod/" + pod.id, usage: cpu), timestamp: now)
      }
      if let memory = sample.memory { result.linux.memory = Self.memoryUsage(memory, timestamp: now) }
      if let processes = sample.processes {
        result.linux.process.timestamp = now
        result.linux.process.processCount.value = processes
      }
    }
    if pod.state == .ready, !pod.netns.isEmpty {
      do {
        let counters = try await peers.netd.call(PodNetworkStats.self, .init(podID: pod.id))
        if !counters.interfaces.isEmpty { result.linux.network = Self.networkUsage(counters) }
      } catch {
        logger.debug("no network counters", metadata: ["pod": "\(pod.id)", "error": "\(error)"])
      }
    }
    return result
  }

  static func networkUsage(_ counters: PodNetworkStats.Response) -> Runtime_V1_NetworkUsage {
    func usage(_ counters: InterfaceCounters) -> Runtime_V1_NetworkInterfaceUsage {
      var usage = Runtime_V1_NetworkInterfaceUsage()
      usage.name = counters.name
      usage.rxBytes.value = counters.rxBytes
      usage.rxErrors.value = counters.rxErrors
      usage.txBytes.value = counters.txBytes
      usage.txErrors.value = counters.txErrors
      return usage
    }
    var network = Runtime_V1_NetworkUsage()
    network.timestamp = counters.timestamp
    // netd answers the pod's CNI interface (eth0) first.
    if let first = counters.interfaces.first { network.defaultInterface = usage(first) }
    network.interfaces = counters.interfaces.dropFirst().map(usage)
    return network
  }
}
