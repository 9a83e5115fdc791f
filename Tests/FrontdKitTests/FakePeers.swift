import CrispConfig
import CrispCore
import CrispIPC
import CrispOCI
import CrispTestSupport
import Foundation
import Logging
import Synchronization

@testable import FrontdKit

/// netd as the lifecycle sees it: records each call; `failSetUp` makes CNI ADD fail,
/// `tearDownGate` holds every teardown until it is opened.
final class FakeNetwork: PodNetwork {
  struct Calls {
    var setUp: [String] = []
    var tearDown: [String] = []
  }
  let calls = Mutex(Calls())
  let failSetUp = Mutex<CrispError?>(nil)
  let tearDownGate = Gate(open: true)

  func setUp(_ request: PodNetworkSetup.Request) async throws(CrispError) -> PodNetworkInfo {
    calls.withLock { $0.setUp.append(request.podID) }
    if let failure = failSetUp.withLock({ $0 }) { throw failure }
    return PodNetworkInfo(
      podID: request.podID,
      namespaces: PodNamespaces(network: "/run/netns/\(request.podID.prefix(8))", ipc: "", uts: ""),
      ips: ["10.99.0.7"], network: "fake")
  }

  func tearDown(podID: String) async throws(CrispError) {
    await tearDownGate.wait()
    calls.withLock { $0.tearDown.append(podID) }
  }

  func tearDownOrphans(keeping: [String], listedAt: Int64) async throws(CrispError) -> [String] { [] }
}

/// imaged as the lifecycle sees it: one image, `busybox`; snapshots it hands out and
/// takes back.
final class FakeImages: ImageStore {
  static let imageID = "sha256:" + String(repeating: "b", count: 64)
  let prepared = Mutex<Set<String>>([])
  let released = Mutex<[String]>([])

  func image(named name: String) async throws(CrispError) -> ImageInfo? {
    guard name == "busybox" || name == Self.imageID else { return nil }
    return ImageInfo(
      id: Self.imageID, repoTags: ["docker.io/library/busybox:latest"], repoDigests: [], size: 1,
      config: ImageRuntimeConfig(cmd: ["sh"], stopSignal: "SIGTERM"))
  }

  func prepareSnapshot(containerID: String, image: String) async throws(CrispError) -> SnapshotPrepare.Response {
    prepared.withLock { _ = $0.insert(containerID) }
    return SnapshotPrepare.Response(
      imageID: image,
      mount: RootfsMount(
        type: "overlay", source: "overlay", lowerDirs: ["/lower"], upperDir: "/upper/\(containerID)", workDir: "/work",
        options: []),
      passwd: "root:x:0:0:root:/root:/bin/sh\n", group: "root:x:0:\n")
  }

  func releaseSnapshot(containerID: String) async throws(CrispError) {
    prepared.withLock { _ = $0.remove(containerID) }
    released.withLock { $0.append(containerID) }
  }

  func releaseOrphanedSnapshots(keeping: [String], listedAt: Int64) async throws(CrispError) -> [String] { [] }
}

/// The shims: a launch makes a monitor whose container is created; start, stop and
/// delete move it on as shimd would. `failLaunch` makes the next launches fail.
final class FakeShims: ShimLauncher, ContainerMonitors {
  let monitors = Mutex<[String: FakeMonitor]>([:])
  let launches = Mutex<[ShimLaunch]>([])
  let failLaunch = Mutex<CrispError?>(nil)
  let cleanedUp = Mutex<[String]>([])
  private let nextPID = Atomic<Int32>(4000)

  func launch(_ shim: ShimLaunch) async throws(CrispError) {
    launches.withLock { $0.append(shim) }
    if let failure = failLaunch.withLock({ $0 }) { throw failure }
    let pid = nextPID.add(1, ordering: .relaxed).newValue
    let monitor = FakeMonitor(
      state: ShimContainerState(state: .created, pid: pid, createdAt: WallClock.nowNanoseconds()),
      bundle: shim.bundleDirectory)
    monitors.withLock { $0[shim.containerID] = monitor }
  }

  func cleanUpAfterDeadShim(containerID: String, handler: String, rootfs: String?) async {
    cleanedUp.withLock { $0.append(containerID) }
  }

  func grantableCapabilities() -> [String]? { nil }

  func monitor(_ containerID: String) -> (any ContainerMonitor)? {
    monitors.withLock { $0[containerID] }.flatMap { $0.deleted ? nil : $0 }
  }

  func state(_ containerID: String) async -> ShimContainerState? {
    (monitor(containerID) as? FakeMonitor)?.state.withLock { $0 }
  }

  func knownState(_ containerID: String) async -> ShimContainerState? { await state(containerID) }

  func observe(_ containerID: String, _ state: ShimContainerState) {}

  func forget(_ containerID: String) {}

  /// The shim died: it no longer answers; what it wrote stays.
  func kill(_ containerID: String) {
    _ = monitors.withLock { $0.removeValue(forKey: containerID) }
  }
}

final class FakeMonitor: ContainerMonitor {
  let state: Mutex<ShimContainerState>
  let bundle: String
  private let deletedFlag = Atomic<Bool>(false)
  var deleted: Bool { deletedFlag.load(ordering: .relaxed) }

  init(state: ShimContainerState, bundle: String) {
    self.state = Mutex(state)
    self.bundle = bundle
  }

  func start() async throws(CrispError) -> ShimContainerState {
    try state.withLock { state throws(CrispError) in
      guard state.state == .created else {
        throw CrispError(.failedPrecondition, "container is \(state.state.rawValue), not created")
      }
      state.state = .running
      state.startedAt = WallClock.nowNanoseconds()
      return state
    }
  }

  func stop(timeoutSeconds: Int64, signal: String) async throws(CrispError) -> ShimContainerState {
    exit(code: 137)
  }

  /// The container's process ended with `code`; the shim writes exit.json as shimd does.
  @discardableResult
  func exit(code: Int32) -> ShimContainerState {
    let exited = state.withLock { state in
      if state.state != .exited {
        state.state = .exited
        state.exitCode = code
        state.finishedAt = WallClock.nowNanoseconds()
        state.pid = 0
      }
      return state
    }
    let record = ContainerExitRecord(exitCode: exited.exitCode, finishedAt: exited.finishedAt, oomKilled: false)
    if let data = try? JSONEncoder().encode(record) {
      _ = FileManager.default.createFile(atPath: bundle + "/exit.json", contents: data)
    }
    return exited
  }

  func delete() async throws(CrispError) {
    exit(code: 137)
    deletedFlag.store(true, ordering: .relaxed)
  }

  func execSync(_ request: ShimExecSync.Request, timeoutMs: Int32) async throws(CrispError) -> ShimExecSync.Response {
    throw CrispError(.unimplemented, "fake")
  }
  func reopenLog() async throws(CrispError) {}
  func updateResources(json: String) async throws(CrispError) {}
  func streamExec(_ request: ShimStreamExec.Request) async throws(CrispError) -> SessionSocket {
    throw CrispError(.unimplemented, "fake")
  }
  func streamAttach(_ request: SessionStreams) async throws(CrispError) -> SessionSocket {
    throw CrispError(.unimplemented, "fake")
  }
}

/// Holds waiters until opened.
final class Gate: Sendable {
  private let state: Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>

  init(open: Bool) { state = Mutex((open, [])) }

  func close() { state.withLock { $0.open = false } }

  func open() {
    let waiters = state.withLock { state in
      state.open = true
      defer { state.waiters = [] }
      return state.waiters
    }
    for waiter in waiters { waiter.resume() }
  }

  func wait() async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
      let proceed = state.withLock { state in
        if state.open { return true }
        state.waiters.append(continuation)
        return false
      }
      if proceed { continuation.resume() }
    }
  }

  var waiting: Int { state.withLock { $0.waiters.count } }
}

/// A frontd lifecycle over fakes, with its own root, run root and database in a
/// temporary directory that is removed at the end.
final class Lifecycle {
  let directory: String
  let config: CrispConfig
  let network = FakeNetwork()
  let images = FakeImages()
  let shims = FakeShims()
  let sandboxes: Sandboxes
  let containers: Containers

  init() throws {
    directory = try makeTemporaryDirectory(prefix: "frontdkit")
    var config = CrispConfig()
    config.root = directory + "/root"
    config.runRoot = directory + "/run"
    config.frontd.defaultLogDir = directory + "/logs"
    config.frontd.seccompProfile = packageDirectory + "/deploy/seccomp/default.json"
    config.frontd.pausePath = "/bin/true"
    self.config = config
    (sandboxes, containers) = try Self.open(config, network: network, images: images, shims: shims)
  }

  /// The lifecycle as a restarted frontd would load it from the same database.
  func reopened() throws -> (Sandboxes, Containers) {
    try Self.open(config, network: network, images: images, shims: shims)
  }

  private static func open(
    _ config: CrispConfig, network: FakeNetwork, images: FakeImages, shims: FakeShims
  ) throws -> (Sandboxes, Containers) {
    let paths = config.paths
    try makeDirectories(paths.root, mode: 0o700)
    try makePrivateDirectory(paths.runRoot)
    try makePrivateDirectory(paths.runRoot + "/pods")
    try makePrivateDirectory(paths.containersDir)
    let store = try MetadataStore(path: paths.database)
    let launcher = ContainerLauncher(config: config, shims: shims, handlerFeatures: [:])
    let logger = Logger(label: "test")
    let sandboxes = try Sandboxes(store: store, network: network, monitors: shims, launcher: launcher, logger: logger)
    let containers = try Containers(
      store: store, sandboxes: sandboxes, images: images, events: ContainerEventHub(), logger: logger)
    return (sandboxes, containers)
  }

  deinit { try? FileManager.default.removeItem(atPath: directory) }
}

let packageDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .deletingLastPathComponent().path
