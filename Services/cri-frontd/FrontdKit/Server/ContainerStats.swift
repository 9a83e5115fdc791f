import CRIAPI
import CrispCgroups
import CrispCore
import CrispIPC
import GRPCCore

/// ContainerStats, ListContainerStats, StreamContainerStats: read from the containers'
/// cgroups (v1 or v2) by frontd itself; writable layers measured by imaged, cached.
extension RuntimeService {
  /// Items per message of the Stream* calls.
  static let statsChunk = 64

  func containerStats(request: Runtime_V1_ContainerStatsRequest, context: ServerContext) async throws
    -> Runtime_V1_ContainerStatsResponse
  {
    try await rpc { () async throws(CrispError) in
      let container = try container(request.containerID)
      var response = Runtime_V1_ContainerStatsResponse()
      response.stats = await stats(of: container.record, config: container.config)
      return response
    }
  }

  func listContainerStats(request: Runtime_V1_ListContainerStatsRequest, context: ServerContext) async throws
    -> Runtime_V1_ListContainerStatsResponse
  {
    try await rpc { () async throws(CrispError) in
      var response = Runtime_V1_ListContainerStatsResponse()
      response.stats = try await containerStats(filter: request.hasFilter ? request.filter : nil)
      return response
    }
  }

  func streamContainerStats(
    request: Runtime_V1_StreamContainerStatsRequest, response: RPCWriter<Runtime_V1_StreamContainerStatsResponse>,
    context: ServerContext
  ) async throws {
    let all = try await rpc { () async throws(CrispError) in
      try await containerStats(filter: request.hasFilter ? request.filter : nil)
    }
    try await writeInChunks(all, size: Self.statsChunk, to: response) { chunk in
      var message = Runtime_V1_StreamContainerStatsResponse()
      message.containerStats = chunk
      return message
    }
  }

  /// Stats of the containers the filter selects (ID prefix, pod, labels: all must match).
  func containerStats(filter: Runtime_V1_ContainerStatsFilter?) async throws(CrispError) -> [Runtime_V1_ContainerStats]
  {
    var podID: String? = nil
    if let wanted = filter?.podSandboxID, !wanted.isEmpty {
      guard let pod = try sandboxes.resolve(wanted) else { return [] }
      podID = pod.id
    }
    let listed = containers.records.all { podID == nil || $0.podID == podID }
    var result: [Runtime_V1_ContainerStats] = []
    for container in listed {
      let record = container.record
      if let id = filter?.id, !id.isEmpty, !record.id.hasPrefix(id) { continue }
      let config = container.config
      if let selector = filter?.labelSelector, !selector.allSatisfy({ config.labels[$0.key] == $0.value }) {
        continue
      }
      result.append(await stats(of: record, config: config))
    }
    if filter == nil || filter == Runtime_V1_ContainerStatsFilter() {
      stats.keep(
        containers: Set(listed.map(\.id)), pods: Set(sandboxes.records.all().map(\.id)))
    }
    return result
  }

  /// One container's stats; a part that cannot be read (no cgroup left) is left out.
  func stats(of record: ContainerRecord, config: Runtime_V1_ContainerConfig) async -> Runtime_V1_ContainerStats {
    await statsAndSample(of: record, config: config).stats
  }

  /// The stats, and the cgroup reading they came from (a pod sums its containers').
  func statsAndSample(of record: ContainerRecord, config: Runtime_V1_ContainerConfig) async
    -> (stats: Runtime_V1_ContainerStats, sample: CgroupSample?)
  {
    let facts = stats.facts(for: record.id, bundle: launcher.bundle(record.id))
    var result = Runtime_V1_ContainerStats()
    result.attributes.id = record.id
    result.attributes.metadata = config.metadata
    result.attributes.labels = config.labels
    result.attributes.annotations = config.annotations
    let now = WallClock.nowNanoseconds()
    let sample = stats.sample(containerID: record.id, facts: facts)
    if let sample { fill(&result, from: sample, key: record.id, timestamp: now) }
    let imaged = peers.imaged
    if facts.upperDir != nil,
      let usage = await stats.writableLayers.usage(
        containerID: record.id,
        measure: { id in
          guard let reply = try? await imaged.call(SnapshotUsage.self, .init(containerIDs: [id])),
            let usage = reply.usages.first(where: { $0.containerID == id })
          else { return nil }
          return WritableLayerUsage.Usage(bytes: usage.bytes, inodes: usage.inodes, timestamp: usage.timestamp)
        })
    {
      result.writableLayer.timestamp = usage.timestamp
      result.writableLayer.fsID.mountpoint = launcher.paths.imagesDir
      result.writableLayer.usedBytes.value = usage.bytes
      result.writableLayer.inodesUsed.value = usage.inodes
    }
    return (result, sample)
  }

  func fill(_ result: inout Runtime_V1_ContainerStats, from sample: CgroupSample, key: String, timestamp: Int64) {
    if let cpu = sample.cpuUsageNanoseconds {
      result.cpu = Self.cpuUsage(cpu, nanoCores: stats.nanoCores(key, usage: cpu), timestamp: timestamp)
    }
    if let memory = sample.memory {
      result.memory = Self.memoryUsage(memory, timestamp: timestamp)
      if let swap = memory.swapUsage {
        result.swap.timestamp = timestamp
        result.swap.swapUsageBytes.value = swap
        if let limit = memory.swapLimit { result.swap.swapAvailableBytes.value = limit > swap ? limit - swap : 0 }
      }
    }
  }

  static func cpuUsage(_ usage: UInt64, nanoCores: UInt64?, timestamp: Int64) -> Runtime_V1_CpuUsage {
    var cpu = Runtime_V1_CpuUsage()
    cpu.timestamp = timestamp
    cpu.usageCoreNanoSeconds.value = usage
    // Left out until there are two readings: kubelet then computes it itself.
    if let nanoCores { cpu.usageNanoCores.value = nanoCores }
    return cpu
  }

  static func memoryUsage(_ memory: MemoryStats, timestamp: Int64) -> Runtime_V1_MemoryUsage {
    var usage = Runtime_V1_MemoryUsage()
    usage.timestamp = timestamp
    usage.workingSetBytes.value = memory.workingSet
    if let available = memory.available { usage.availableBytes.value = available }
    usage.usageBytes.value = memory.usage
    usage.rssBytes.value = memory.rss
    usage.pageFaults.value = memory.pageFaults
    usage.majorPageFaults.value = memory.majorPageFaults
    return usage
  }
}
