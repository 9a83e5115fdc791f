import CrispCore
import CrispIPC
import CrispTestSupport
import Foundation
import Testing

/// netd with Debian's real CNI plugins (bridge, host-local, portmap, loopback), in
/// bridges, subnets and namespaces each test makes for itself.
@Suite struct NetdTests {
  @Test func twoPodsGetDistinctIPsAndReachEachOther() async throws {
    try await withNetd { netd in
      try netd.writeBridgeConfig()
      try await netd.start()
      let (a, b) = (NetdInstance.podID(), NetdInstance.podID())
      let podA = try await netd.setup(a, hostname: "pod-a", sysctls: ["net.ipv4.ping_group_range": "0 1000"])
      let podB = try await netd.setup(b, hostname: "pod-b")
      let ipA = try #require(podA.ips.first)
      let ipB = try #require(podB.ips.first)
      #expect(ipA != ipB)
      #expect(ipA.hasPrefix(netd.subnetPrefix + "."))
      #expect(ipB.hasPrefix(netd.subnetPrefix + "."))
      #expect(podA.network == "crisp-test")
      #expect(podA.namespaces.network.hasPrefix(netd.paths.namespacesDir + "/" + a))
      #expect(netd.mounts().count == 8)  // net, ipc and uts of each pod, and its /dev/shm
      #expect(netd.mounts().filter { $0.contains(netd.paths.podSharedMemory(a)) && $0.contains("tmpfs") }.count == 1)
      #expect(netd.leasedIPs().count == 2)
      #expect(try netd.bridgePorts().count == 2)

      // The hostname and the sysctl were applied inside the pod's own namespaces.
      let hostname = try runProgram("/usr/bin/nsenter", ["--uts=" + podA.namespaces.uts, "hostname"])
      #expect(hostname.output.trimmingCharacters(in: .whitespacesAndNewlines) == "pod-a")
      let sysctl = try runProgram(
        "/usr/bin/nsenter", ["--net=" + podA.namespaces.network, "cat", "/proc/sys/net/ipv4/ping_group_range"])
      #expect(sysctl.output.split(whereSeparator: \.isWhitespace) == ["0", "1000"])

      // A TCP connection from pod B to pod A across the bridge.
      let server = try PodProcess(
        netns: podA.namespaces.network, python: pythonListener(port: 5000, greeting: "hello from A"))
      defer { server.stop() }
      #expect(server.readLine() == "ready")
      let client = try PodProcess(netns: podB.namespaces.network, python: pythonConnect(host: ipA, port: 5000))
      defer { client.stop() }
      #expect(client.readLine() == "hello from A")

      // Status and list come from netd's cache.
      let status = try await netd.client.call(PodNetworkStatus.self, .init(podID: a))
      #expect(status.ips == podA.ips)
      let list = try await netd.client.call(PodNetworkList.self)
      #expect(Set(list.pods.map(\.podID)) == [a, b])

      try await netd.teardown(a)
      try await netd.teardown(b)
      try netd.expectNothingLeft()
    }
  }

  @Test func setupIsIdempotentAndTeardownTooAndUnknownPodsAreNotFound() async throws {
    try await withNetd { netd in
      try netd.writeBridgeConfig()
      try await netd.start()
      let id = NetdInstance.podID()
      let first = try await netd.setup(id)
      let second = try await netd.setup(id)
      #expect(first == second)
      #expect(netd.leasedIPs().count == 1)

      try await netd.teardown(id)
      try await netd.teardown(id)
      try await netd.teardown(NetdInstance.podID())
      let error = await #expect(throws: CrispError.self) {
        try await netd.client.call(PodNetworkStatus.self, .init(podID: id))
      }
      #expect(error?.code == .notFound)
      #expect(netd.leasedIPs().isEmpty)
      #expect(!FileManager.default.fileExists(atPath: netd.paths.namespacesDir + "/" + id))
    }
  }

  @Test func teardownAfterSIGKILLWorksFromTheCache() async throws {
    try await withNetd { netd in
      try netd.writeBridgeConfig()
      try await netd.start()
      let id = NetdInstance.podID()
      let pod = try await netd.setup(id)
      #expect(netd.leasedIPs().count == 1)

      try await netd.kill(SIGKILL)
      // Even with the configuration gone, CHECK and DEL use what ADD used.
      try FileManager.default.removeItem(atPath: netd.cniDir + "/10-crisp-test.conflist")
      try await netd.start()
      let status = try await netd.client.call(PodNetworkStatus.self, .init(podID: id))
      #expect(status.ips == pod.ips)
      let checked = try await netd.client.call(PodNetworkCheck.self, .init(podID: id))
      #expect(checked.ips == pod.ips)

      // CHECK notices when the pod's interface is gone, with the plugin's own words.
      let removed = try runProgram(
        "/usr/bin/nsenter", ["--net=" + pod.namespaces.network, "ip", "link", "del", "eth0"])
      #expect(removed.status == 0, "\(removed.output)")
      let broken = await #expect(throws: CrispError.self) {
        try await netd.client.call(PodNetworkCheck.self, .init(podID: id))
      }
      #expect(broken?.message.contains("CHECK") == true, "\(broken?.message ?? "")")

      try await netd.teardown(id)
      try netd.expectNothingLeft()
    }
  }

  @Test func readinessFollowsTheConfigDirectoryWithoutRestart() async throws {
    try await withNetd { netd in
      try await netd.start()
      let before = try await netd.client.call(Health.self)
      #expect(before.ready == false)
      #expect(before.reason == "NetworkPluginNotReady")
      #expect(before.message?.contains(netd.cniDir) == true)

      try netd.writeBridgeConfig()
      let after = try await netd.client.call(Health.self)
      #expect(after.ready)

      let error = await #expect(throws: CrispError.self) {
        try await netd.client.call(
          PodNetworkSetup.self, .init(podID: "x", podName: "p", podNamespace: "d", podUID: "u"))
      }
      #expect(error?.code == .invalidArgument)
    }
  }

  @Test func brokenConfigAndMissingPluginGiveClearErrorsAndLeaveNothing() async throws {
    try await withNetd { netd in
      try "{ this is not json".write(toFile: netd.cniDir + "/10-broken.conflist", atomically: true, encoding: .utf8)
      try await netd.start()
      let health = try await netd.client.call(Health.self)
      #expect(health.ready == false)
      #expect(health.message?.contains("10-broken.conflist") == true)
      let id = NetdInstance.podID()
      let broken = await #expect(throws: CrispError.self) { try await netd.setup(id) }
      #expect(broken?.code == .failedPrecondition)
      #expect(broken?.message.contains("10-broken.conflist") == true)

      try FileManager.default.removeItem(atPath: netd.cniDir + "/10-broken.conflist")
      try netd.writeBridgeConfig(extraPlugins: [#"{"type": "no-such-plugin"}"#])
      let missing = await #expect(throws: CrispError.self) { try await netd.setup(id) }
      #expect(missing?.message.contains("no-such-plugin") == true)
      #expect(missing?.message.contains(netd.pluginDir) == true)

      // The bridge plugin ran before the missing one: its veth and lease are gone again.
      try netd.expectNothingLeft()
      #expect(!FileManager.default.fileExists(atPath: netd.paths.namespacesDir + "/" + id))
      let list = try await netd.client.call(PodNetworkList.self)
      #expect(list.pods.isEmpty)
    }
  }

  @Test func aFailingPluginsOwnErrorComesBackAndADDIsUndone() async throws {
    try await withNetd { netd in
      try netd.installPlugin(
        "crisp-fail",
        script: """
          #!/bin/sh
          cat > /dev/null
          if [ "$CNI_COMMAND" = ADD ]; then
            echo '{"cniVersion": "1.0.0", "code": 11, "msg": "quota exhausted", "details": "by design"}'
            exit 1
          fi
          exit 0
          """)
      try netd.writeBridgeConfig(extraPlugins: [#"{"type": "crisp-fail"}"#])
      try await netd.start()

      let error = await #expect(throws: CrispError.self) { try await netd.setup(NetdInstance.podID()) }
      #expect(error?.message.contains("crisp-fail") == true)
      #expect(error?.message.contains("quota exhausted: by design") == true)
      try netd.expectNothingLeft()
    }
  }

  @Test func badRequestsAreRefused() async throws {
    try await withNetd { netd in
      try netd.writeBridgeConfig()
      try await netd.start()
      let id = NetdInstance.podID()
      for (sysctls, words) in [
        (["kernel.panic": "1"], "not namespaced"),
        (["net/../../kernel/panic": "1"], "invalid sysctl name"),
        (["net.ipv4.no_such_knob": "1"], "net.ipv4.no_such_knob"),
      ] {
        let error = await #expect(throws: CrispError.self) { try await netd.setup(id, sysctls: sysctls) }
        #expect(error?.code == .invalidArgument)
        #expect(error?.message.contains(words) == true, "\(error?.message ?? "")")
      }
      let hostname = await #expect(throws: CrispError.self) { try await netd.setup(id, hostname: "bad host/name") }
      #expect(hostname?.code == .invalidArgument)
      #expect(netd.mounts().isEmpty)
      #expect(netd.leasedIPs().isEmpty)
    }
  }

  @Test func hostNetworkPodsPinOnlyIPC() async throws {
    try await withNetd { netd in
      try await netd.start()  // no CNI config needed for host networking
      let id = NetdInstance.podID()
      let pod = try await netd.setup(id, hostNetwork: true)
      #expect(pod.namespaces.network.isEmpty)
      #expect(pod.namespaces.uts.isEmpty)
      #expect(!pod.namespaces.ipc.isEmpty)
      #expect(pod.ips.isEmpty)
      #expect(netd.mounts().count == 2)  // its IPC namespace and its /dev/shm
      try await netd.teardown(id)
      #expect(netd.mounts().isEmpty)
    }
  }

  /// kubelet sends a mapping for every declared containerPort, with host port 0 where the
  /// pod asks for none: that one must not fail the pod (portmap refuses port 0).
  @Test func aPortMappingReachesThePodFromTheHostLoopback() async throws {
    try await withNetd { netd in
      try netd.writeBridgeConfig(portmap: true)
      try await netd.start()
      let id = NetdInstance.podID()
      let hostPort = Int.random(in: 20000..<30000)
      let pod = try await netd.setup(
        id,
        ports: [
          PortMapping(containerPort: 80, hostPort: 0),
          PortMapping(containerPort: 8080, hostPort: Int32(hostPort)),
        ])
      let server = try PodProcess(netns: pod.namespaces.network, python: pythonListener(port: 8080, greeting: "mapped"))
      defer { server.stop() }
      #expect(server.readLine() == "ready")

      let result = try runProgram("/usr/bin/env", ["python3", "-c", pythonConnect(host: "127.0.0.1", port: hostPort)])
      #expect(result.output.trimmingCharacters(in: .whitespacesAndNewlines) == "mapped")

      try await netd.teardown(id)
      let rules = try runProgram("/usr/sbin/iptables-save", ["-t", "nat"])
      #expect(!rules.output.contains("dport \(hostPort)"), "portmap rules left behind")
    }
  }

  @Test func fiftyPodsAtOnceLeaveNothingBehind() async throws {
    try await withNetd { netd in
      try netd.writeBridgeConfig()
      try await netd.start()
      let ids = (0..<50).map { _ in NetdInstance.podID() }
      let ips = try await withThrowingTaskGroup(of: String.self) { group in
        for id in ids { group.addTask { try await netd.setup(id).ips.first ?? "" } }
        return try await group.reduce(into: [String]()) { $0.append($1) }
      }
      #expect(Set(ips).count == 50)
      #expect(netd.leasedIPs().count == 50)
      try await withThrowingTaskGroup(of: Void.self) { group in
        for id in ids { group.addTask { try await netd.teardown(id) } }
        try await group.waitForAll()
      }
      try netd.expectNothingLeft()
      let left = try FileManager.default.contentsOfDirectory(atPath: netd.paths.namespacesDir)
      #expect(left.isEmpty)
    }
  }
}
