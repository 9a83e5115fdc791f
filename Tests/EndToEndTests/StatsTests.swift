import CRIAPI
import CrispCgroups
import CrispCore
import CrispTestSupport
import Foundation
import GRPCCore
import Synchronization
import Testing

/// Stats, resource updates, runtime config and container events end to end: real
/// containers from the registry's busybox on real runc, their real cgroups, a bridge
/// of the test's own.
@Suite struct StatsTests {
  static let mib: UInt64 = 1 << 20

  @Test func containerAndPodStats() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      let burn = try await crisp.createContainer(
        podID: podID, name: "burn", image: image, command: ["sh", "-c", "while :; do :; done"],
        labels: ["role": "burn"])
      // 50 MiB in the pod's /dev/shm tmpfs: shared memory, charged to the container's cgroup.
      let memory = try await crisp.createContainer(
        podID: podID, name: "memory", image: image,
        command: ["sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=50 && touch /filled && sleep 1000"])
      let writer = try await crisp.createContainer(
        podID: podID, name: "writer", image: image,
        command: [
          "sh", "-c",
          // In a directory only its owner, another user, may read: counted all the same.
          "mkdir /private && dd if=/dev/zero of=/private/data.bin bs=1M count=10 conv=fsync"
            + " && chown -R 1000 /private && chmod 700 /private && touch /written && sleep 1000",
        ])
      for id in [burn, memory, writer] { try await crisp.startContainer(id) }

      // CPU: the cumulative counter rises, and the rate over the interval is substantial.
      let first = try await crisp.containerStats(burn)
      #expect(first.attributes.id == burn)
      #expect(first.attributes.metadata.name == "burn")
      #expect(first.attributes.labels == ["role": "burn"])
      #expect(first.cpu.timestamp > 0)
      try await Task.sleep(for: .milliseconds(1500))
      let second = try await crisp.containerStats(burn)
      #expect(second.cpu.usageCoreNanoSeconds.value > first.cpu.usageCoreNanoSeconds.value + 100_000_000)
      #expect(second.cpu.hasUsageNanoCores)
      #expect(
        second.cpu.usageNanoCores.value > 100_000_000, "busy loop at \(second.cpu.usageNanoCores.value) nano-cores")

      // Memory: a working set between 50 and 80 MiB.
      try await waitUntil("the memory container filled /dev/shm", timeout: .seconds(20)) {
        try await crisp.execSync(memory, ["test", "-e", "/filled"]).exitCode == 0
      }
      let used = try await crisp.containerStats(memory).memory
      #expect(used.workingSetBytes.value >= 50 * Self.mib, "working set \(used.workingSetBytes.value)")
      #expect(used.workingSetBytes.value <= 80 * Self.mib, "working set \(used.workingSetBytes.value)")
      #expect(used.usageBytes.value >= used.workingSetBytes.value)
      #expect(used.pageFaults.value > 0)
      #expect(!used.hasAvailableBytes, "no limit, no available bytes")

      // The writable layer: 10 MiB written to the root filesystem (cached for a few seconds),
      // measured by imaged: frontd, with no capability, cannot read /private.
      try await waitUntil("the writer wrote its file", timeout: .seconds(20)) {
        try await crisp.execSync(writer, ["test", "-e", "/written"]).exitCode == 0
      }
      try await waitUntil("the writable layer shows 10 MiB", timeout: .seconds(20), every: .milliseconds(500)) {
        try await crisp.containerStats(writer).writableLayer.usedBytes.value >= 10 * Self.mib
      }
      let layer = try await crisp.containerStats(writer).writableLayer
      #expect(layer.usedBytes.value < 12 * Self.mib)
      #expect(layer.inodesUsed.value >= 2)
      #expect(layer.fsID.mountpoint == crisp.paths.root + "/images")

      // Lists and filters: ID prefix, pod, labels; the stream answers the same.
      #expect(Set(try await crisp.listContainerStats().map(\.attributes.id)) == [burn, memory, writer])
      #expect(try await crisp.listContainerStats(id: String(memory.prefix(10))).map(\.attributes.id) == [memory])
      #expect(try await crisp.listContainerStats(labels: ["role": "burn"]).map(\.attributes.id) == [burn])
      #expect(try await crisp.listContainerStats(podID: String(podID.prefix(12))).count == 3)
      #expect(try await crisp.listContainerStats(podID: String(repeating: "e", count: 64)).isEmpty)
      #expect(Set(try await crisp.streamContainerStats().map(\.attributes.id)) == [burn, memory, writer])
      let unknown = await #expect(throws: RPCError.self) { try await crisp.containerStats("f00d") }
      #expect(unknown?.code == .notFound)

      // The pod: its containers, their sums, the tasks, and its interface's counters.
      let bridgePrefix = try await crisp.podStatus(podID).status.network.ip.split(separator: ".").prefix(3)
        .joined(separator: ".")
      _ = try await crisp.execSync(writer, ["ping", "-c", "1", "-W", "1", bridgePrefix + ".1"])
      let pod = try await crisp.podStats(podID)
      #expect(pod.attributes.id == podID)
      #expect(pod.attributes.labels == PodSandboxTests.podConfig().labels)
      #expect(Set(pod.linux.containers.map(\.attributes.id)) == [burn, memory, writer])
      #expect(pod.linux.cpu.usageCoreNanoSeconds.value >= second.cpu.usageCoreNanoSeconds.value)
      #expect(pod.linux.memory.workingSetBytes.value >= 50 * Self.mib)
      #expect(pod.linux.process.processCount.value >= 3)
      #expect(pod.linux.network.defaultInterface.name == "eth0")
      #expect(pod.linux.network.defaultInterface.txBytes.value > 0)
      #expect(pod.linux.network.timestamp > 0)
      #expect(try await crisp.listPodStats().map(\.attributes.id) == [podID])
      #expect(try await crisp.listPodStats(labels: ["app": "nope"]).isEmpty)
      #expect(try await crisp.streamPodStats().map(\.attributes.id) == [podID])
      try await crisp.removePod(podID)
      #expect(try await crisp.listContainerStats().isEmpty)
    }
  }

  @Test func updateContainerResourcesChangesTheCgroup() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      let id = try await crisp.createContainer(podID: podID, name: "limited", image: image, command: ["sleep", "1000"])
      {
        $0.config.linux.resources.memoryLimitInBytes = Int64(100 * Self.mib)
      }
      try await crisp.startContainer(id)
      let cgroup = try await crisp.memoryCgroup(of: id)
      #expect(Self.memoryLimit(cgroup) == 100 * Self.mib)

      var resources = Runtime_V1_LinuxContainerResources()
      resources.memoryLimitInBytes = Int64(200 * Self.mib)
      resources.cpuPeriod = 100_000
      resources.cpuQuota = 50_000
      try await crisp.updateResources(id, resources)
      #expect(Self.memoryLimit(cgroup) == 200 * Self.mib, "the new limit in \(cgroup.memory ?? "?")")
      let status = try await crisp.containerStatus(id).status
      #expect(status.resources.linux.memoryLimitInBytes == Int64(200 * Self.mib))
      #expect(status.resources.linux.cpuQuota == 50_000)
      let stats = try await crisp.containerStats(id).memory
      #expect(stats.availableBytes.value == 200 * Self.mib - stats.workingSetBytes.value)

      var negative = Runtime_V1_LinuxContainerResources()
      negative.memoryLimitInBytes = -5
      let bad = await #expect(throws: RPCError.self) { try await crisp.updateResources(id, negative) }
      #expect(bad?.code == .invalidArgument)
      #expect(bad?.message.contains("memory_limit_in_bytes") == true)
      let unknown = await #expect(throws: RPCError.self) {
        try await crisp.updateResources(String(repeating: "a", count: 64), resources)
      }
      #expect(unknown?.code == .notFound)
      #expect(Self.memoryLimit(cgroup) == 200 * Self.mib, "refused updates change nothing")

      // The pod-level call: accepted for a known pod (kubelet owns the pod cgroup).
      var podRequest = Runtime_V1_UpdatePodSandboxResourcesRequest()
      podRequest.podSandboxID = podID
      podRequest.resources = resources
      _ = try await crisp.withRuntime { try await $0.updatePodSandboxResources(podRequest) }
      podRequest.podSandboxID = String(repeating: "b", count: 64)
      let noPod = await #expect(throws: RPCError.self) {
        try await crisp.withRuntime { try await $0.updatePodSandboxResources(podRequest) }
      }
      #expect(noPod?.code == .notFound)

      // Runtime config and checkpoints.
      let config = try await crisp.withRuntime { try await $0.runtimeConfig(.init()) }
      #expect(config.linux.cgroupDriver == .cgroupfs)
      var checkpoint = Runtime_V1_CheckpointContainerRequest()
      checkpoint.containerID = id
      let refused = await #expect(throws: RPCError.self) {
        try await crisp.withRuntime { try await $0.checkpointContainer(checkpoint) }
      }
      #expect(refused?.code == .unimplemented)
      #expect(refused?.message.contains("CRIU") == true)
      try await crisp.removePod(podID)
    }
  }

  /// A CNI configuration that leaves its subnet to the node: pods wait for kubelet's pod
  /// CIDR (UpdateRuntimeConfig), then get addresses from it.
  @Test func podCIDRFromUpdateRuntimeConfig() async throws {
    try await withCrisp { crisp in
      let bridge = try crisp.writeBridgeCNIConfig()
      try bridge.conflist().replacingOccurrences(of: bridge.subnet, with: "{{podCIDR}}")
        .write(toFile: crisp.cniDir + "/10-crisp-test.conflist", atomically: true, encoding: .utf8)
      try await crisp.startAll()
      let early = await #expect(throws: RPCError.self) { try await crisp.runPod(PodSandboxTests.podConfig()) }
      #expect(early?.code == .failedPrecondition)
      #expect(early?.message.contains("pod CIDR") == true, "\(early?.message ?? "")")

      try await crisp.updateRuntimeConfig(podCIDR: "")  // ignored, as the CRI says
      let bad = await #expect(throws: RPCError.self) { try await crisp.updateRuntimeConfig(podCIDR: "10.1.2.3/99") }
      #expect(bad?.code == .invalidArgument)
      try await crisp.updateRuntimeConfig(podCIDR: bridge.subnet)
      let podID = try await crisp.runPod(PodSandboxTests.podConfig())
      let ip = try await crisp.podStatus(podID).status.network.ip
      #expect(ip.hasPrefix(bridge.subnetPrefix + "."), "ip \(ip) from \(bridge.subnet)")
      #expect(crisp.log(.netd).contains(bridge.subnet))

      // Kept across a restart of netd.
      try await crisp.stop(.netd)
      try crisp.start(.netd)
      try await waitUntil("netd answers again", timeout: .seconds(20)) {
        (try? await crisp.status(verbose: true).condition("NetworkReady")?.status) == true
      }
      let second = try await crisp.runPod(PodSandboxTests.podConfig(name: "second"))
      #expect(try await crisp.podStatus(second).status.network.ip.hasPrefix(bridge.subnetPrefix + "."))
      try await crisp.removePod(podID)
      try await crisp.removePod(second)
    }
  }

  @Test func containerEventsInOrderToTwoSubscribers() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      let first = EventLog()
      let second = EventLog()
      let subscribers = Task {
        try await withThrowingTaskGroup(of: Void.self) { group in
          for log in [first, second] {
            group.addTask {
              try await crisp.withRuntime { client in
                try await client.getContainerEvents(.init()) { response in
                  for try await event in response.messages { log.append(event) }
                }
              }
            }
          }
          try await group.waitForAll()
        }
      }
      defer { subscribers.cancel() }

      // Both streams are live once both see a probe container's creation.
      let probe = try await crisp.createContainer(podID: podID, name: "probe", image: image, command: ["true"])
      try await waitUntil("both subscribers see the probe", timeout: .seconds(20)) {
        first.events(of: probe).contains(.containerCreatedEvent)
          && second.events(of: probe).contains(.containerCreatedEvent)
      }

      let id = try await crisp.createContainer(podID: podID, name: "life", image: image, command: ["sleep", "1000"])
      try await crisp.startContainer(id)
      try await crisp.stopContainer(id, timeout: 0)
      try await crisp.removeContainer(id)
      let expected: [Runtime_V1_ContainerEventType] = [
        .containerCreatedEvent, .containerStartedEvent, .containerStoppedEvent, .containerDeletedEvent,
      ]
      for log in [first, second] {
        try await waitUntil("the lifecycle's four events arrive", timeout: .seconds(20)) {
          log.events(of: id).count >= 4
        }
        #expect(log.events(of: id) == expected)
        let events = log.all().filter { $0.containerID == id }
        #expect(events.map(\.createdAt) == events.map(\.createdAt).sorted())
        for event in events {
          #expect(event.podSandboxStatus.id == podID)
          #expect(event.podSandboxStatus.state == .sandboxReady)
        }
        let created = try #require(events.first)
        #expect(created.containersStatuses.first { $0.id == id }?.state == .containerCreated)
        let started = events[1]
        #expect(started.containersStatuses.first { $0.id == id }?.state == .containerRunning)
        let stopped = events[2]
        #expect(stopped.containersStatuses.first { $0.id == id }?.state == .containerExited)
        #expect(!events[3].containersStatuses.contains { $0.id == id })
        #expect(events[3].containersStatuses.contains { $0.id == probe })
      }
      // A short-lived container's own exit (pushed by its shim) arrives as STOPPED.
      let short = try await crisp.createContainer(podID: podID, name: "short", image: image, command: ["true"])
      try await crisp.startContainer(short)
      try await waitUntil("its exit arrives", timeout: .seconds(20)) {
        first.events(of: short).contains(.containerStoppedEvent)
      }
      #expect(first.events(of: short) == [.containerCreatedEvent, .containerStartedEvent, .containerStoppedEvent])
      subscribers.cancel()
      try await crisp.removePod(podID)
    }
  }

  static func memoryLimit(_ cgroup: ContainerCgroup) -> UInt64? {
    cgroup.memoryStats()?.limit
  }
}

/// Events one subscriber received.
final class EventLog: Sendable {
  private let received = Mutex<[Runtime_V1_ContainerEventResponse]>([])

  func append(_ event: Runtime_V1_ContainerEventResponse) { received.withLock { $0.append(event) } }
  func all() -> [Runtime_V1_ContainerEventResponse] { received.withLock { $0 } }
  func events(of id: String) -> [Runtime_V1_ContainerEventType] {
    all().filter { $0.containerID == id }.map(\.containerEventType)
  }
}

extension CrispInstance {
  func containerStats(_ id: String) async throws -> Runtime_V1_ContainerStats {
    var request = Runtime_V1_ContainerStatsRequest()
    request.containerID = id
    return try await withRuntime { try await $0.containerStats(request) }.stats
  }

  func listContainerStats(id: String = "", podID: String = "", labels: [String: String] = [:]) async throws
    -> [Runtime_V1_ContainerStats]
  {
    var request = Runtime_V1_ListContainerStatsRequest()
    request.filter.id = id
    request.filter.podSandboxID = podID
    request.filter.labelSelector = labels
    return try await withRuntime { try await $0.listContainerStats(request) }.stats
  }

  func streamContainerStats() async throws -> [Runtime_V1_ContainerStats] {
    try await withRuntime { client in
      try await client.streamContainerStats(.init()) { response in
        var all: [Runtime_V1_ContainerStats] = []
        for try await message in response.messages { all += message.containerStats }
        return all
      }
    }
  }

  func podStats(_ id: String) async throws -> Runtime_V1_PodSandboxStats {
    var request = Runtime_V1_PodSandboxStatsRequest()
    request.podSandboxID = id
    return try await withRuntime { try await $0.podSandboxStats(request) }.stats
  }

  func listPodStats(labels: [String: String] = [:]) async throws -> [Runtime_V1_PodSandboxStats] {
    var request = Runtime_V1_ListPodSandboxStatsRequest()
    request.filter.labelSelector = labels
    return try await withRuntime { try await $0.listPodSandboxStats(request) }.stats
  }

  func streamPodStats() async throws -> [Runtime_V1_PodSandboxStats] {
    try await withRuntime { client in
      try await client.streamPodSandboxStats(.init()) { response in
        var all: [Runtime_V1_PodSandboxStats] = []
        for try await message in response.messages { all += message.podSandboxStats }
        return all
      }
    }
  }

  func updateResources(_ id: String, _ resources: Runtime_V1_LinuxContainerResources) async throws {
    var request = Runtime_V1_UpdateContainerResourcesRequest()
    request.containerID = id
    request.linux = resources
    _ = try await withRuntime { try await $0.updateContainerResources(request) }
  }

  func updateRuntimeConfig(podCIDR: String) async throws {
    var request = Runtime_V1_UpdateRuntimeConfigRequest()
    request.runtimeConfig.networkConfig.podCidr = podCIDR
    _ = try await withRuntime { try await $0.updateRuntimeConfig(request) }
  }

  /// The container's cgroup, found from its init process as the kernel reports it.
  func memoryCgroup(of id: String) async throws -> ContainerCgroup {
    let info = try await containerStatus(id, verbose: true).info["info"] ?? ""
    let object = try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any]
    let pid = try #require(object?["pid"] as? Int)
    let mounts = try #require(CgroupMounts.current())
    let process = try #require(ProcessCgroups.read(pid: Int32(pid)))
    let cgroup = ContainerCgroup.locate(cgroupsPath: "", mounts: mounts, own: nil, process: process)
    _ = try #require(cgroup.memory)
    return cgroup
  }
}
