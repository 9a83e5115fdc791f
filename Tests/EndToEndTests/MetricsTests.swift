import CRIAPI
import CrispTestSupport
import Foundation
import GRPCCore
import Testing

/// ListMetricDescriptors and ListPodSandboxMetrics end to end: real containers on real
/// runc, their real cgroups, the pod's real interface; every metric checked against the
/// descriptors as kubelet checks it (known name, as many label values as keys).
@Suite struct MetricsTests {
  static let mib: UInt64 = 1 << 20

  @Test func descriptorsAndPodMetrics() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let descriptors = try await crisp.withRuntime { try await $0.listMetricDescriptors(.init()) }.descriptors
      let keys = Dictionary(uniqueKeysWithValues: descriptors.map { ($0.name, $0.labelKeys) })
      #expect(keys.count == descriptors.count, "no name twice")
      for name in [
        "container_cpu_usage_seconds_total", "container_cpu_user_seconds_total", "container_cpu_system_seconds_total",
        "container_memory_usage_bytes", "container_memory_working_set_bytes", "container_memory_rss",
        "container_memory_cache", "container_memory_failures_total", "container_spec_memory_limit_bytes",
        "container_network_receive_bytes_total", "container_network_transmit_bytes_total",
        "container_network_receive_packets_total", "container_network_transmit_packets_total",
        "container_processes", "container_threads", "container_fs_usage_bytes", "container_fs_inodes_free",
        "container_fs_inodes_total", "container_last_seen",
      ] {
        #expect(keys[name] != nil, "descriptor \(name)")
        #expect(Array((keys[name] ?? []).prefix(3)) == ["id", "name", "image"], "\(name) keys")
      }
      #expect(keys["container_cpu_usage_seconds_total"] == ["id", "name", "image", "cpu"])
      #expect(keys["container_network_receive_bytes_total"] == ["id", "name", "image", "interface"])
      #expect(keys["container_memory_failures_total"] == ["id", "name", "image", "failure_type", "scope"])
      #expect(descriptors.allSatisfy { !$0.help.isEmpty })

      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      let burn = try await crisp.createContainer(
        podID: podID, name: "burn", image: image, command: ["sh", "-c", "while :; do :; done"])
      let memory = try await crisp.createContainer(
        podID: podID, name: "memory", image: image,
        command: ["sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=50 && touch /filled && sleep 1000"]
      ) { $0.config.linux.resources.memoryLimitInBytes = Int64(200 * Self.mib) }
      // Created, never started: it has a cgroup but no process yet.
      let waiting = try await crisp.createContainer(podID: podID, name: "waiting", image: image, command: ["true"])
      for id in [burn, memory] { try await crisp.startContainer(id) }

      // Every metric is one kubelet keeps: a described name, values matching the keys.
      func metrics() async throws -> Runtime_V1_PodSandboxMetrics {
        let all = try await crisp.withRuntime { try await $0.listPodSandboxMetrics(.init()) }.podMetrics
        #expect(all.map(\.podSandboxID) == [podID])
        let pod = try #require(all.first)
        for metric in pod.metrics + pod.containerMetrics.flatMap(\.metrics) {
          let described = try #require(keys[metric.name], "undescribed \(metric.name)")
          #expect(metric.labelValues.count == described.count, "\(metric.name): \(metric.labelValues)")
        }
        return pod
      }
      func value(_ pod: Runtime_V1_PodSandboxMetrics, _ container: String, _ name: String) -> UInt64? {
        pod.containerMetrics.first { $0.containerID == container }?.metrics.first { $0.name == name }?.value.value
      }

      let first = try await metrics()
      #expect(Set(first.containerMetrics.map(\.containerID)) == [burn, memory, waiting])
      let cpu = try #require(
        first.containerMetrics.first { $0.containerID == burn }?.metrics.first {
          $0.name == "container_cpu_usage_seconds_total"
        })
      #expect(cpu.labelValues == [burn, "burn", image, "total"])
      #expect(cpu.metricType == .counter)
      #expect(cpu.timestamp == 0, "gathered live")

      // CPU: the busy loop's counter (whole seconds) rises, user time with it.
      let before = try #require(value(first, burn, "container_cpu_usage_seconds_total"))
      try await waitUntil("the CPU counter rises by 2 s", timeout: .seconds(30), every: .milliseconds(500)) {
        (value(try await metrics(), burn, "container_cpu_usage_seconds_total") ?? 0) >= before + 2
      }
      let later = try await metrics()
      #expect((value(later, burn, "container_cpu_user_seconds_total") ?? 0) >= 1)
      #expect(value(later, burn, "container_cpu_system_seconds_total") != nil)
      #expect((value(later, burn, "container_processes") ?? 0) >= 1)
      #expect((value(later, burn, "container_threads") ?? 0) >= 1)

      // Memory: a working set between 50 and 80 MiB, the limit as set.
      try await waitUntil("the memory container filled /dev/shm", timeout: .seconds(20)) {
        try await crisp.execSync(memory, ["test", "-e", "/filled"]).exitCode == 0
      }
      let filled = try await metrics()
      let workingSet = try #require(value(filled, memory, "container_memory_working_set_bytes"))
      #expect(workingSet >= 50 * Self.mib && workingSet <= 80 * Self.mib, "working set \(workingSet)")
      #expect((value(filled, memory, "container_memory_usage_bytes") ?? 0) >= workingSet)
      #expect((value(filled, memory, "container_memory_cache") ?? 0) >= 50 * Self.mib, "shm is page cache")
      #expect(value(filled, memory, "container_spec_memory_limit_bytes") == 200 * Self.mib)
      #expect(value(filled, burn, "container_spec_memory_limit_bytes") == 0, "unlimited shows as 0")
      let faults = filled.containerMetrics.first { $0.containerID == memory }?.metrics.filter {
        $0.name == "container_memory_failures_total"
      }
      #expect(
        Set(faults?.map { Array($0.labelValues.suffix(2)) } ?? []) == [
          ["pgfault", "container"], ["pgfault", "hierarchy"], ["pgmajfault", "container"],
          ["pgmajfault", "hierarchy"],
        ])
      #expect(value(filled, memory, "container_fs_usage_bytes") != nil)
      #expect((value(filled, memory, "container_fs_inodes_free") ?? 0) > 0)
      #expect(
        (value(filled, memory, "container_fs_inodes_total") ?? 0)
          >= (value(filled, memory, "container_fs_inodes_free") ?? 0))

      // The pod's own metrics: its interface's counters, labelled as kubelet's POD.
      let bridgePrefix = try await crisp.podStatus(podID).status.network.ip.split(separator: ".").prefix(3)
        .joined(separator: ".")
      _ = try await crisp.execSync(memory, ["ping", "-c", "2", "-W", "1", bridgePrefix + ".1"])
      let pod = try await metrics()
      func podValue(_ name: String) -> Runtime_V1_Metric? {
        pod.metrics.first { $0.name == name && $0.labelValues.last == "eth0" }
      }
      let transmitted = try #require(podValue("container_network_transmit_bytes_total"))
      #expect(transmitted.labelValues == [podID, "POD", "", "eth0"])
      #expect(transmitted.value.value > 0)
      #expect((podValue("container_network_transmit_packets_total")?.value.value ?? 0) >= 2)
      #expect((podValue("container_network_receive_packets_total")?.value.value ?? 0) >= 2, "ping replies")
      #expect((podValue("container_network_receive_bytes_total")?.value.value ?? 0) > 0)

      // The stream answers the same pods; a removed pod has no metrics left.
      let streamed = try await crisp.withRuntime { client in
        try await client.streamPodSandboxMetrics(.init()) { response in
          var all: [Runtime_V1_PodSandboxMetrics] = []
          for try await message in response.messages { all += message.podSandboxMetrics }
          return all
        }
      }
      #expect(streamed.map(\.podSandboxID) == [podID])
      try await crisp.removePod(podID)
      #expect(try await crisp.withRuntime { try await $0.listPodSandboxMetrics(.init()) }.podMetrics.isEmpty)
    }
  }
}
