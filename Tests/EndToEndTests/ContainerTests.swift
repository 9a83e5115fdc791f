import CRIAPI
import CrispCore
import CrispTestSupport
import Foundation
import GRPCCore
import Testing

/// Containers end to end: a real registry's busybox image pulled by imaged, a pod on a
/// bridge of the test's own, shimd and real runc, over the CRI socket.
@Suite struct ContainerTests {
  /// frontd remembers a running container's state between listings (kubelet lists
  /// every container every second): an init killed from outside, with no CRI call,
  /// must still be listed exited, with its exit code, once its shim has seen the exit.
  @Test func aContainerKilledBehindTheRuntimesBackIsListedExited() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let id = try await crisp.startSleeper(podID: podID, registry: registry, name: "victim")
      for _ in 0..<3 {
        #expect(try await crisp.listContainers(id: id).map(\.state) == [.containerRunning])
        #expect(try await crisp.containerStatus(id).status.state == .containerRunning)
      }
      let initPid = try await crisp.initPID(id)
      #expect(initPid > 0)
      #expect(kill(initPid, SIGKILL) == 0)
      try await waitUntil("the listing shows the container exited", timeout: .seconds(10)) {
        try await crisp.listContainers(id: id).map(\.state) == [.containerExited]
      }
      let status = try await crisp.containerStatus(id).status
      #expect(status.state == .containerExited)
      #expect(status.exitCode == 137)
      #expect(status.reason == "Error")
      #expect(status.finishedAt >= status.startedAt)
    }
  }

  @Test func containerLifecycle() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let image = "\(registry.address)/crisp/busybox:latest"
      let imageID = try await crisp.pull(image)
      let id = try await crisp.createContainer(
        podID: podID, name: "main", image: image,
        command: ["sh", "-c", "echo hello; echo oops >&2; trap '' TERM; while true; do sleep 1; done"],
        labels: ["role": "main"], annotations: ["io.kubernetes.container.hash": "abc123"])
      #expect(id.count == 64)
      var status = try await crisp.containerStatus(id).status
      #expect(status.state == .containerCreated)
      #expect(status.imageRef == imageID)
      #expect(status.labels == ["role": "main"])
      #expect(status.annotations == ["io.kubernetes.container.hash": "abc123"])
      #expect(status.logPath == crisp.dir + "/logs/main.log")

      try await crisp.startContainer(id)
      status = try await crisp.containerStatus(id).status
      #expect(status.state == .containerRunning)
      #expect(status.startedAt >= status.createdAt)
      try await waitUntil("both lines are logged", timeout: .seconds(10)) {
        let log = readWholeFile(crisp.dir + "/logs/main.log")
        return log.contains(" stdout F hello\n") && log.contains(" stderr F oops\n")
      }
      let line = try #require(readWholeFile(crisp.dir + "/logs/main.log").split(separator: "\n").first)
      #expect(
        line.wholeMatch(of: /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) [PF] .*/) != nil, "\(line)")

      // ExecSync: exit code and both streams; a command past its timeout is refused.
      let exec = try await crisp.execSync(id, ["sh", "-c", "echo out; echo err >&2; exit 3"])
      #expect(exec.exitCode == 3)
      #expect(String(decoding: exec.stdout, as: UTF8.self) == "out\n")
      #expect(String(decoding: exec.stderr, as: UTF8.self) == "err\n")
      let started = ContinuousClock.now
      let slow = await #expect(throws: RPCError.self) { try await crisp.execSync(id, ["sleep", "30"], timeout: 1) }
      #expect(slow?.code == .deadlineExceeded)
      #expect(ContinuousClock.now - started < .seconds(10))

      // The process ignores SIGTERM: stop escalates to SIGKILL after the timeout.
      try await crisp.stopContainer(id, timeout: 1)
      status = try await crisp.containerStatus(id).status
      #expect(status.state == .containerExited)
      #expect(status.exitCode == 137)
      #expect(status.reason == "Error")
      #expect(status.finishedAt >= status.startedAt)
      try await crisp.stopContainer(id, timeout: 1)  // idempotent

      // Exit codes and reasons.
      for (code, reason) in [(0, "Completed"), (1, "Error")] {
        let short = try await crisp.createContainer(
          podID: podID, name: "exit\(code)", image: image, command: ["sh", "-c", "exit \(code)"])
        try await crisp.startContainer(short)
        try await waitUntil("exit\(code) exits", timeout: .seconds(10)) {
          try await crisp.containerStatus(short).status.state == .containerExited
        }
        let done = try await crisp.containerStatus(short).status
        #expect(done.exitCode == Int32(code))
        #expect(done.reason == reason)
      }

      let all = try await crisp.listContainers()
      #expect(all.count == 3)
      #expect(try await crisp.listContainers(labels: ["role": "main"]).map(\.id) == [id])
      #expect(try await crisp.listContainers(id: String(id.prefix(8))).map(\.id) == [id])

      try await crisp.removeContainer(id)
      try await crisp.removeContainer(id)  // idempotent
      let gone = await #expect(throws: RPCError.self) { try await crisp.containerStatus(id) }
      #expect(gone?.code == .notFound)
      // Removing the pod removes its other containers.
      try await crisp.removePod(podID)
      #expect(try await crisp.listContainers().isEmpty)
      #expect(crisp.mounts().isEmpty, "mounts left: \(crisp.mounts())")
      // Each shim exits right after answering its delete.
      try await waitUntil("the shims exit", timeout: .seconds(10)) { shimProcesses(crisp).isEmpty }
    }
  }

  @Test func containersKeepRunningWhileFrontdRestarts() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      let id = try await crisp.createContainer(
        podID: podID, name: "ticker", image: image,
        command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done"])
      try await crisp.startContainer(id)

      try await crisp.stop(.frontd, signal: SIGKILL)
      let linesWhileDown = readWholeFile(crisp.dir + "/logs/ticker.log").split(separator: "\n").count
      try crisp.start(.frontd)
      try await crisp.waitForCRI()
      #expect(try await crisp.containerStatus(id).status.state == .containerRunning)
      try await waitUntil("the container kept logging", timeout: .seconds(10)) {
        readWholeFile(crisp.dir + "/logs/ticker.log").split(separator: "\n").count > linesWhileDown + 5
      }
      let exec = try await crisp.execSync(id, ["echo", "still here"])
      #expect(String(decoding: exec.stdout, as: UTF8.self) == "still here\n")
      try await crisp.removePod(podID)
      try await waitUntil("the shim exits", timeout: .seconds(10)) { shimProcesses(crisp).isEmpty }
    }
  }

  @Test func securitySettingsAreSeenFromInside() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      try await crisp.pull("\(registry.address)/crisp/busybox:user")
      // Privileged containers need a privileged pod.
      try await crisp.removePod(podID)
      var podConfig = PodSandboxTests.podConfig(name: "privileged")
      podConfig.linux.securityContext.privileged = true
      let podID = try await crisp.runPod(podConfig)
      func run(_ name: String, image: String, _ configure: @escaping (inout Runtime_V1_CreateContainerRequest) -> Void)
        async throws -> String
      {
        let id = try await crisp.createContainer(
          podID: podID, name: name, image: image, command: ["sleep", "1000"], configure: configure)
        try await crisp.startContainer(id)
        return id
      }
      func exec(_ id: String, _ script: String) async throws -> (Int32, String) {
        let result = try await crisp.execSync(id, ["sh", "-c", script])
        return (result.exitCode, String(decoding: result.stdout + result.stderr, as: UTF8.self))
      }

      // Default capabilities (CRI-O's nine) against privileged (all of frontd's).
      let plain = try await run("plain", image: image) { _ in }
      let privileged = try await run("privileged", image: image) {
        $0.config.linux.securityContext.privileged = true
      }
      let plainCaps = try await exec(plain, "grep CapEff /proc/self/status").1
      let privilegedCaps = try await exec(privileged, "grep CapEff /proc/self/status").1
      #expect(plainCaps.contains("00000000000005fb"), "\(plainCaps)")
      #expect(plainCaps != privilegedCaps)

      // RuntimeDefault seccomp refuses unshare (no CAP_SYS_ADMIN); Unconfined lets the
      // privileged container do it.
      #expect(try await exec(plain, "grep Seccomp: /proc/self/status").1.contains("2"))
      #expect(try await exec(plain, "unshare -u true").0 != 0)
      #expect(try await exec(privileged, "unshare -u true").0 == 0)

      // A read-only root filesystem; the image's user, and run_as_user over it.
      let readOnly = try await run("readonly", image: image) {
        $0.config.linux.securityContext.readonlyRootfs = true
      }
      #expect(try await exec(readOnly, "touch /x").0 != 0)
      #expect(try await exec(plain, "touch /x").0 == 0)
      let user = try await run("user", image: "\(registry.address)/crisp/busybox:user") { _ in }
      #expect(try await exec(user, "id -u").1 == "1234\n")
      let uid = try await run("uid", image: image) { $0.config.linux.securityContext.runAsUser.value = 4321 }
      #expect(try await exec(uid, "id -u").1 == "4321\n")
      try await crisp.removePod(podID)
      #expect(crisp.mounts().isEmpty, "mounts left: \(crisp.mounts())")
    }
  }

  @Test func badContainerRequests() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let image = "\(registry.address)/crisp/busybox:latest"
      let notPulled = await #expect(throws: RPCError.self) {
        try await crisp.createContainer(podID: podID, name: "x", image: image, command: ["true"])
      }
      #expect(notPulled?.code == .notFound)
      try await crisp.pull(image)
      let noPod = await #expect(throws: RPCError.self) {
        try await crisp.createContainer(podID: "f00f", name: "x", image: image, command: ["true"])
      }
      #expect(noPod?.code == .notFound)
      let noName = await #expect(throws: RPCError.self) {
        try await crisp.createContainer(podID: podID, name: "", image: image, command: ["true"])
      }
      #expect(noName?.code == .invalidArgument)
      let first = try await crisp.createContainer(podID: podID, name: "dup", image: image, command: ["true"])
      let dup = await #expect(throws: RPCError.self) {
        try await crisp.createContainer(podID: podID, name: "dup", image: image, command: ["true"])
      }
      #expect(dup?.code == .alreadyExists)
      let unknownUser = await #expect(throws: RPCError.self) {
        try await crisp.createContainer(podID: podID, name: "u", image: image, command: ["true"], user: "nobody-here")
      }
      #expect(unknownUser?.code == .invalidArgument)
      #expect(unknownUser?.message.contains("nobody-here") == true)
      let notRunning = await #expect(throws: RPCError.self) { try await crisp.execSync(first, ["true"]) }
      #expect(notRunning?.code == .failedPrecondition)
      #expect(try await crisp.listContainers().map(\.id) == [first], "failed creates leave nothing")
      try await crisp.removePod(podID)
      #expect(crisp.mounts().isEmpty, "mounts left: \(crisp.mounts())")
    }
  }
}

/// A started crisp (bridge network, the repo's seccomp profile, logs under the test
/// directory) with a registry of the standard images and one ready pod.
func withContainerRuntime(
  extraConfig: String = "", frontdConfig: String = "",
  podConfig configure: (inout Runtime_V1_PodSandboxConfig) -> Void = { _ in },
  _ body: (CrispInstance, LocalRegistry, String) async throws -> Void
) async throws {
  try await withRegistry { registry, _ in
    let seccomp = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().appendingPathComponent("deploy/seccomp/default.json").path
    try await withCrisp(extraConfig: extraConfig) { crisp in
      try crisp.writeRegistriesConf(CrispInstance.insecureRegistry(registry.address))
      try crisp.writeFrontdConfig(
        """
        seccomp_profile = "\(seccomp)"
        default_log_dir = "\(crisp.dir)/logs"
        \(frontdConfig)
        """)
      try crisp.writeBridgeCNIConfig()
      try await crisp.startAll()
      var config = PodSandboxTests.podConfig()
      config.logDirectory = crisp.dir + "/logs"
      configure(&config)
      let podID = try await crisp.runPod(config)
      try await body(crisp, registry, podID)
    }
  }
}

/// shimd processes of this instance still alive.
func shimProcesses(_ crisp: CrispInstance) -> [Int32] { RuntimeLeftovers.shims(runRoot: crisp.paths.runRoot) }

extension CrispInstance {
  func createContainer(
    podID: String, name: String, image: String, command: [String], labels: [String: String] = [:],
    annotations: [String: String] = [:], user: String? = nil,
    configure: (inout Runtime_V1_CreateContainerRequest) -> Void = { _ in }
  ) async throws -> String {
    var request = Runtime_V1_CreateContainerRequest()
    request.podSandboxID = podID
    request.config.metadata.name = name
    request.config.image.image = image
    request.config.command = command
    request.config.labels = labels
    request.config.annotations = annotations
    request.config.logPath = name + ".log"
    // As kubelet sends it: each container its own PID namespace.
    request.config.linux.securityContext.namespaceOptions.pid = .container
    if let user { request.config.linux.securityContext.runAsUsername = user }
    request.sandboxConfig = PodSandboxTests.podConfig()
    configure(&request)
    return try await withRuntime { try await $0.createContainer(request) }.containerID
  }

  func startContainer(_ id: String) async throws {
    var request = Runtime_V1_StartContainerRequest()
    request.containerID = id
    _ = try await withRuntime { try await $0.startContainer(request) }
  }

  func stopContainer(_ id: String, timeout: Int64) async throws {
    var request = Runtime_V1_StopContainerRequest()
    request.containerID = id
    request.timeout = timeout
    _ = try await withRuntime { try await $0.stopContainer(request) }
  }

  func removeContainer(_ id: String) async throws {
    var request = Runtime_V1_RemoveContainerRequest()
    request.containerID = id
    _ = try await withRuntime { try await $0.removeContainer(request) }
  }

  func containerStatus(_ id: String, verbose: Bool = false) async throws -> Runtime_V1_ContainerStatusResponse {
    var request = Runtime_V1_ContainerStatusRequest()
    request.containerID = id
    request.verbose = verbose
    return try await withRuntime { try await $0.containerStatus(request) }
  }

  /// A started busybox container of the pod that sleeps (the registry's image, pulled).
  func startSleeper(podID: String, registry: LocalRegistry, name: String) async throws -> String {
    let image = "\(registry.address)/crisp/busybox:latest"
    try await pull(image)
    let id = try await createContainer(podID: podID, name: name, image: image, command: ["sleep", "1000"])
    try await startContainer(id)
    return id
  }

  /// The container's init process as the host sees it (the verbose status's info).
  func initPID(_ id: String) async throws -> Int32 {
    let info = try #require(try await containerStatus(id, verbose: true).info["info"])
    let fields = try #require(try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any])
    return Int32(try #require(fields["pid"] as? Int))
  }

  func listContainers(id: String = "", labels: [String: String] = [:]) async throws -> [Runtime_V1_Container] {
    var request = Runtime_V1_ListContainersRequest()
    request.filter.id = id
    request.filter.labelSelector = labels
    return try await withRuntime { try await $0.listContainers(request) }.containers
  }

  func execSync(_ id: String, _ command: [String], timeout: Int64 = 10) async throws -> Runtime_V1_ExecSyncResponse {
    var request = Runtime_V1_ExecSyncRequest()
    request.containerID = id
    request.cmd = command
    request.timeout = timeout
    return try await withRuntime { try await $0.execSync(request) }
  }
}

/// Recursive read-only mounts and the supplemental-groups policy, announced in Status and
/// seen from inside the container and in ContainerStatus.
@Suite struct MountAndGroupFeatureTests {
  @Test func aRecursiveReadOnlyMountMakesItsSubmountsReadOnlyToo() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let status = try await crisp.status()
      #expect(status.runtimeHandlers.first { $0.name == "runc" }?.features.recursiveReadOnlyMounts == true)
      #expect(status.features.supplementalGroupsPolicy)
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      let host = try makeTemporaryDirectory(prefix: "crisp-rro")
      let submount = host + "/tmpfs"
      mkdir(submount, 0o755)
      #expect(mount("none", submount, "tmpfs", 0, "size=1m") == 0)
      defer {
        umount2(submount, Int32(MNT_DETACH))
        try? FileManager.default.removeItem(atPath: host)
      }
      func start(_ name: String, recursive: Bool) async throws -> String {
        let id = try await crisp.createContainer(podID: podID, name: name, image: image, command: ["sleep", "1000"]) {
          var volume = Runtime_V1_Mount()
          volume.hostPath = host
          volume.containerPath = "/mnt"
          volume.readonly = true
          volume.recursiveReadOnly = recursive
          $0.config.mounts = [volume]
        }
        try await crisp.startContainer(id)
        return id
      }
      let plain = try await start("ro", recursive: false)
      let recursive = try await start("rro", recursive: true)
      #expect(
        try await crisp.execSync(plain, ["touch", "/mnt/tmpfs/plain"]).exitCode == 0, "a submount stays writable")
      let refused = try await crisp.execSync(recursive, ["touch", "/mnt/tmpfs/recursive"])
      #expect(refused.exitCode != 0)
      #expect(String(decoding: refused.stderr, as: UTF8.self).contains("Read-only file system"))
      #expect(try await crisp.execSync(recursive, ["touch", "/mnt/top"]).exitCode != 0)
    }
  }

  /// The fixture image's /etc/group puts crispuser (1234) into crispextra (4321).
  @Test func supplementalGroupsFollowThePolicyAndContainerStatusShowsThem() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      for (policy, expected) in [
        (Runtime_V1_SupplementalGroupsPolicy.merge, [1234, 555, 4321] as [Int64]), (.strict, [1234, 555]),
      ] {
        let id = try await crisp.createContainer(
          podID: podID, name: "groups-\(policy)", image: image, command: ["sleep", "1000"]
        ) {
          $0.config.linux.securityContext.runAsUser.value = 1234
          $0.config.linux.securityContext.supplementalGroups = [555]
          $0.config.linux.securityContext.supplementalGroupsPolicy = policy
        }
        try await crisp.startContainer(id)
        let user = try await crisp.containerStatus(id).status.user.linux
        #expect(user.uid == 1234 && user.gid == 1234, "\(policy): \(user)")
        #expect(user.supplementalGroups.sorted() == expected.sorted(), "\(policy): \(user)")
        let inside = String(decoding: try await crisp.execSync(id, ["id", "-G"]).stdout, as: UTF8.self)
        #expect(
          Set(inside.split(whereSeparator: \.isWhitespace).compactMap { Int64($0) }) == Set(expected), "\(inside)")
      }
    }
  }
}
