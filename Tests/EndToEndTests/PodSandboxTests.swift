import CRIAPI
import CrispCore
import CrispTestSupport
import Foundation
import GRPCCore
import Testing

/// Pod sandboxes end to end: cri-frontd, netd with Debian's CNI plugins in a bridge and
/// subnet of the test's own, over the CRI socket.
@Suite struct PodSandboxTests {
  static func podConfig(
    name: String = "web", namespace: String = "default", attempt: UInt32 = 0, hostNetwork: Bool = false
  ) -> Runtime_V1_PodSandboxConfig {
    var config = Runtime_V1_PodSandboxConfig()
    config.metadata.name = name
    config.metadata.namespace = namespace
    config.metadata.uid = "uid-\(name)-\(namespace)"
    config.metadata.attempt = attempt
    config.hostname = name
    config.labels = ["app": name, "tier": "front"]
    config.annotations = ["kubernetes.io/config.hash": "h-\(name)", "note": "ünïcode ✓"]
    config.dnsConfig.servers = ["10.96.0.10"]
    config.dnsConfig.searches = ["default.svc.cluster.local", "svc.cluster.local"]
    config.dnsConfig.options = ["ndots:5"]
    config.linux.securityContext.namespaceOptions.pid = .container
    if hostNetwork { config.linux.securityContext.namespaceOptions.network = .node }
    return config
  }

  @Test func podLifecycle() async throws {
    try await withCrisp { crisp in
      let network = try crisp.writeBridgeCNIConfig()
      try await crisp.startAll()
      let config = Self.podConfig()
      let id = try await crisp.runPod(config)
      #expect(id.count == 64 && id.allSatisfy(\.isHexDigit))

      var status = try await crisp.podStatus(id).status
      #expect(status.state == .sandboxReady)
      #expect(status.metadata == config.metadata)
      #expect(status.labels == config.labels)
      #expect(status.annotations == config.annotations)
      #expect(status.network.ip.hasPrefix(network.subnetPrefix + "."), "ip \(status.network.ip)")
      #expect(status.runtimeHandler == "runc")
      #expect(status.createdAt > 0)
      #expect(network.leasedIPs() == [status.network.ip])

      // The files its containers will share.
      let dir = crisp.paths.runRoot + "/pods/" + id
      let resolv = readWholeFile(dir + "/resolv.conf")
      #expect(resolv.contains("nameserver 10.96.0.10"))
      #expect(resolv.contains("search default.svc.cluster.local svc.cluster.local"))
      #expect(resolv.contains("options ndots:5"))
      #expect(readWholeFile(dir + "/hostname") == "web\n")
      #expect(readWholeFile(dir + "/hosts").contains("\(status.network.ip)\tweb"))
      // Its /dev/shm: a tmpfs netd mounted beside the pod's pinned IPC namespace.
      let shm = crisp.paths.podSharedMemory(id)
      #expect(crisp.mounts().contains { $0.contains(" \(shm) ") && $0.contains("tmpfs") })

      // Listing: by ID prefix, state and labels.
      let second = try await crisp.runPod(Self.podConfig(name: "db"))
      #expect(try await crisp.listPods().map(\.id).sorted() == [id, second].sorted())
      #expect(try await crisp.listPods(id: String(id.prefix(10))).map(\.id) == [id])
      #expect(try await crisp.listPods(labels: ["app": "db"]).map(\.id) == [second])
      #expect(try await crisp.podStatus(String(id.prefix(12))).status.id == id)

      try await crisp.stopPod(id)
      status = try await crisp.podStatus(id).status
      #expect(status.state == .sandboxNotready)
      #expect(network.leasedIPs().count == 1, "the stopped pod's IP is released")
      #expect(!crisp.mounts().contains { $0.contains(" \(shm) ") }, "the stopped pod's /dev/shm is unmounted")
      #expect(try await crisp.listPods(state: .sandboxNotready).map(\.id) == [id])
      try await crisp.stopPod(id)  // idempotent

      try await crisp.removePod(id)
      try await crisp.removePod(second)  // stops it first
      let gone = await #expect(throws: RPCError.self) { try await crisp.podStatus(id) }
      #expect(gone?.code == .notFound)
      try await crisp.removePod(id)  // idempotent
      try await crisp.stopPod(String(repeating: "0", count: 64))
      #expect(try await crisp.listPods().isEmpty)
      #expect(network.leasedIPs().isEmpty)
      #expect(crisp.mounts().isEmpty, "mounts left: \(crisp.mounts())")
      #expect(!FileManager.default.fileExists(atPath: dir))
    }
  }

  @Test func badRequestsGetClearErrors() async throws {
    try await withCrisp { crisp in
      try crisp.writeBridgeCNIConfig()
      try await crisp.startAll()

      var noName = Self.podConfig()
      noName.metadata.name = ""
      let missing = await #expect(throws: RPCError.self) { try await crisp.runPod(noName) }
      #expect(missing?.code == .invalidArgument)
      #expect(missing?.message.contains("metadata.name") == true)

      let handler = await #expect(throws: RPCError.self) { try await crisp.runPod(Self.podConfig(), handler: "kata") }
      #expect(handler?.code == .invalidArgument)
      #expect(handler?.message.contains("kata") == true)

      let id = try await crisp.runPod(Self.podConfig())
      let duplicate = await #expect(throws: RPCError.self) { try await crisp.runPod(Self.podConfig()) }
      #expect(duplicate?.code == .alreadyExists)
      // The next attempt of the same pod is a new sandbox.
      let next = try await crisp.runPod(Self.podConfig(attempt: 1))
      #expect(next != id)

      var badSysctl = Self.podConfig(name: "sysctl")
      badSysctl.linux.sysctls = ["kernel.panic": "1"]
      let sysctl = await #expect(throws: RPCError.self) { try await crisp.runPod(badSysctl) }
      #expect(sysctl?.code == .invalidArgument)
      #expect(try await crisp.listPods().count == 2, "a failed RunPodSandbox leaves no pod")

      let unknown = await #expect(throws: RPCError.self) { try await crisp.podStatus("ffffffffff") }
      #expect(unknown?.code == .notFound)
    }
  }

  @Test func hostNetworkPodsUseTheNodesNetwork() async throws {
    try await withCrisp { crisp in
      let network = try crisp.writeBridgeCNIConfig()
      try await crisp.startAll()
      let id = try await crisp.runPod(Self.podConfig(name: "host", hostNetwork: true))
      let status = try await crisp.podStatus(id).status
      #expect(status.state == .sandboxReady)
      #expect(status.network.ip.isEmpty)
      #expect(network.leasedIPs().isEmpty)
      #expect(readWholeFile(crisp.paths.runRoot + "/pods/\(id)/hosts") == readWholeFile("/etc/hosts"))
      try await crisp.removePod(id)
    }
  }

  @Test func podsSurviveAFrontdKill() async throws {
    try await withCrisp { crisp in
      try crisp.writeBridgeCNIConfig()
      try await crisp.startAll()
      let id = try await crisp.runPod(Self.podConfig())
      let before = try await crisp.podStatus(id).status

      try await crisp.stop(.frontd, signal: SIGKILL)
      try crisp.start(.frontd)
      try await crisp.waitForCRI()
      let after = try await crisp.podStatus(id).status
      #expect(after.state == .sandboxReady)
      #expect(after.network.ip == before.network.ip)
      #expect(after.annotations == before.annotations)

      // netd restarted too: teardown still works from its cache.
      try await crisp.stop(.netd, signal: SIGKILL)
      try crisp.start(.netd)
      try await waitUntil("netd is back", timeout: .seconds(10)) {
        try await crisp.status().condition("NetworkReady")?.status == true
      }
      try await crisp.removePod(id)
      #expect(crisp.mounts().isEmpty, "mounts left: \(crisp.mounts())")
    }
  }
}

extension CrispInstance {
  func runPod(_ config: Runtime_V1_PodSandboxConfig, handler: String = "") async throws -> String {
    var request = Runtime_V1_RunPodSandboxRequest()
    request.config = config
    request.runtimeHandler = handler
    return try await withRuntime { try await $0.runPodSandbox(request) }.podSandboxID
  }

  func podStatus(_ id: String) async throws -> Runtime_V1_PodSandboxStatusResponse {
    var request = Runtime_V1_PodSandboxStatusRequest()
    request.podSandboxID = id
    return try await withRuntime { try await $0.podSandboxStatus(request) }
  }

  func stopPod(_ id: String) async throws {
    var request = Runtime_V1_StopPodSandboxRequest()
    request.podSandboxID = id
    _ = try await withRuntime { try await $0.stopPodSandbox(request) }
  }

  func removePod(_ id: String) async throws {
    var request = Runtime_V1_RemovePodSandboxRequest()
    request.podSandboxID = id
    _ = try await withRuntime { try await $0.removePodSandbox(request) }
  }

  func listPods(
    id: String = "", state: Runtime_V1_PodSandboxState? = nil, labels: [String: String] = [:]
  ) async throws -> [Runtime_V1_PodSandbox] {
    var request = Runtime_V1_ListPodSandboxRequest()
    request.filter.id = id
    if let state { request.filter.state.state = state }
    request.filter.labelSelector = labels
    return try await withRuntime { try await $0.listPodSandbox(request) }.items
  }
}
