import CrispCore
import CrispTestSupport
import Foundation

/// crisp against containerd on the same machine, in the same run, through the same
/// client: the CRI workload on each, interleaved (A B A B), plus the memory and CPU of
/// each runtime's own processes (daemons and per-container monitors; not runc, not the
/// containers).
enum PeerBench {
  struct Side {
    let workload: CRIWorkload
    /// The runtime's daemons (crisp: frontd, imaged, netd; containerd: containerd).
    let daemons: @Sendable () -> [(String, Int32)]
    /// Its per-container (crisp) or per-pod (containerd) monitors.
    let monitors: @Sendable () -> [Int32]
    var result = CRIWorkload.Result()
    var cpu = CPUMeter()
    var idle: [String: ProcMemory] = [:]
    var loaded: [String: ProcMemory] = [:]
    var monitorMemory: [ProcMemory] = []
  }

  static func measure(
    instance: BenchInstance, registry: LocalRegistry, binDir: String, pods: Int, rounds: Int, pullRounds: Int,
    concurrency: [Int]
  ) async throws -> [String: Any] {
    try ContainerdPeer.ensureInstalled()
    _ = try await registry.pushStandardImages()
    let pause = registry.reference("crisp/pause:bench")
    _ = try await registry.pushPauseImage(binary: binDir + "/crisp-pause", name: "crisp/pause:bench")
    let image = registry.reference("crisp/busybox:latest")

    let crispBridge = "cbench-crisp"
    let peerBridge = "cbench-ctrd"
    try NetworkBench.conflist(bridge: crispBridge, subnet: "10.250.1.0/24", ipamDir: instance.dir + "/ipam-cri").list
      .write(toFile: instance.dir + "/cni/10-bench.conflist", atomically: true, encoding: .utf8)
    let peerCNI = instance.dir + "/cni-containerd"
    try FileManager.default.createDirectory(atPath: peerCNI, withIntermediateDirectories: true)
    try NetworkBench.conflist(bridge: peerBridge, subnet: "10.250.2.0/24", ipamDir: instance.dir + "/ipam-ctrd").list
      .write(toFile: peerCNI + "/10-bench.conflist", atomically: true, encoding: .utf8)

    let peer = try ContainerdPeer(
      dir: instance.dir + "/containerd", registry: registry.address, sandboxImage: pause, cniConfDir: peerCNI)
    defer {
      peer.stop()
      for bridge in [crispBridge, peerBridge] { _ = try? NetworkBench.run("/usr/sbin/ip", ["link", "del", bridge]) }
      for hierarchy in (try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? [] {
        rmdir("/sys/fs/cgroup/\(hierarchy)/crisp-bench")
      }
    }
    try peer.start()

    let runID = String(UInt32.random(in: 0...UInt32.max), radix: 36)
    var sides = [
      Side(
        workload: CRIWorkload(
          name: "crisp", socket: instance.paths.criSocket, image: image, logDir: instance.dir + "/logs-crisp",
          runID: runID),
        daemons: { instance.pids },
        monitors: { RuntimeLeftovers.shims(runRoot: instance.paths.runRoot) }),
      Side(
        workload: CRIWorkload(
          name: "containerd", socket: peer.socket, image: image, logDir: instance.dir + "/logs-containerd",
          runID: runID),
        daemons: { peer.pid.map { [("containerd", $0)] } ?? [] },
        monitors: { peer.shimPids }),
    ]
    for index in sides.indices {
      try await sides[index].workload.waitReady()
      try await sides[index].workload.pullRounds(pullRounds, into: &sides[index].result)
      for (name, pid) in sides[index].daemons() { sides[index].idle[name] = ProcMemory(pid: pid) }
    }

    for round in 0..<rounds {
      for index in sides.indices {
        let side = sides[index]
        print(
          "round \(round + 1)/\(rounds): \(side.workload.name), \(pods) pods one by one, then \(concurrency) at once")
        let meter = CPUMeter.start(pids: { side.daemons().map(\.1) + side.monitors() })
        var result = side.result
        var loaded = side.loaded
        var monitorMemory = side.monitorMemory
        do {
          try await side.workload.sequential(pods: pods, into: &result) {
            guard round == 0 else { return }
            for (name, pid) in side.daemons() { loaded[name] = ProcMemory(pid: pid) }
            monitorMemory = side.monitors().map(ProcMemory.init(pid:))
          }
          for count in concurrency { try await side.workload.concurrent(count: count, into: &result) }
        } catch {
          await side.workload.removeAllPods()
          await meter.stop()
          throw error
        }
        sides[index].cpu.add(await meter.stop())
        sides[index].result = result
        sides[index].loaded = loaded
        sides[index].monitorMemory = monitorMemory
      }
    }
    return report(sides: sides, pods: pods, rounds: rounds, concurrency: concurrency)
  }

  static func report(sides: [Side], pods: Int, rounds: Int, concurrency: [Int]) -> [String: Any] {
    let (a, b) = (sides[0], sides[1])
    var json: [String: Any] = ["pods": pods, "rounds": rounds]
    print("\nCRI latency (ms): crisp vs containerd 1.6, \(pods) pods x \(rounds) rounds, one container each")
    let widths = [18, 5, 8, 8, 8, 8, 9, 9, 9, 9, 7]
    print(
      row(
        ["operation", "n", "p50", "p90", "p99", "max", "ctrd p50", "ctrd p90", "ctrd p99", "ctrd max", "ratio"],
        widths: widths))
    let operations = [
      "RunPodSandbox", "CreateContainer", "StartContainer", "ContainerStatus", "ExecSync", "ListContainers",
      "StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox", "PullImage", "RemoveImage",
    ]
    var latency: [String: Any] = [:]
    for operation in operations + ["pod ready"] {
      let mine = operation == "pod ready" ? a.result.podReady : a.result.operations[operation] ?? []
      let theirs = operation == "pod ready" ? b.result.podReady : b.result.operations[operation] ?? []
      guard !mine.isEmpty, !theirs.isEmpty else { continue }
      let (x, y) = (Summary(mine), Summary(theirs))
      print(
        row(
          [
            operation, "\(mine.count)", f(x.p50), f(x.p90), f(x.p99), f(x.max), f(y.p50), f(y.p90), f(y.p99), f(y.max),
            String(format: "%.2f", x.p50 / y.p50),
          ], widths: widths))
      latency[operation] = ["crisp_ms": mine, "containerd_ms": theirs, "ratio_p50": x.p50 / y.p50]
    }
    json["latency"] = latency
    json["operations"] = (operations + ["pod ready"]).filter { latency[$0] != nil }

    print("\nPods at once (wall s, mean of \(rounds) rounds): bring up (run+create+start), tear down (stop+remove)")
    print(
      row(
        ["N", "crisp up", "ctrd up", "ratio", "crisp down", "ctrd down", "ratio"], widths: [5, 10, 10, 7, 11, 11, 7]))
    var walls: [String: Any] = [:]
    for count in concurrency {
      let up = (a.result.bringUp[count] ?? 0) / Double(rounds)
      let peerUp = (b.result.bringUp[count] ?? 0) / Double(rounds)
      let down = (a.result.tearDown[count] ?? 0) / Double(rounds)
      let peerDown = (b.result.tearDown[count] ?? 0) / Double(rounds)
      print(
        row(
          [
            "\(count)", String(format: "%.2f", up), String(format: "%.2f", peerUp), String(format: "%.2f", up / peerUp),
            String(format: "%.2f", down), String(format: "%.2f", peerDown), String(format: "%.2f", down / peerDown),
          ], widths: [5, 10, 10, 7, 11, 11, 7]))
      walls["\(count)"] = [
        "crisp_up_s": up, "containerd_up_s": peerUp, "crisp_down_s": down, "containerd_down_s": peerDown,
      ]
    }
    json["concurrent"] = walls

    func total(_ memory: [String: ProcMemory]) -> ProcMemory {
      memory.values.reduce(into: ProcMemory()) {
        $0.rss += $1.rss
        $0.pss += $1.pss
        $0.anon += $1.anon
      }
    }
    func mean(_ list: [ProcMemory]) -> ProcMemory {
      guard !list.isEmpty else { return ProcMemory() }
      var m = list.reduce(into: ProcMemory()) {
        $0.rss += $1.rss
        $0.pss += $1.pss
        $0.anon += $1.anon
      }
      m.rss /= list.count
      m.pss /= list.count
      m.anon /= list.count
      return m
    }
    print("\nMemory (kB; VmRSS / Pss): the runtime's own processes")
    print(
      row(["figure", "crisp RSS", "crisp PSS", "ctrd RSS", "ctrd PSS", "ratio PSS"], widths: [40, 10, 10, 10, 10, 9]))
    var memory: [String: Any] = [:]
    for (label, x, y) in [
      ("daemons idle", total(a.idle), total(b.idle)),
      ("daemons with \(pods) pods running", total(a.loaded), total(b.loaded)),
      ("per monitor (shimd / shim-runc-v2), mean", mean(a.monitorMemory), mean(b.monitorMemory)),
    ] {
      print(
        row(
          [
            "\(label)", "\(x.rss)", "\(x.pss)", "\(y.rss)", "\(y.pss)",
            String(format: "%.2f", Double(x.pss) / Double(max(y.pss, 1))),
          ],
          widths: [40, 10, 10, 10, 10, 9]))
      memory[label] = [
        "crisp_rss_kb": x.rss, "crisp_pss_kb": x.pss, "containerd_rss_kb": y.rss, "containerd_pss_kb": y.pss,
      ]
    }
    let monitorsA = a.monitorMemory.count
    let monitorsB = b.monitorMemory.count
    print("monitors sampled with \(pods) pods up: crisp \(monitorsA) shimd, containerd \(monitorsB) shims")
    json["memory"] = memory

    let cpuA = a.cpu.seconds
    let cpuB = b.cpu.seconds
    print(
      "\nCPU seconds of the runtime's own processes over all rounds: crisp \(String(format: "%.2f", cpuA)), "
        + "containerd \(String(format: "%.2f", cpuB)), ratio \(String(format: "%.2f", cpuA / max(cpuB, 0.001)))")
    json["cpu_seconds"] = ["crisp": cpuA, "containerd": cpuB]
    return json
  }
}

/// CPU time (user + system, the process's own, not its children's) of a changing set
/// of processes, polled: a process that exits between two polls loses its last
/// interval, on both sides alike.
struct CPUMeter {
  private(set) var ticks: Int = 0
  var seconds: Double { Double(ticks) / Double(sysconf(Int32(_SC_CLK_TCK))) }

  mutating func add(_ other: CPUMeter) { ticks += other.ticks }

  final class Running: @unchecked Sendable {
    let lock = NSLock()
    var first: [Int32: Int] = [:]
    var last: [Int32: Int] = [:]
    var task: Task<Void, Never>?

    func stop() async -> CPUMeter {
      task?.cancel()
      await task?.value
      return lock.withLock {
        var meter = CPUMeter()
        for (pid, value) in last { meter.ticks += value - (first[pid] ?? 0) }
        return meter
      }
    }
  }

  /// Polls every 100 ms until stopped. Processes already alive at the start count
  /// from then; new ones from 0.
  static func start(pids: @escaping @Sendable () -> [Int32]) -> Running {
    let running = Running()
    for pid in pids() { if let t = cpuTicks(pid) { running.first[pid] = t } }
    running.task = Task.detached {
      while !Task.isCancelled {
        for pid in pids() {
          if let t = cpuTicks(pid) { running.lock.withLock { running.last[pid] = t } }
        }
        try? await Task.sleep(for: .milliseconds(100))
      }
    }
    return running
  }

  static func cpuTicks(_ pid: Int32) -> Int? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
      let close = stat.lastIndex(of: ")")
    else { return nil }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 12, let user = Int(fields[11]), let system = Int(fields[12]) else { return nil }
    return user + system
  }
}
