import CRIAPI
import CrispCgroups
import CrispCore
import CrispTestSupport
import Foundation
import GRPCCore

#if canImport(Glibc)
  import Glibc
#endif

/// ListContainerStats with N running containers (one per pod, as kubelet polls it every
/// few seconds), against two floors read by this process itself from the same cgroups:
/// the raw files (open, read, close; nothing parsed) and CrispCgroups' reader (the same
/// files, parsed, as frontd reads them); and containerd's ListContainerStats on the same
/// workload when the peer can run.
enum StatsBench {
  struct Figures {
    var crisp: [Double] = []
    var rawFloor: [Double] = []
    var parsedFloor: [Double] = []
    var containerd: [Double] = []
    var containerdError: String?
  }

  static func run(
    instance: BenchInstance, registry: LocalRegistry, binDir: String, containers: Int, calls: Int, peer: Bool
  ) async throws -> [String: Any] {
    _ = try await registry.pushStandardImages()
    let image = registry.reference("crisp/busybox:latest")
    let runID = String(UInt32.random(in: 0...UInt32.max), radix: 36)
    let crispBridge = "cbench-stats"
    defer { instance.releaseFigure(bridge: crispBridge) }
    var figures = Figures()
    let crisp = try await instance.workload(
      figure: "stats", bridge: crispBridge, subnet: "10.250.3.0/24", image: image, runID: runID)
    print("\nstats: \(containers) pods with a running container each on crisp")
    let files = try await crisp.removingPods { () async throws -> [String] in
      let pids = try await bringUp(crisp, count: containers)
      figures.crisp = try await listStats(crisp, calls: calls, expect: containers)

      // The floors: the same cgroups, found from each container's init process.
      guard let mounts = CgroupMounts.current() else { throw CrispError(.failedPrecondition, "no cgroup mounts") }
      let cgroups = try pids.map { pid -> ContainerCgroup in
        guard let process = ProcessCgroups.read(pid: pid) else {
          throw CrispError(.notFound, "no /proc/\(pid)/cgroup")
        }
        let cgroup = ContainerCgroup.locate(cgroupsPath: "", mounts: mounts, own: nil, process: process)
        guard cgroup.cpu != nil, cgroup.memory != nil else {
          throw CrispError(.notFound, "no CPU or memory cgroup for pid \(pid)")
        }
        return cgroup
      }
      let files = cgroups.flatMap(statFiles)
      for _ in 0..<calls {
        let start = ContinuousClock.now
        var bytes = 0
        for file in files { bytes += readRaw(file) }
        figures.rawFloor.append((ContinuousClock.now - start).microseconds / 1000)
        precondition(bytes > 0)
      }
      for _ in 0..<calls {
        let start = ContinuousClock.now
        let samples = cgroups.map { $0.sample() }
        figures.parsedFloor.append((ContinuousClock.now - start).microseconds / 1000)
        precondition(samples.allSatisfy { $0.memory != nil })
      }
      return files
    }

    if peer {
      do {
        figures.containerd = try await containerdStats(
          instance: instance, registry: registry, binDir: binDir, image: image, runID: runID, containers: containers,
          calls: calls)
      } catch {
        figures.containerdError = "\(error)"
      }
    }
    return report(figures, containers: containers, files: files.count)
  }

  /// `count` pods, each with one running container; their init pids. A connection per
  /// pod, as CRIWorkload.sequential has it (containerd was seen to close a long-lived one).
  static func bringUp(_ workload: CRIWorkload, count: Int) async throws -> [Int32] {
    try await workload.withClients { _, images in
      var pull = Runtime_V1_PullImageRequest()
      pull.image.image = workload.image
      _ = try await images.pullImage(pull)
    }
    var pids: [Int32] = []
    for index in 0..<count {
      pids.append(
        try await workload.withClients { runtime, _ in
          let config = workload.podConfig(index, group: "stats")
          var run = Runtime_V1_RunPodSandboxRequest()
          run.config = config
          let pod = try await runtime.runPodSandbox(run).podSandboxID
          let container = try await runtime.createContainer(workload.containerRequest(pod: pod, config: config))
            .containerID
          var start = Runtime_V1_StartContainerRequest()
          start.containerID = container
          _ = try await runtime.startContainer(start)
          var status = Runtime_V1_ContainerStatusRequest()
          status.containerID = container
          status.verbose = true
          let info = try await runtime.containerStatus(status).info["info"] ?? ""
          let object = try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any]
          guard let pid = object?["pid"] as? Int, pid > 0 else {
            throw CrispError(.internal, "\(workload.name): no pid for container \(container)")
          }
          return Int32(pid)
        })
    }
    return pids
  }

  /// `calls` sequential unfiltered ListContainerStats, 5 more first not timed. One
  /// connection while it lasts: a connection the runtime closes is replaced (twice at
  /// most), and the call it cut off is not counted.
  static func listStats(_ workload: CRIWorkload, calls: Int, expect: Int) async throws -> [Double] {
    var times: [Double] = []
    var warm = 0
    var reconnects = 0
    while times.count < calls {
      do {
        try await workload.withClients { runtime, _ in
          while times.count < calls {
            let start = ContinuousClock.now
            let stats = try await runtime.listContainerStats(.init()).stats
            let elapsed = CRIWorkload.milliseconds(since: start)
            guard stats.count == expect else {
              throw CrispError(
                .internal, "\(workload.name): ListContainerStats answered \(stats.count), not \(expect)")
            }
            if warm < 5 { warm += 1 } else { times.append(elapsed) }
          }
        }
      } catch let error as RPCError where error.code == .unavailable && reconnects < 2 {
        reconnects += 1
        print("\(workload.name): connection closed (\(error.message)); reconnecting")
      }
    }
    return times
  }

  /// The files frontd's reader opens for one container's CPU, memory and task figures.
  static func statFiles(_ cgroup: ContainerCgroup) -> [String] {
    var files: [String] = []
    switch cgroup.version {
    case .v1:
      if let cpu = cgroup.cpu { files.append(cpu + "/cpuacct.usage") }
      if let memory = cgroup.memory {
        files += [
          "memory.usage_in_bytes", "memory.stat", "memory.limit_in_bytes", "memory.memsw.usage_in_bytes",
          "memory.memsw.limit_in_bytes",
        ].map { memory + "/" + $0 }
      }
    case .v2:
      if let cpu = cgroup.cpu { files.append(cpu + "/cpu.stat") }
      if let memory = cgroup.memory {
        files += ["memory.current", "memory.stat", "memory.max", "memory.swap.current", "memory.swap.max"].map {
          memory + "/" + $0
        }
      }
    }
    if let pids = cgroup.pids { files.append(pids + "/pids.current") }
    return files
  }

  /// open, read to the end, close: bytes read (0 for a file that is not there).
  static func readRaw(_ path: String) -> Int {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return 0 }
    defer { close(fd) }
    var total = 0
    var buffer = [UInt8](repeating: 0, count: 8192)
    while true {
      let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      guard n > 0 else { break }
      total += n
    }
    return total
  }

  /// The same pods and containers on containerd 1.6, its ListContainerStats timed alike.
  static func containerdStats(
    instance: BenchInstance, registry: LocalRegistry, binDir: String, image: String, runID: String, containers: Int,
    calls: Int
  ) async throws -> [Double] {
    let (peer, workload) = try await ContainerdPeer.startForBench(
      instance: instance, registry: registry, binDir: binDir, figure: "stats", bridge: "cbench-stats-c",
      subnet: "10.250.4.0/24", image: image, runID: runID)
    defer { peer.release() }
    print("stats: the same \(containers) pods on containerd")
    return try await workload.removingPods {
      _ = try await bringUp(workload, count: containers)
      return try await listStats(workload, calls: calls, expect: containers)
    }
  }

  static func report(_ figures: Figures, containers: Int, files: Int) -> [String: Any] {
    print("\nListContainerStats (ms), \(containers) running containers, \(figures.crisp.count) sequential calls")
    let widths = [58, 6, 8, 8, 8, 8]
    print(row(["figure", "n", "p50", "p90", "p99", "max"], widths: widths))
    var json: [String: Any] = ["containers": containers, "calls": figures.crisp.count, "floor_files": files]
    var rows: [(String, String, [Double])] = [
      ("crisp ListContainerStats (gRPC, frontd reads the cgroups)", "crisp_ms", figures.crisp),
      ("floor 1: \(files) cgroup files read raw by the bench", "raw_floor_ms", figures.rawFloor),
      ("floor 2: the same read and parsed (CrispCgroups)", "parsed_floor_ms", figures.parsedFloor),
    ]
    if !figures.containerd.isEmpty {
      rows.append(("containerd 1.6 ListContainerStats", "containerd_ms", figures.containerd))
    }
    for (label, key, values) in rows {
      let s = Summary(values)
      print(
        row(
          [
            label, "\(values.count)", String(format: "%.3f", s.p50), String(format: "%.3f", s.p90),
            String(format: "%.3f", s.p99), String(format: "%.3f", s.max),
          ], widths: widths))
      json[key] = ["p50": s.p50, "p90": s.p90, "p99": s.p99, "max": s.max]
    }
    let crisp = Summary(figures.crisp)
    print(
      "crisp p50 / raw floor p50 = \(String(format: "%.1f", crisp.p50 / Summary(figures.rawFloor).p50)); "
        + "crisp p50 / parsed floor p50 = \(String(format: "%.1f", crisp.p50 / Summary(figures.parsedFloor).p50))")
    if !figures.containerd.isEmpty {
      print("crisp p50 / containerd p50 = \(String(format: "%.2f", crisp.p50 / Summary(figures.containerd).p50))")
    } else if let error = figures.containerdError {
      print("containerd: no figure (\(error))")
      json["containerd_error"] = error
    }
    return json
  }
}
