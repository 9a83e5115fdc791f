import CRIAPI
import CrispCore
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix

/// One scripted workload, run the same way through the generated gRPC client against
/// any CRI socket (crisp's, containerd's): what kubelet does for a pod with one
/// container, one operation at a time and then many pods at once.
struct CRIWorkload {
  let name: String
  let socket: String
  let image: String
  let logDir: String
  /// A unique prefix for pod names and UIDs (runtimes reserve names until removal).
  let runID: String

  /// Every operation's latencies in milliseconds, by CRI method name.
  struct Result {
    var operations: [String: [Double]] = [:]
    /// RunPodSandbox start → the container reported running.
    var podReady: [Double] = []
    /// Concurrency N → wall seconds to bring N pods up (run, create, start) at once.
    var bringUp: [Int: Double] = [:]
    /// Concurrency N → wall seconds to stop and remove them at once.
    var tearDown: [Int: Double] = [:]

    mutating func add(_ operation: String, _ milliseconds: Double) {
      operations[operation, default: []].append(milliseconds)
    }

    mutating func merge(_ other: Result) {
      for (operation, values) in other.operations { operations[operation, default: []] += values }
      podReady += other.podReady
    }
  }

  typealias Runtime = Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>
  typealias Images = Runtime_V1_ImageService.Client<HTTP2ClientTransport.Posix>

  func withClients<R: Sendable>(_ body: (Runtime, Images) async throws -> R) async throws -> R {
    try await withGRPCClient(
      transport: .http2NIOPosix(target: .unixDomainSocket(path: socket), transportSecurity: .plaintext)
    ) { grpc in
      try await body(Runtime(wrapping: grpc), Images(wrapping: grpc))
    }
  }

  static func milliseconds(since start: ContinuousClock.Instant) -> Double {
    (ContinuousClock.now - start).microseconds / 1000
  }

  func podConfig(_ index: Int, group: String) -> Runtime_V1_PodSandboxConfig {
    var config = Runtime_V1_PodSandboxConfig()
    config.metadata.name = "bench-\(group)-\(index)"
    config.metadata.namespace = "bench"
    config.metadata.uid = "\(runID)-\(group)-\(index)"
    config.hostname = "bench-\(index)"
    config.logDirectory = logDir + "/\(runID)-\(group)-\(index)"
    config.linux.securityContext.namespaceOptions.pid = .container
    config.linux.cgroupParent = "/crisp-bench"
    return config
  }

  func containerRequest(pod: String, config: Runtime_V1_PodSandboxConfig) -> Runtime_V1_CreateContainerRequest {
    var request = Runtime_V1_CreateContainerRequest()
    request.podSandboxID = pod
    request.sandboxConfig = config
    request.config.metadata.name = "main"
    request.config.image.image = image
    // Exits on SIGTERM, as a well-behaved workload does: StopContainer measures a stop,
    // not a grace period running out.
    request.config.command = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    request.config.logPath = "main.log"
    request.config.linux.securityContext.namespaceOptions.pid = .container
    // Both runtimes filter with their default seccomp profile, as under kubelet's
    // --seccomp-default or the restricted Pod Security Standard: unset, crisp applies
    // its default (as CRI-O does) and containerd none, and runc exec and create then
    // do different work.
    request.config.linux.securityContext.seccomp.profileType = .runtimeDefault
    return request
  }

  /// Pulls and removes the image `rounds` times, then pulls it for the workload.
  func pullRounds(_ rounds: Int, into result: inout Result) async throws {
    try await withClients { _, images in
      var spec = Runtime_V1_ImageSpec()
      spec.image = image
      var measured = Result()
      for _ in 0..<rounds {
        var remove = Runtime_V1_RemoveImageRequest()
        remove.image = spec
        var start = ContinuousClock.now
        _ = try await images.removeImage(remove)
        measured.add("RemoveImage", Self.milliseconds(since: start))
        var pull = Runtime_V1_PullImageRequest()
        pull.image = spec
        start = ContinuousClock.now
        _ = try await images.pullImage(pull)
        measured.add("PullImage", Self.milliseconds(since: start))
      }
      var pull = Runtime_V1_PullImageRequest()
      pull.image = spec
      _ = try await images.pullImage(pull)
      return measured
    }.operations.forEach { result.operations[$0.key, default: []] += $0.value }
  }

  /// `pods` pods one after the other, each with one running container, each operation
  /// timed; `loaded` runs while all of them are up; then each is torn down, timed.
  func sequential(pods: Int, into result: inout Result, loaded: () async throws -> Void) async throws {
    var measured = Result()
    var made: [(pod: String, container: String)] = []
    // A connection per pod, as the first HTTP/2 connection to containerd was seen to
    // close mid-run ("Stream unexpectedly closed"); connecting is not timed.
    for index in 0..<pods {
      let (one, pod, container) = try await withClients { runtime, _ in
        var measured = Result()
        let config = podConfig(index, group: "seq")
        let began = ContinuousClock.now
        var run = Runtime_V1_RunPodSandboxRequest()
        run.config = config
        let pod = try await runtime.runPodSandbox(run).podSandboxID
        measured.add("RunPodSandbox", Self.milliseconds(since: began))

        var start = ContinuousClock.now
        let container = try await runtime.createContainer(containerRequest(pod: pod, config: config)).containerID
        measured.add("CreateContainer", Self.milliseconds(since: start))

        var startRequest = Runtime_V1_StartContainerRequest()
        startRequest.containerID = container
        start = ContinuousClock.now
        _ = try await runtime.startContainer(startRequest)
        measured.add("StartContainer", Self.milliseconds(since: start))

        var status = Runtime_V1_ContainerStatusRequest()
        status.containerID = container
        start = ContinuousClock.now
        let state = try await runtime.containerStatus(status).status.state
        measured.add("ContainerStatus", Self.milliseconds(since: start))
        guard state == .containerRunning else {
          throw CrispError(.internal, "\(name): container \(container) is \(state), not running")
        }
        measured.podReady.append(Self.milliseconds(since: began))

        var exec = Runtime_V1_ExecSyncRequest()
        exec.containerID = container
        exec.cmd = ["true"]
        exec.timeout = 10
        start = ContinuousClock.now
        let exit = try await runtime.execSync(exec).exitCode
        measured.add("ExecSync", Self.milliseconds(since: start))
        guard exit == 0 else { throw CrispError(.internal, "\(name): ExecSync true exited \(exit)") }

        start = ContinuousClock.now
        _ = try await runtime.listContainers(.init())
        measured.add("ListContainers", Self.milliseconds(since: start))
        return (measured, pod, container)
      }
      measured.merge(one)
      made.append((pod, container))
    }

    try await loaded()

    for (pod, container) in made {
      let one = try await withClients { runtime, _ in
        var measured = Result()
        var stop = Runtime_V1_StopContainerRequest()
        stop.containerID = container
        stop.timeout = 10
        var start = ContinuousClock.now
        _ = try await runtime.stopContainer(stop)
        measured.add("StopContainer", Self.milliseconds(since: start))

        var remove = Runtime_V1_RemoveContainerRequest()
        remove.containerID = container
        start = ContinuousClock.now
        _ = try await runtime.removeContainer(remove)
        measured.add("RemoveContainer", Self.milliseconds(since: start))

        var stopPod = Runtime_V1_StopPodSandboxRequest()
        stopPod.podSandboxID = pod
        start = ContinuousClock.now
        _ = try await runtime.stopPodSandbox(stopPod)
        measured.add("StopPodSandbox", Self.milliseconds(since: start))

        var removePod = Runtime_V1_RemovePodSandboxRequest()
        removePod.podSandboxID = pod
        start = ContinuousClock.now
        _ = try await runtime.removePodSandbox(removePod)
        measured.add("RemovePodSandbox", Self.milliseconds(since: start))
        return measured
      }
      measured.merge(one)
    }
    result.merge(measured)
  }

  /// `count` pods brought up at once (each: run, create, start), then torn down at once
  /// (StopPodSandbox, RemovePodSandbox); wall seconds of each half.
  func concurrent(count: Int, into result: inout Result) async throws {
    let (up, down) = try await withClients { runtime, _ in
      let began = ContinuousClock.now
      let pods = try await withThrowingTaskGroup(of: String.self) { group in
        for index in 0..<count {
          group.addTask {
            let config = podConfig(index, group: "c\(count)")
            var run = Runtime_V1_RunPodSandboxRequest()
            run.config = config
            let pod = try await runtime.runPodSandbox(run).podSandboxID
            let container = try await runtime.createContainer(containerRequest(pod: pod, config: config)).containerID
            var start = Runtime_V1_StartContainerRequest()
            start.containerID = container
            _ = try await runtime.startContainer(start)
            return pod
          }
        }
        return try await group.reduce(into: [String]()) { $0.append($1) }
      }
      let up = Self.milliseconds(since: began) / 1000
      let teardown = ContinuousClock.now
      try await withThrowingTaskGroup(of: Void.self) { group in
        for pod in pods {
          group.addTask {
            var stop = Runtime_V1_StopPodSandboxRequest()
            stop.podSandboxID = pod
            _ = try await runtime.stopPodSandbox(stop)
            var remove = Runtime_V1_RemovePodSandboxRequest()
            remove.podSandboxID = pod
            _ = try await runtime.removePodSandbox(remove)
          }
        }
        try await group.waitForAll()
      }
      return (up, Self.milliseconds(since: teardown) / 1000)
    }
    result.bringUp[count, default: 0] += up
    result.tearDown[count, default: 0] += down
  }

  /// Runs `body`, then removes every pod the runtime still has, also when `body` failed.
  func removingPods<R>(after body: () async throws -> R) async throws -> R {
    do {
      let result = try await body()
      await removeAllPods()
      return result
    } catch {
      await removeAllPods()
      throw error
    }
  }

  /// Removes every pod the runtime still has (a failed run's leftovers).
  func removeAllPods() async {
    _ = try? await withClients { runtime, _ in
      for pod in try await runtime.listPodSandbox(.init()).items {
        var stop = Runtime_V1_StopPodSandboxRequest()
        stop.podSandboxID = pod.id
        _ = try? await runtime.stopPodSandbox(stop)
        var remove = Runtime_V1_RemovePodSandboxRequest()
        remove.podSandboxID = pod.id
        _ = try? await runtime.removePodSandbox(remove)
      }
    }
  }

  /// Waits until the runtime answers Status with RuntimeReady and NetworkReady.
  func waitReady(timeout: Duration = .seconds(60)) async throws {
    let deadline = ContinuousClock.now + timeout
    while true {
      let ready = try? await withClients { runtime, _ in
        let conditions = try await runtime.status(.init()).status.conditions
        return conditions.filter { $0.status }.count >= 2
      }
      if ready == true { return }
      guard ContinuousClock.now < deadline else {
        throw CrispError(.deadlineExceeded, "\(name) is not ready on \(socket) after \(timeout)")
      }
      try await Task.sleep(for: .milliseconds(100))
    }
  }
}
