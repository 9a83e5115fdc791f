import CRIAPI
import CrispCore
import CrispIPC
import CrispTestSupport
import Foundation
import GRPCCore
import Testing

/// Pods and containers beyond the basic lifecycle: a shared PID namespace, runtime
/// handlers, OOM kills, daemons killed and restarted under running containers, a
/// reboot, and many pods at once.
@Suite struct PodRuntimeTests {
  @Test func containersOfAPodSharingItsPIDNamespaceSeeEachOther() async throws {
    try await withContainerRuntime(podConfig: { $0.linux.securityContext.namespaceOptions.pid = .pod }) {
      crisp, registry, podID in
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      func run(_ name: String, _ command: [String], pid: Runtime_V1_NamespaceMode) async throws -> String {
        let id = try await crisp.createContainer(podID: podID, name: name, image: image, command: command) {
          $0.config.linux.securityContext.namespaceOptions.pid = pid
        }
        try await crisp.startContainer(id)
        return id
      }
      _ = try await run("server", ["sleep", "4242"], pid: .pod)
      let client = try await run("client", ["sleep", "1000"], pid: .pod)
      let own = try await run("own", ["sleep", "1001"], pid: .container)

      let seen = String(decoding: try await crisp.execSync(client, ["ps", "-o", "pid,args"]).stdout, as: UTF8.self)
      #expect(seen.contains("sleep 4242"), "\(seen)")
      let init1 = String(decoding: try await crisp.execSync(client, ["cat", "/proc/1/cmdline"]).stdout, as: UTF8.self)
      #expect(init1 == "/crisp-pause\0", "PID 1 of the shared namespace: \(init1)")
      let alone = String(decoding: try await crisp.execSync(own, ["ps", "-o", "pid,args"]).stdout, as: UTF8.self)
      #expect(!alone.contains("sleep 4242"), "\(alone)")

      // The infra process is not a container kubelet sees.
      #expect(try await crisp.listContainers().count == 3)
      try await crisp.stopPod(podID)
      #expect(try await crisp.podStatus(podID).status.state == .sandboxNotready)
      try await crisp.removePod(podID)
      try await waitUntil("every shim, the infra's too, exits", timeout: .seconds(10)) { shimProcesses(crisp).isEmpty }
      #expect(crisp.mounts().isEmpty, "mounts left: \(crisp.mounts())")
      #expect(leftovers(crisp).isEmpty, "left: \(leftovers(crisp))")
    }
  }

  @Test func runtimeHandlersComeFromTheConfiguration() async throws {
    let dir = try makeTemporaryDirectory(prefix: "crisp-handler")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let wrapper = dir + "/runc-logged"
    try "#!/bin/sh\necho \"$@\" >> \(dir)/calls.log\nexec /usr/sbin/runc \"$@\"\n".write(
      toFile: wrapper, atomically: true, encoding: .utf8)
    chmod(wrapper, 0o755)

    try await withContainerRuntime(frontdConfig: "runtime_handlers = { logged = \"\(wrapper)\" }") {
      crisp, registry, defaultPod in
      let handlers = try await crisp.status().runtimeHandlers.map(\.name)
      #expect(handlers == ["", "runc", "logged"])
      let unknown = await #expect(throws: RPCError.self) {
        try await crisp.runPod(PodSandboxTests.podConfig(name: "x"), handler: "nope")
      }
      #expect(unknown?.code == .invalidArgument)
      #expect(unknown?.message.contains("\"nope\"") == true && unknown?.message.contains("logged") == true)

      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      var config = PodSandboxTests.podConfig(name: "logged")
      config.logDirectory = crisp.dir + "/logs"
      let pod = try await crisp.runPod(config, handler: "logged")
      #expect(try await crisp.podStatus(pod).status.runtimeHandler == "logged")
      let id = try await crisp.createContainer(podID: pod, name: "c", image: image, command: ["sleep", "1000"])
      try await crisp.startContainer(id)
      #expect(try await crisp.containerStatus(id).status.state == .containerRunning)
      let calls = readWholeFile(dir + "/calls.log")
      #expect(calls.contains("create") && calls.contains(id), "\(calls)")
      #expect(calls.contains(crisp.paths.runRoot + "/runtimes/logged"), "its own state directory: \(calls)")

      let plain = try await crisp.createContainer(
        podID: defaultPod, name: "plain", image: image, command: ["sleep", "1000"])
      try await crisp.startContainer(plain)
      #expect(!readWholeFile(dir + "/calls.log").contains(plain), "the default handler is runc itself")

      try await crisp.removePod(pod)
      #expect(readWholeFile(dir + "/calls.log").contains("delete"))
      try await crisp.removePod(defaultPod)
      try await waitUntil("the shims exit", timeout: .seconds(10)) { shimProcesses(crisp).isEmpty }
      #expect(leftovers(crisp).isEmpty, "left: \(leftovers(crisp))")
    }
  }

  @Test func aContainerOverItsMemoryLimitIsOOMKilled() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      // busybox tail keeps a line that never ends (/dev/zero has no newline) in memory.
      let id = try await crisp.createContainer(
        podID: podID, name: "hog", image: image, command: ["tail", "/dev/zero"]
      ) { $0.config.linux.resources.memoryLimitInBytes = 32 << 20 }
      try await crisp.startContainer(id)
      try await waitUntil("the hog is killed", timeout: .seconds(60)) {
        try await crisp.containerStatus(id).status.state == .containerExited
      }
      let status = try await crisp.containerStatus(id).status
      #expect(status.reason == "OOMKilled")
      #expect(status.exitCode == 137)
      try await crisp.removePod(podID)
    }
  }

  @Test func containersOutliveEveryDaemonsKillAndAnExitMeanwhileIsRecorded() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      let ticker = try await crisp.createContainer(
        podID: podID, name: "ticker", image: image,
        command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.05; done"])
      try await crisp.startContainer(ticker)
      // Exits with 7 once /tmp/go exists in its root filesystem.
      let waiter = try await crisp.createContainer(
        podID: podID, name: "waiter", image: image,
        command: ["sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.05; done; exit 7"])
      try await crisp.startContainer(waiter)
      let log = crisp.dir + "/logs/ticker.log"
      func ticks() -> [Int] {
        readWholeFile(log).split(separator: "\n").compactMap { line in
          line.split(separator: " ").last.flatMap { Int($0) }
        }
      }

      for daemon in [CrispInstance.Daemon.imaged, .netd, .frontd] {
        let before = ticks().count
        try await crisp.stop(daemon, signal: SIGKILL)
        if daemon == .frontd {
          try "".write(
            toFile: crisp.paths.containersDir + "/\(waiter)/rootfs/tmp/go", atomically: false, encoding: .utf8)
          try await waitUntil("the waiter's exit is recorded while frontd is down", timeout: .seconds(10)) {
            FileManager.default.fileExists(atPath: crisp.paths.containersDir + "/\(waiter)/exit.json")
          }
        }
        try await waitUntil("the ticker logs while \(daemon) is down", timeout: .seconds(10)) {
          ticks().count > before + 10
        }
        try crisp.start(daemon)
        try await crisp.waitForCRI()
        try await waitUntil("CRI answers after \(daemon) restarts", timeout: .seconds(10)) {
          (try? await crisp.containerStatus(ticker).status.state) == .containerRunning
        }
        #expect(try await crisp.listPods().map(\.id) == [podID])
        #expect(try await crisp.listContainers().count == 2)
        #expect(try await crisp.withImages { try await $0.listImages(.init()) }.images.count == 1)
      }
      let waited = try await crisp.containerStatus(waiter).status
      #expect(waited.state == .containerExited)
      #expect(waited.exitCode == 7)
      #expect(waited.reason == "Error")
      // No line was lost: the ticks run 1, 2, 3... without a gap.
      let all = ticks()
      #expect(all == Array(1...all.count), "ticks with a gap: \(all.count) lines")
      #expect(String(decoding: try await crisp.execSync(ticker, ["echo", "ok"]).stdout, as: UTF8.self) == "ok\n")
      try await crisp.removePod(podID)
      try await waitUntil("the shims exit", timeout: .seconds(10)) { shimProcesses(crisp).isEmpty }
    }
  }

  /// A reboot as frontd finds it: another boot ID in its database, no process and no
  /// socket of the old boot left (this test kills them and removes the sockets, as a
  /// reboot clears /run), and mounts gone.
  @Test func afterARebootEverythingIsShownStoppedAndCanBeRemoved() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let id = try await crisp.startSleeper(podID: podID, registry: registry, name: "c")
      let initPid = try await crisp.initPID(id)
      #expect(initPid > 0)

      try await crisp.stop(.frontd, signal: SIGKILL)
      for shim in shimPIDs(crisp) { kill(shim, SIGKILL) }
      kill(initPid, SIGKILL)
      try await waitUntil("the old boot's processes are gone", timeout: .seconds(10)) {
        shimPIDs(crisp).isEmpty && kill(initPid, 0) != 0
      }
      for socket in (try? FileManager.default.contentsOfDirectory(atPath: crisp.paths.runRoot + "/shims")) ?? [] {
        try? FileManager.default.removeItem(atPath: crisp.paths.runRoot + "/shims/" + socket)
      }
      _ = try runProgram(
        "/usr/bin/sqlite3", [crisp.paths.database, "UPDATE meta SET value = 'an-earlier-boot' WHERE key = 'boot_id'"])

      try crisp.start(.frontd)
      try await crisp.waitForCRI()
      #expect(try await crisp.podStatus(podID).status.state == .sandboxNotready)
      let status = try await crisp.containerStatus(id).status
      #expect(status.state == .containerExited)
      #expect(status.exitCode == 255)
      #expect(status.reason == "Unknown")
      try await crisp.removePod(podID)
      #expect(try await crisp.listContainers().isEmpty)
      #expect(try await crisp.listPods().isEmpty)
      #expect(crisp.mounts().isEmpty, "mounts left: \(crisp.mounts())")
      #expect(leftovers(crisp).isEmpty, "left: \(leftovers(crisp))")
    }
  }

  @Test func twentyPodsWithTwoContainersEachComeAndGoAtOnce() async throws {
    try await withContainerRuntime { crisp, registry, firstPod in
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      try await crisp.removePod(firstPod)
      let pods = try await withThrowingTaskGroup(of: String.self) { group in
        for index in 0..<20 {
          group.addTask {
            var config = PodSandboxTests.podConfig(name: "pod\(index)")
            config.logDirectory = crisp.dir + "/logs/pod\(index)"
            let pod = try await crisp.runPod(config)
            for name in ["a", "b"] {
              let id = try await crisp.createContainer(
                podID: pod, name: name, image: image, command: ["sleep", "1000"])
              try await crisp.startContainer(id)
            }
            return pod
          }
        }
        return try await group.reduce(into: []) { $0.append($1) }
      }
      let containers = try await crisp.listContainers()
      #expect(containers.count == 40)
      #expect(containers.allSatisfy { $0.state == .containerRunning })
      #expect(Set(try await crisp.listPods().map(\.id)) == Set(pods))

      try await withThrowingTaskGroup(of: Void.self) { group in
        for pod in pods { group.addTask { try await crisp.removePod(pod) } }
        try await group.waitForAll()
      }
      #expect(try await crisp.listContainers().isEmpty)
      #expect(try await crisp.listPods().isEmpty)
      try await waitUntil("the 40 shims exit", timeout: .seconds(20)) { shimProcesses(crisp).isEmpty }
      #expect(crisp.mounts().isEmpty, "mounts left: \(crisp.mounts())")
      #expect(leftovers(crisp).isEmpty, "left: \(leftovers(crisp))")
    }
  }

  /// CreateContainer and RemovePodSandbox of one pod at once: whichever wins, no
  /// container, shim or mount is left without its pod.
  @Test func aCreateRacingThePodsRemovalLeavesNoOrphan() async throws {
    try await withContainerRuntime { crisp, registry, firstPod in
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      try await crisp.removePod(firstPod)
      for round in 0..<6 {
        var config = PodSandboxTests.podConfig(name: "race\(round)")
        config.logDirectory = crisp.dir + "/logs/race\(round)"
        let pod = try await crisp.runPod(config)
        async let created: String? = try? crisp.createContainer(
          podID: pod, name: "c", image: image, command: ["sleep", "1000"])
        // Half the rounds give the create a head start into its IPC calls.
        if round % 2 == 1 { await Task.yield() }
        try await crisp.removePod(pod)
        _ = await created
        #expect(try await crisp.listContainers().isEmpty, "round \(round): a container outlived its pod")
      }
      try await waitUntil("every shim exits", timeout: .seconds(20)) { shimProcesses(crisp).isEmpty }
      #expect(crisp.mounts().isEmpty, "mounts left: \(crisp.mounts())")
      #expect(leftovers(crisp).isEmpty, "left: \(leftovers(crisp))")
    }
  }
}

/// pids of this instance's shimd processes.
func shimPIDs(_ crisp: CrispInstance) -> [Int32] {
  let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
  return pids.compactMap { pid -> Int32? in
    let cmdline = readWholeFile("/proc/\(pid)/cmdline").replacingOccurrences(of: "\0", with: " ")
    return cmdline.contains("shimd") && cmdline.contains(crisp.paths.runRoot) ? Int32(pid) : nil
  }
}

/// What removed pods and containers must not leave: bundles, pod directories, shim
/// sockets, runc state, container cgroups (on every hierarchy).
func leftovers(_ crisp: CrispInstance) -> [String] {
  let fm = FileManager.default
  var left: [String] = []
  for dir in [
    crisp.paths.containersDir, crisp.paths.runRoot + "/pods", crisp.paths.runRoot + "/shims",
    crisp.paths.runRoot + "/runc",
  ] {
    left += ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).map { dir + "/" + $0 }
  }
  for hierarchy in (try? fm.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? [] {
    let parent = "/sys/fs/cgroup/\(hierarchy)/crisp"
    for entry in (try? fm.contentsOfDirectory(atPath: parent)) ?? [] where entry.hasPrefix("crisp-") {
      // Only this instance's: a cgroup named after one of its containers' log lines.
      if readWholeFile(crisp.dir + "/cri-frontd.log").contains(String(entry.dropFirst("crisp-".count))) {
        left.append(parent + "/" + entry)
      }
    }
  }
  return left
}

extension PodRuntimeTests {
  /// A test whose frontd died leaves its containers running under their shims (as a node
  /// would); the test instance's teardown still kills and deletes them.
  @Test func aTestInstanceCleansUpAfterADeadFrontd() async throws {
    var runRoot = ""
    let marker = "4243\(UInt16.random(in: 1000...9999))"
    try await withContainerRuntime { crisp, registry, podID in
      runRoot = crisp.paths.runRoot
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      let sleeper = try await crisp.createContainer(
        podID: podID, name: "orphan", image: image, command: ["sleep", marker])
      try await crisp.startContainer(sleeper)
      _ = try await crisp.stop(.frontd, signal: SIGKILL)
      #expect(!RuntimeLeftovers.shims(runRoot: runRoot).isEmpty, "shims outlive frontd")
      #expect(!processIDs { $0 == "sleep \(marker) " }.isEmpty)
    }
    // SIGKILL is delivered, not yet acted on, when kill(2) returns: a killed shim may still
    // show its command line for a moment.
    try await waitUntil("the shims and the orphan are gone", timeout: .seconds(10)) {
      RuntimeLeftovers.shims(runRoot: runRoot).isEmpty && processIDs { $0 == "sleep \(marker) " }.isEmpty
    }
    #expect(!readWholeFile("/proc/self/mountinfo").contains(runRoot))
  }
}

/// A snapshot imaged holds for a container frontd does not know (a CreateContainer whose
/// undo could not reach imaged), and a pod network netd holds for a pod frontd does not
/// know, are released when frontd starts, and periodically; those of known containers
/// and pods, and any made after frontd listed its records, are kept.
@Suite struct OrphanedSnapshotTests {
  @Test func frontdHasImagedAndNetdReleaseWhatNoContainerOrPodOwns() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let image = "\(registry.address)/crisp/busybox:latest"
      let known = try await crisp.startSleeper(podID: podID, registry: registry, name: "known")
      let imaged = try crisp.imagedClient()
      defer { imaged.close() }
      let orphan = String(repeating: "0", count: 63) + "1"
      _ = try await imaged.call(SnapshotPrepare.self, .init(containerID: orphan, image: image))
      let snapshots = crisp.imagesDir + "/snapshots"
      #expect(FileManager.default.fileExists(atPath: snapshots + "/" + orphan))

      // What frontd asks at start and every ten minutes.
      let before = try await imaged.call(SnapshotReconcile.self, .init(containerIDs: [known], listedAt: 1))
      #expect(before.released.isEmpty, "a snapshot made after the listing is kept")
      // And a pod network netd set up for a pod frontd never recorded.
      let netd = try IPCClient(peer: "netd", address: CrispPaths.ipcAddress(crisp.paths.netdSocket))
      defer { netd.close() }
      let orphanPod = String(repeating: "0", count: 63) + "2"
      let network = try await netd.call(
        PodNetworkSetup.self,
        .init(podID: orphanPod, podName: "orphan", podNamespace: "default", podUID: "uid-orphan"))
      #expect(crisp.mounts().contains { $0.contains(network.namespaces.network) })

      // netd keeps a second of margin for its coarse file times: the orphan must be older.
      let record = crisp.paths.root + "/cni/pods/\(orphanPod).json"
      try await waitUntil("the orphan's network record is over a second old", timeout: .seconds(10)) {
        let written = (try? FileManager.default.attributesOfItem(atPath: record)[.modificationDate] as? Date) ?? nil
        return written.map { Date().timeIntervalSince($0) > 1.2 } ?? false
      }
      try await crisp.stop(.frontd)
      try crisp.start(.frontd)
      try await crisp.waitForCRI()
      try await waitUntil("frontd's sweep releases the orphan", timeout: .seconds(20)) {
        !FileManager.default.fileExists(atPath: snapshots + "/" + orphan)
      }
      #expect(FileManager.default.fileExists(atPath: snapshots + "/" + known), "a known container's snapshot is kept")
      try await waitUntil("frontd's sweep tears the orphan pod's network down", timeout: .seconds(20)) {
        (try? await netd.call(PodNetworkStatus.self, .init(podID: orphanPod))) == nil
      }
      #expect(!crisp.mounts().contains { $0.contains(orphanPod) }, "the orphan pod's namespaces are unpinned")
      #expect(try await netd.call(PodNetworkStatus.self, .init(podID: podID)).ips.count == 1, "the known pod keeps its")
      #expect(try await crisp.execSync(known, ["true"]).exitCode == 0)
    }
  }
}
