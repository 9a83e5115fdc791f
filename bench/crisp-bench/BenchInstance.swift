import CNNG
import CrispCore
import CrispTestSupport
import Foundation

/// The daemons under a temporary root, started from the built binaries, stopped at the end.
final class BenchInstance: @unchecked Sendable {
  let dir: String
  let binDir: String
  let paths: CrispPaths
  private(set) var pids: [(String, Int32)] = []
  private(set) var shimPids: [Int32] = []
  private var processes: [Process] = []
  private var nngcat: Process?

  init(binDir: String, insecureRegistry: String? = nil) throws {
    self.binDir = binDir
    dir = NSTemporaryDirectory() + "crisp-bench-\(getpid())"
    try FileManager.default.createDirectory(atPath: dir + "/cni", withIntermediateDirectories: true)
    paths = CrispPaths(root: dir + "/root", runRoot: dir + "/run")
    try """
    root = "\(paths.root)"
    run_root = "\(paths.runRoot)"
    log_level = "warning"
    [frontd]
    seccomp_profile = "\(FileManager.default.currentDirectoryPath)/deploy/seccomp/default.json"
    default_log_dir = "\(dir)/logs"
    [imaged]
    registries_conf = "\(dir)/registries.conf"
    auth_file = "\(dir)/auth.json"
    certs_dir = "\(dir)/certs.d"
    [netd]
    cni_config_dir = "\(dir)/cni"
    """.write(toFile: dir + "/crisp.toml", atomically: true, encoding: .utf8)
    let registries = insecureRegistry.map { "[[registry]]\nlocation = \"\($0)\"\ninsecure = true\n" } ?? ""
    try registries.write(toFile: dir + "/registries.conf", atomically: true, encoding: .utf8)
  }

  @discardableResult
  func launch(_ path: String, _ arguments: [String]) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    processes.append(process)
    return process
  }

  func startDaemons(shims: Int) throws {
    for name in ["imaged", "netd", "cri-frontd"] {
      let p = try launch(binDir + "/" + name, ["--config", dir + "/crisp.toml"])
      pids.append((name, p.processIdentifier))
    }
    for i in 0..<shims {
      let id = String(repeating: String(format: "%02x", i), count: 32)
      let p = try launch(binDir + "/shimd", ["--id", id, "--run-root", paths.runRoot, "--log-level", "warning"])
      shimPids.append(p.processIdentifier)
    }
    try waitForFile(paths.criSocket)
    try waitForFile(paths.imagedSocket)
    for i in 0..<shims {
      try waitForFile(paths.shimSocket(containerID: String(repeating: String(format: "%02x", i), count: 32)))
    }
  }

  func waitForFile(_ path: String) throws {
    let deadline = Date().addingTimeInterval(20)
    while !FileManager.default.fileExists(atPath: path) {
      if Date() > deadline { throw CrispError(.deadlineExceeded, "\(path) did not appear") }
      usleep(20_000)
    }
  }

  /// Round trips of raw NNG: synchronous C calls from here to `nngcat --rep0`.
  func nngFloor(samples: Int) throws -> [Double] {
    let address = "ipc://\(dir)/floor.ipc"
    let payload = String(repeating: "x", count: 200)
    nngcat = try launch("/usr/bin/nngcat", ["--rep0", "--listen", address, "--data", payload])
    try waitForFile(dir + "/floor.ipc")
    var socket = nng_socket()
    guard nng_req0_open(&socket) == 0 else { throw CrispError(.internal, "nng_req0_open") }
    defer { nng_close(socket) }
    guard nng_dial(socket, address, nil, 0) == 0 else { throw CrispError(.unavailable, "dial \(address)") }
    var times: [Double] = []
    let bytes = Array(payload.utf8)
    for i in 0..<(samples + 100) {
      let start = ContinuousClock.now
      var rv = bytes.withUnsafeBytes {
        nng_send(socket, UnsafeMutableRawPointer(mutating: $0.baseAddress), $0.count, 0)
      }
      guard rv == 0 else { throw CrispError(.internal, "nng_send: \(rv)") }
      var buffer: UnsafeMutableRawPointer?
      var size = 0
      rv = nng_recv(socket, &buffer, &size, Int32(NNG_FLAG_ALLOC))
      guard rv == 0 else { throw CrispError(.internal, "nng_recv: \(rv)") }
      nng_free(buffer, size)
      if i >= 100 { times.append((ContinuousClock.now - start).microseconds) }
    }
    return times
  }

  func stop() {
    for process in processes where process.isRunning {
      // nngcat does not stop on SIGTERM; the daemons shut down cleanly on it.
      kill(process.processIdentifier, process === nngcat ? SIGKILL : SIGTERM)
      process.waitUntilExit()
    }
    // A frontd that died could not remove its pods: their containers and shims go here.
    RuntimeLeftovers.killAll(runRoot: paths.runRoot)
    unmountAll(under: dir)
    try? FileManager.default.removeItem(atPath: dir)
  }
}

extension BenchInstance {
  /// crisp's side of a figure: pods on a CNI bridge and subnet of the figure's own, and a
  /// workload that answers. `releaseFigure(bridge:)` removes the bridge and the pods' parent cgroup.
  func workload(figure: String, bridge: String, subnet: String, image: String, runID: String) async throws
    -> CRIWorkload
  {
    try NetworkBench.conflist(bridge: bridge, subnet: subnet, ipamDir: dir + "/ipam-\(figure)").list
      .write(toFile: dir + "/cni/10-bench.conflist", atomically: true, encoding: .utf8)
    let workload = CRIWorkload(
      name: "crisp", socket: paths.criSocket, image: image, logDir: dir + "/logs-\(figure)", runID: runID)
    try await workload.waitReady()
    return workload
  }

  func releaseFigure(bridge: String) {
    _ = try? NetworkBench.run("/usr/sbin/ip", ["link", "del", bridge])
    for hierarchy in (try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? [] {
      rmdir("/sys/fs/cgroup/\(hierarchy)/crisp-bench")
    }
  }
}
