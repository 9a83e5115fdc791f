import CRIAPI
import CrispCore
import CrispIPC
import CrispTestSupport
import Foundation
import Testing

@testable import FrontdKit

/// frontd's pod and container lifecycle over fake peers: what kubelet would see of
/// each step, what is left on disk and in the database, and what the peers were asked.
/// No root, no daemons.
@Suite struct LifecycleTests {
  static func podConfig(_ name: String = "web", pidShared: Bool = false) -> Runtime_V1_PodSandboxConfig {
    var config = Runtime_V1_PodSandboxConfig()
    config.metadata.name = name
    config.metadata.namespace = "default"
    config.metadata.uid = "uid-\(name)"
    config.labels = ["app": name]
    config.hostname = name
    // POD (the CRI's default) gives the pod an infra process.
    config.linux.securityContext.namespaceOptions.pid = pidShared ? .pod : .container
    return config
  }

  static func containerConfig(_ name: String = "main") -> Runtime_V1_ContainerConfig {
    var config = Runtime_V1_ContainerConfig()
    config.metadata.name = name
    config.image.image = "busybox"
    config.command = ["sleep", "100"]
    config.linux.securityContext.namespaceOptions.pid = .container
    return config
  }

  /// A stored pod record as a test writes it straight into the database.
  static func podRecord(
    id: String = "p", name: String = "web", state: PodRecord.State = .ready, config: [UInt8] = []
  ) -> PodRecord {
    PodRecord(
      id: id, name: name, namespace: "default", uid: "u", attempt: 0, state: state, createdAt: 1, config: config,
      runtimeHandler: "runc", ips: [], netns: "", ipcns: "", utsns: "")
  }

  func runPod(_ lifecycle: Lifecycle, _ name: String = "web") async throws -> String {
    try await lifecycle.sandboxes.run(.init(config: Self.podConfig(name), handler: "runc", hostname: name))
  }

  @Test func aPodRunIsReadyWithTheNetworksAddressesAndSurvivesARestart() async throws {
    let lifecycle = try Lifecycle()
    let id = try await runPod(lifecycle)
    let pod = try #require(lifecycle.sandboxes.records.get(id))
    #expect(pod.record.state == .ready)
    #expect(pod.record.ips == ["10.99.0.7"])
    #expect(pod.config.labels == ["app": "web"])
    let hosts = try String(contentsOfFile: lifecycle.config.paths.runRoot + "/pods/\(id)/hosts", encoding: .utf8)
    #expect(hosts.contains("10.99.0.7"))

    let (reloaded, _) = try lifecycle.reopened()
    #expect(reloaded.records.get(id)?.record == pod.record)
  }

  @Test func aFailedNetworkSetupLeavesNoPodBehind() async throws {
    let lifecycle = try Lifecycle()
    lifecycle.network.failSetUp.withLock { $0 = CrispError(.internal, "CNI ADD failed: no bridge") }
    await #expect(throws: CrispError(.internal, "CNI ADD failed: no bridge")) { try await runPod(lifecycle) }
    #expect(lifecycle.sandboxes.records.count == 0)
    #expect(try lifecycle.reopened().0.records.count == 0)
    let setUp = lifecycle.network.calls.withLock { $0.setUp }
    #expect(lifecycle.network.calls.withLock { $0.tearDown } == setUp)
    #expect(try FileManager.default.contentsOfDirectory(atPath: lifecycle.config.paths.runRoot + "/pods").isEmpty)
  }

  @Test func aCreatedContainerHasItsBundleItsShimAndItsRecord() async throws {
    let lifecycle = try Lifecycle()
    let podID = try await runPod(lifecycle)
    let id = try await lifecycle.containers.create(inPod: podID, Self.containerConfig())
    let launch = try #require(lifecycle.shims.launches.withLock { $0.last })
    #expect(launch.containerID == id)
    #expect(launch.logPath == lifecycle.config.frontd.defaultLogDir + "/\(podID)/\(id).log")
    let bundle = lifecycle.config.paths.containersDir + "/" + id
    #expect(launch.bundleDirectory == bundle)
    let spec = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: bundle + "/config.json")))
    let process = try #require((spec as? [String: Any])?["process"] as? [String: Any])
    #expect(process["args"] as? [String] == ["sleep", "100"])
    #expect(lifecycle.images.prepared.withLock { $0 } == [id])

    let view = await lifecycle.containers.view(try #require(lifecycle.containers.records.get(id)))
    guard case .created = view.phase else {
      Issue.record("phase \(view.phase)")
      return
    }
    #expect(try lifecycle.reopened().1.records.get(id)?.record.imageID == FakeImages.imageID)
  }

  @Test func aFailedShimLaunchReleasesTheSnapshotAndLeavesNothing() async throws {
    let lifecycle = try Lifecycle()
    let podID = try await runPod(lifecycle)
    lifecycle.shims.failLaunch.withLock { $0 = CrispError(.internal, "runc create: exec format error") }
    await #expect(throws: CrispError(.internal, "runc create: exec format error")) {
      try await lifecycle.containers.create(inPod: podID, Self.containerConfig())
    }
    let launched = try #require(lifecycle.shims.launches.withLock { $0.last?.containerID })
    #expect(lifecycle.images.released.withLock { $0 } == [launched])
    #expect(lifecycle.containers.records.count == 0)
    #expect(try lifecycle.reopened().1.records.count == 0)
    #expect(try FileManager.default.contentsOfDirectory(atPath: lifecycle.config.paths.containersDir).isEmpty)
  }

  @Test func aContainerOfAnImageNotPresentIsNotFoundAndNothingIsMade() async throws {
    let lifecycle = try Lifecycle()
    let podID = try await runPod(lifecycle)
    var config = Self.containerConfig()
    config.image.image = "nginx"
    await #expect(throws: CrispError(.notFound, "image \"nginx\" is not present; pull it first")) {
      try await lifecycle.containers.create(inPod: podID, config)
    }
    #expect(lifecycle.shims.launches.withLock { $0.isEmpty })
    #expect(lifecycle.containers.records.count == 0)
  }

  /// The race the pod lock closes: a create that reaches the pod while it is being
  /// removed waits for the removal, then finds the pod gone, and makes nothing.
  @Test func aCreateRacingThePodsRemovalWaitsAndMakesNothing() async throws {
    let lifecycle = try Lifecycle()
    let podID = try await runPod(lifecycle)
    let sandboxes = lifecycle.sandboxes
    let containers = lifecycle.containers
    lifecycle.network.tearDownGate.close()
    let removal = Task {
      try await sandboxes.withLock(podID) { () async throws(CrispError) in
        try await sandboxes.remove(podID, containers: containers)
      }
    }
    let gate = lifecycle.network.tearDownGate
    try await waitUntil("the removal waits in CNI DEL", timeout: .seconds(10)) { gate.waiting == 1 }
    let create = Task { try await containers.create(inPod: podID, Self.containerConfig()) }
    try await Task.sleep(for: .milliseconds(50))
    gate.open()
    try await removal.value
    await #expect(throws: CrispError(.notFound, "pod sandbox \(podID) was removed")) { try await create.value }
    #expect(lifecycle.shims.launches.withLock { $0.isEmpty })
    #expect(containers.records.count == 0)
    #expect(lifecycle.images.prepared.withLock { $0.isEmpty })
  }

  @Test func aContainersPhaseFollowsItsMonitorThenItsExitFileThenIsUnknown() async throws {
    let lifecycle = try Lifecycle()
    let podID = try await runPod(lifecycle)
    let id = try await lifecycle.containers.create(inPod: podID, Self.containerConfig())
    let container = try #require(lifecycle.containers.records.get(id))
    try await lifecycle.containers.start(container)
    guard case .running(let pid, let startedAt) = await lifecycle.containers.view(container).phase else {
      Issue.record("not running")
      return
    }
    #expect(pid > 0 && startedAt > 0)

    let monitor = try #require(lifecycle.shims.monitors.withLock { $0[id] })
    monitor.exit(code: 3)
    lifecycle.shims.kill(id)
    let exited = await lifecycle.containers.view(container)
    guard case .exited(let exit) = exited.phase else {
      Issue.record("phase \(exited.phase)")
      return
    }
    #expect(exit.exitCode == 3 && exit.reason == "Error")
    #expect(!exited.monitorAnswered)

    try FileManager.default.removeItem(atPath: lifecycle.config.paths.containersDir + "/\(id)/exit.json")
    let status = RuntimeService.status(of: await lifecycle.containers.view(container))
    #expect(status.state == .containerExited)
    #expect(status.exitCode == 255)
    #expect(status.reason == "Unknown")
  }

  @Test func aPodSharingOnePIDNamespaceRunsItsInfraProcessAndItsContainersJoinIt() async throws {
    let lifecycle = try Lifecycle()
    let podID = try await lifecycle.sandboxes.run(
      .init(config: Self.podConfig("shared", pidShared: true), handler: "runc", hostname: "shared"))
    let infra = try #require(lifecycle.shims.monitors.withLock { $0[podID] })
    guard case .running = infra.state.withLock({ $0.state }) else {
      Issue.record("the infra process was not started")
      return
    }
    let infraPID = infra.state.withLock { $0.pid }
    var config = Self.containerConfig()
    config.linux.securityContext.namespaceOptions.pid = .pod
    let id = try await lifecycle.containers.create(inPod: podID, config)
    let spec = try JSONSerialization.jsonObject(
      with: Data(contentsOf: URL(fileURLWithPath: lifecycle.config.paths.containersDir + "/\(id)/config.json")))
    let namespaces = try #require(
      ((spec as? [String: Any])?["linux"] as? [String: Any])?["namespaces"] as? [[String: Any]])
    #expect(
      namespaces.contains { $0["type"] as? String == "pid" && $0["path"] as? String == "/proc/\(infraPID)/ns/pid" })

    try await lifecycle.sandboxes.withLock(podID) { () async throws(CrispError) in
      try await lifecycle.sandboxes.remove(podID, containers: lifecycle.containers)
    }
    #expect(infra.deleted)
    #expect(try FileManager.default.contentsOfDirectory(atPath: lifecycle.config.paths.containersDir).isEmpty)
  }

  @Test func removingAPodStopsAndRemovesItsContainersAndReleasesTheirSnapshots() async throws {
    let lifecycle = try Lifecycle()
    let podID = try await runPod(lifecycle)
    let other = try await runPod(lifecycle, "db")
    let first = try await lifecycle.containers.create(inPod: podID, Self.containerConfig("a"))
    let second = try await lifecycle.containers.create(inPod: podID, Self.containerConfig("b"))
    let kept = try await lifecycle.containers.create(inPod: other, Self.containerConfig("c"))
    try await lifecycle.containers.start(try #require(lifecycle.containers.records.get(first)))

    try await lifecycle.sandboxes.withLock(podID) { () async throws(CrispError) in
      try await lifecycle.sandboxes.remove(podID, containers: lifecycle.containers)
    }
    #expect(Set(lifecycle.images.released.withLock { $0 }) == [first, second])
    #expect(lifecycle.containers.records.all().map(\.id) == [kept])
    #expect(lifecycle.sandboxes.records.all().map(\.id) == [other])
    #expect(lifecycle.network.calls.withLock { $0.tearDown } == [podID])
    let (pods, containers) = try lifecycle.reopened()
    #expect(pods.records.all().map(\.id) == [other])
    #expect(containers.records.all().map(\.id) == [kept])
    #expect(
      try FileManager.default.contentsOfDirectory(atPath: lifecycle.config.paths.containersDir) == [kept])
  }

  @Test func stoppingAPodTwiceIsFineAndLeavesItNotReady() async throws {
    let lifecycle = try Lifecycle()
    let podID = try await runPod(lifecycle)
    let id = try await lifecycle.containers.create(inPod: podID, Self.containerConfig())
    try await lifecycle.containers.start(try #require(lifecycle.containers.records.get(id)))
    for _ in 0..<2 {
      try await lifecycle.sandboxes.withLock(podID) { () async throws(CrispError) in
        try await lifecycle.sandboxes.stop(podID, containers: lifecycle.containers)
      }
    }
    #expect(lifecycle.sandboxes.records.get(podID)?.record.state == .notReady)
    let view = await lifecycle.containers.view(try #require(lifecycle.containers.records.get(id)))
    #expect(view.state == .containerExited)
    await #expect(throws: CrispError(.failedPrecondition, "pod sandbox \(podID) is not ready")) {
      try await lifecycle.containers.create(inPod: podID, Self.containerConfig("late"))
    }
  }

  @Test func aPodWhoseCreationWasCutOffIsUndoneAtTheNextStart() async throws {
    let lifecycle = try Lifecycle()
    let store = try MetadataStore(path: lifecycle.config.paths.database)
    let id = String(repeating: "c", count: 64)
    try store.insertPod(
      Self.podRecord(id: id, name: "cut", state: .creating, config: try Self.podConfig("cut").encoded()))
    let (sandboxes, _) = try lifecycle.reopened()
    #expect(sandboxes.records.get(id)?.record.state == .creating)
    await sandboxes.recover()
    #expect(sandboxes.records.get(id) == nil)
    #expect(try store.pod(id) == nil)
    #expect(lifecycle.network.calls.withLock { $0.tearDown } == [id])
  }

  /// A row whose stored config no longer decodes must not keep frontd from starting:
  /// the pod is listed, and can be stopped and removed.
  @Test func aPodWhoseStoredConfigIsUnreadableIsKeptAndCanBeRemoved() async throws {
    let lifecycle = try Lifecycle()
    let store = try MetadataStore(path: lifecycle.config.paths.database)
    let id = String(repeating: "d", count: 64)
    try store.insertPod(Self.podRecord(id: id, name: "bad", config: [0xff, 0xff, 0xff, 0x07]))
    let (sandboxes, containers) = try lifecycle.reopened()
    #expect(sandboxes.records.get(id)?.record.name == "bad")
    try await sandboxes.withLock(id) { () async throws(CrispError) in
      try await sandboxes.remove(id, containers: containers)
    }
    #expect(try store.pod(id) == nil)
    #expect(sandboxes.records.get(id) == nil)
  }

  @Test func idPrefixesResolveWhenUniqueAndAreRefusedWhenAmbiguous() async throws {
    let lifecycle = try Lifecycle()
    var ids: [String] = []
    for name in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q"] {
      ids.append(try await runPod(lifecycle, name))
    }
    for id in ids { #expect(try lifecycle.sandboxes.resolve(String(id.prefix(12)))?.id == id) }
    // 17 IDs over 16 leading hex digits: two share their first digit.
    let firstDigits = Dictionary(grouping: ids, by: { $0.prefix(1) })
    let shared = try #require(firstDigits.first { $0.value.count > 1 })
    #expect(
      throws: CrispError(
        .invalidArgument, "pod sandbox ID prefix \"\(shared.key)\" is ambiguous (\(shared.value.count) pods)")
    ) {
      try lifecycle.sandboxes.resolve(String(shared.key))
    }
    #expect(try lifecycle.sandboxes.resolve("zz") == nil)
    #expect(throws: CrispError(.invalidArgument, "pod sandbox ID must not be empty")) {
      try lifecycle.sandboxes.resolve("")
    }
  }

  @Test(arguments: [
    ("/var/log/pods/x", "../escape.log", "must be a relative path below log_directory"),
    ("/var/log/pods/x", "/etc/passwd", "must be a relative path below log_directory"),
    ("relative/dir", "c.log", "must be an absolute path"),
    ("/var/log/../etc", "c.log", "must be an absolute path"),
  ])
  func logPathsThatLeaveTheLogDirectoryAreRefused(directory: String, path: String, message: String) throws {
    var pod = Self.podConfig()
    pod.logDirectory = directory
    var config = Self.containerConfig()
    config.logPath = path
    let sandbox = Sandbox(record: Self.podRecord(), config: pod)
    let error = #expect(throws: CrispError.self) {
      try Containers.logPath(sandbox, config, containerID: "c", defaultLogDir: "/var/log/crisp")
    }
    #expect(error?.code == .invalidArgument)
    #expect(error?.message.contains(message) == true)
  }

  @Test func aLogPathThroughASymlinkIsRefused() throws {
    let directory = try makeTemporaryDirectory(prefix: "logdir")
    defer { try? FileManager.default.removeItem(atPath: directory) }
    try FileManager.default.createSymbolicLink(atPath: directory + "/c", withDestinationPath: "/etc")
    var pod = Self.podConfig()
    pod.logDirectory = directory
    var config = Self.containerConfig()
    config.logPath = "c/passwd"
    let sandbox = Sandbox(record: Self.podRecord(), config: pod)
    #expect(throws: CrispError(.invalidArgument, "log_path \"c/passwd\": \(directory)/c is a symlink")) {
      try Containers.logPath(sandbox, config, containerID: "c", defaultLogDir: "/var/log/crisp")
    }
  }
}
