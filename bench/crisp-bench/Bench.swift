import ArgumentParser
import CNNG
import CRIAPI
import CrispCore
import CrispIPC
import CrispTestSupport
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix

/// `make bench`: IPC and CRI latencies and the memory of each daemon, measured on
/// real processes under a temporary root, each figure beside its floor or peer.
@main
struct Bench: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "crisp-bench", abstract: "Measure crisp's IPC and CRI latency and its daemons' memory.")

  @Option(help: "Directory holding the built daemons.")
  var binDir: String = ".build/release"

  @Option(help: "Round trips per latency figure.")
  var samples: Int = 5000

  @Option(help: "shimd processes to start for the per-shim memory figure.")
  var shims: Int = 10

  @Option(help: "Pods for the network setup/teardown figure.")
  var pods: Int = 50

  @Option(help: "Rounds of the image pull figure (0 skips it).")
  var pullRounds: Int = 3

  @Option(help: "Pods per round of the crisp-vs-containerd workload (cri figure).")
  var criPods: Int = 50

  @Option(help: "Rounds of the cri figure (crisp and containerd interleaved).")
  var criRounds: Int = 2

  @Option(help: "Pods brought up at once in the cri figure (comma-separated).")
  var concurrency: String = "1,10,50"

  @Option(help: "Running containers (one per pod) for the stats figure.")
  var statsContainers: Int = 50

  @Option(help: "Timed ListContainerStats calls of the stats figure.")
  var statsCalls: Int = 200

  @Flag(inversion: .prefixedNo, help: "Also time containerd's ListContainerStats in the stats figure.")
  var statsPeer: Bool = true

  @Option(help: "Timed runs of exec true in the exec figure.")
  var execRuns: Int = 200

  @Option(help: "Runs of exec cat of a 100 MB file in the exec figure.")
  var execCatRuns: Int = 3

  @Option(help: "Where to write the JSON results.")
  var resultsDir: String = "bench/results"

  @Option(help: "Run only these figures (comma-separated: ipc, network, memory, pull, cri, stats, exec).")
  var only: String = ""

  func selected(_ name: String) -> Bool { only.isEmpty || only.split(separator: ",").contains { $0 == name } }

  func run() async throws {
    // The pull figure needs a registry before imaged starts (its registries.conf names it).
    let registry =
      (selected("pull") && pullRounds > 0) || selected("cri") || selected("stats") || selected("exec")
      ? try await LocalRegistry.start() : nil
    defer { registry?.stop() }
    let instance = try BenchInstance(binDir: binDir, insecureRegistry: registry?.address)
    defer { instance.stop() }
    try instance.startDaemons(shims: selected("memory") ? shims : 0)

    var results: [String: Any] = ["samples": samples, "date": ISO8601DateFormatter().string(from: Date())]

    if let registry, selected("pull") && pullRounds > 0 {
      let pull = try await PullBench.run(instance: instance, registry: registry, rounds: pullRounds)
      let mb = Double(pull.compressedBytes) / 1e6
      print(
        "\nImage pull (s), \(pull.layers) layers, \(String(format: "%.1f", mb)) MB compressed, \(pullRounds) rounds")
      print(row(["figure", "median", "min", "max"], widths: [52, 9, 9, 9]))
      for (label, values) in [
        ("crisp PullImage (download+verify+unpack, pipelined)", pull.crisp),
        ("floor 1: skopeo copy to dir: (download+verify)", pull.skopeo),
        ("floor 2: umoci raw unpack (unpack only)", pull.umoci),
      ] {
        let sorted = values.sorted()
        print(
          row(
            [
              label, String(format: "%.2f", sorted[sorted.count / 2]), String(format: "%.2f", sorted.first!),
              String(format: "%.2f", sorted.last!),
            ], widths: [52, 9, 9, 9]))
      }
      let median = { (values: [Double]) in values.sorted()[values.count / 2] }
      let floors = median(pull.skopeo) + median(pull.umoci)
      print(
        "crisp / (skopeo + umoci) = \(String(format: "%.2f", median(pull.crisp) / floors)); "
          + "crisp saves \(String(format: "%.2f", floors - median(pull.crisp))) s against the floors in sequence")
      results["pull"] = [
        "compressed_bytes": pull.compressedBytes, "layers": pull.layers, "crisp_s": pull.crisp,
        "skopeo_s": pull.skopeo, "umoci_s": pull.umoci,
      ]
    }
    if let registry, selected("cri") {
      results["cri"] = try await PeerBench.measure(
        instance: instance, registry: registry, binDir: binDir, pods: criPods, rounds: criRounds, pullRounds: 3,
        concurrency: concurrency.split(separator: ",").compactMap { Int($0) })
    }
    if let registry, selected("stats") {
      results["stats"] = try await StatsBench.run(
        instance: instance, registry: registry, binDir: binDir, containers: statsContainers, calls: statsCalls,
        peer: statsPeer)
    }
    if let registry, selected("exec") {
      results["exec"] = try await ExecBench.run(
        instance: instance, registry: registry, binDir: binDir, runs: execRuns, catRuns: execCatRuns)
    }
    guard selected("ipc") || selected("network") || selected("memory") else {
      return try write(results)
    }

    // 1. IPC floor: NNG REQ/REP from C calls to nngcat's REP, no JSON, no async.
    let floor = try instance.nngFloor(samples: samples)
    // 2. crisp IPC: ping with a 200-byte payload to imaged, async + JSON both ways.
    let client = try IPCClient(peer: "imaged", address: CrispPaths.ipcAddress(instance.paths.imagedSocket))
    let payload = String(repeating: "x", count: 200)
    _ = try await client.call(Ping.self, Ping.Request(payload: payload))
    var ipc: [Double] = []
    for _ in 0..<samples {
      let start = ContinuousClock.now
      _ = try await client.call(Ping.self, Ping.Request(payload: payload))
      ipc.append((ContinuousClock.now - start).microseconds)
    }
    // 3. CRI Version over the unix socket with the generated Swift gRPC client.
    let cri = try await withGRPCClient(
      transport: .http2NIOPosix(
        target: .unixDomainSocket(path: instance.paths.criSocket), transportSecurity: .plaintext)
    ) { grpc in
      let runtime = Runtime_V1_RuntimeService.Client(wrapping: grpc)
      _ = try await runtime.version(.init())
      var times: [Double] = []
      for _ in 0..<samples {
        let start = ContinuousClock.now
        _ = try await runtime.version(.init())
        times.append((ContinuousClock.now - start).microseconds)
      }
      return times
    }

    print("\nLatency (µs), \(samples) sequential round trips each, 200-byte IPC payload")
    print(row(["figure", "n", "p50", "p90", "p99", "max"], widths: [44, 7, 9, 9, 9, 9]))
    for (name, values) in [
      ("NNG floor: C req → nngcat rep (ipc://)", floor),
      ("crisp IPC: ping → imaged (async, JSON)", ipc),
      ("CRI Version over crisp.sock (gRPC)", cri),
    ] {
      let s = Summary(values)
      print(row([name, "\(values.count)", f(s.p50), f(s.p90), f(s.p99), f(s.max)], widths: [44, 7, 9, 9, 9, 9]))
      results[name] = ["n": values.count, "p50": s.p50, "p90": s.p90, "p99": s.p99, "max": s.max]
    }
    print("crisp IPC p50 / NNG floor p50 = \(String(format: "%.2f", Summary(ipc).p50 / Summary(floor).p50))")

    // Pod networks: netd (namespaces pinned, bridge + host-local + loopback) against
    // the same plugins from a shell loop with `ip netns`.
    if pods > 0 && selected("network") {
      let crispNet = try await NetworkBench.crisp(instance: instance, pods: pods)
      let shellNet = try NetworkBench.shell(dir: instance.dir, pods: pods)
      print("\nPod network (µs), \(pods) pods, sequential: netd vs CNI plugins from a shell loop")
      print(
        row(["figure", "n", "p50", "p99", "shell p50", "shell p99", "ratio p50"], widths: [22, 5, 10, 10, 10, 10, 9]))
      var network: [String: Any] = [:]
      for (name, mine, floor) in [
        ("setup (ADD)", crispNet.setup, shellNet.setup), ("teardown (DEL)", crispNet.teardown, shellNet.teardown),
      ] {
        let a = Summary(mine)
        let b = Summary(floor)
        print(
          row(
            [name, "\(mine.count)", f(a.p50), f(a.p99), f(b.p50), f(b.p99), String(format: "%.2f", a.p50 / b.p50)],
            widths: [22, 5, 10, 10, 10, 10, 9]))
        network[name] = [
          "crisp_p50": a.p50, "crisp_p99": a.p99, "shell_p50": b.p50, "shell_p99": b.p99, "n": mine.count,
        ]
      }
      results["pod_network"] = network
    }

    // Memory, idle (after the runs above).
    print("\nMemory of idle daemons (kB, from /proc/PID/status and smaps_rollup)")
    print(row(["process", "VmRSS", "Pss", "RssAnon"], widths: [30, 10, 10, 10]))
    var memory: [String: Any] = [:]
    for (name, pid) in instance.pids {
      let m = ProcMemory(pid: pid)
      print(row([name, "\(m.rss)", "\(m.pss)", "\(m.anon)"], widths: [30, 10, 10, 10]))
      memory[name] = ["rss_kb": m.rss, "pss_kb": m.pss, "anon_kb": m.anon]
    }
    let shimPids = instance.shimPids
    if !shimPids.isEmpty {
      let ms = shimPids.map(ProcMemory.init(pid:))
      let pss = ms.map(\.pss).reduce(0, +) / ms.count
      let rss = ms.map(\.rss).reduce(0, +) / ms.count
      let anon = ms.map(\.anon).reduce(0, +) / ms.count
      print(row(["shimd (mean of \(ms.count))", "\(rss)", "\(pss)", "\(anon)"], widths: [30, 10, 10, 10]))
      memory["shimd_mean"] = ["count": ms.count, "rss_kb": rss, "pss_kb": pss, "anon_kb": anon]
    }
    results["memory"] = memory

    try write(results)
  }

  func write(_ results: [String: Any]) throws {
    try FileManager.default.createDirectory(atPath: resultsDir, withIntermediateDirectories: true)
    let file = resultsDir + "/bench-\(Int(Date().timeIntervalSince1970)).json"
    let data = try JSONSerialization.data(withJSONObject: results, options: [.prettyPrinted, .sortedKeys])
    try data.write(to: URL(fileURLWithPath: file))
    print("\nresults: \(file)")
    if results["cri"] != nil {
      // The latency distributions as a picture (matplotlib, installed by `make bench`).
      let chart = String(file.dropLast(".json".count)) + ".png"
      if (try? NetworkBench.run("/usr/bin/env", ["python3", "bench/plot.py", file, chart])) != nil {
        print("chart: \(chart)")
      } else {
        print("no chart: bench/plot.py failed (is matplotlib installed? make bench installs it)")
      }
    }
  }
}

struct Summary {
  let p50, p90, p99, max: Double
  init(_ values: [Double]) {
    let sorted = values.sorted()
    func q(_ p: Double) -> Double { sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] }
    p50 = q(0.50)
    p90 = q(0.90)
    p99 = q(0.99)
    max = sorted.last ?? 0
  }
}

func f(_ value: Double) -> String { String(format: "%.1f", value) }

func row(_ cells: [String], widths: [Int]) -> String {
  zip(cells, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: " ")
}

extension Duration {
  var microseconds: Double {
    Double(components.seconds) * 1e6 + Double(components.attoseconds) / 1e12
  }
}

/// VmRSS, Pss and RssAnon of a process, in kB.
struct ProcMemory {
  var rss = 0, pss = 0, anon = 0
  init() {}
  init(pid: Int32) {
    func field(_ text: String, _ name: String) -> Int {
      for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
        return Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" })[1]) ?? 0
      }
      return 0
    }
    let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    let rollup = (try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8)) ?? ""
    rss = field(status, "VmRSS")
    anon = field(status, "RssAnon")
    pss = field(rollup, "Pss")
  }
}
