import CrispCore
import CrispTestSupport
import Foundation

/// containerd 1.6 (Debian 12's) with its built-in CRI plugin, under a temporary root
/// of its own: its own socket, the runc v2 shim, the cgroupfs driver, the same runc and
/// CNI plugins crisp uses (on a bridge of its own), pulls from the bench's local
/// registry over plain HTTP, and a sandbox image the bench pushed there itself.
final class ContainerdPeer: @unchecked Sendable {
  static let binary = "/usr/bin/containerd"
  static let shimBinary = "containerd-shim-runc-v2"

  let dir: String
  var socket: String { dir + "/containerd.sock" }
  private var process: Process?
  /// The CNI bridge `release()` removes.
  var bridge: String?

  init(dir: String, registry: String, sandboxImage: String, cniConfDir: String) throws {
    self.dir = dir
    let fm = FileManager.default
    try fm.createDirectory(atPath: dir + "/certs.d/" + registry, withIntermediateDirectories: true)
    try """
    server = "http://\(registry)"
    [host."http://\(registry)"]
      capabilities = ["pull", "resolve"]
    """.write(toFile: dir + "/certs.d/\(registry)/hosts.toml", atomically: true, encoding: .utf8)
    // restrict_oom_score_adj: root on these machines lacks CAP_SYS_RESOURCE, so runc
    // cannot lower a container's oom_score_adj below containerd's own.
    try """
    version = 2
    root = "\(dir)/root"
    state = "\(dir)/state"
    disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
      "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]
    [grpc]
      address = "\(socket)"
    [ttrpc]
      address = "\(dir)/containerd.sock.ttrpc"
    [debug]
      address = ""
      level = "warn"
    [metrics]
      address = ""
    [plugins."io.containerd.grpc.v1.cri"]
      sandbox_image = "\(sandboxImage)"
      restrict_oom_score_adj = true
      stream_server_address = "127.0.0.1"
      stream_server_port = "0"
      enable_selinux = false
      [plugins."io.containerd.grpc.v1.cri".containerd]
        default_runtime_name = "runc"
        snapshotter = "overlayfs"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          runtime_type = "io.containerd.runc.v2"
          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            BinaryName = "/usr/sbin/runc"
            SystemdCgroup = false
      [plugins."io.containerd.grpc.v1.cri".cni]
        bin_dir = "/usr/lib/cni"
        conf_dir = "\(cniConfDir)"
        max_conf_num = 1
      [plugins."io.containerd.grpc.v1.cri".registry]
        config_path = "\(dir)/certs.d"
    """.write(toFile: dir + "/config.toml", atomically: true, encoding: .utf8)
  }

  /// Installs containerd from Debian when it is missing (`make bench` runs as root).
  static func ensureInstalled() throws {
    guard !FileManager.default.isExecutableFile(atPath: binary) else { return }
    print("containerd is missing: apt-get install containerd")
    let apt = Process()
    apt.executableURL = URL(fileURLWithPath: "/usr/bin/apt-get")
    apt.arguments = ["install", "-y", "--no-install-recommends", "containerd"]
    apt.environment = ["DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
    try apt.run()
    apt.waitUntilExit()
    guard apt.terminationStatus == 0, FileManager.default.isExecutableFile(atPath: binary) else {
      throw CrispError(.failedPrecondition, "apt-get install containerd failed (\(apt.terminationStatus))")
    }
  }

  func start() throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: Self.binary)
    process.arguments = ["--config", dir + "/config.toml"]
    process.environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
    FileManager.default.createFile(atPath: dir + "/containerd.log", contents: nil)
    let log = FileHandle(forWritingAtPath: dir + "/containerd.log")
    process.standardOutput = log
    process.standardError = log
    try process.run()
    self.process = process
  }

  var pid: Int32? { process.map(\.processIdentifier) }

  /// containerd's shims for this instance (one per pod), found by their `-address`.
  var shimPids: [Int32] {
    processIDs { $0.contains(Self.shimBinary) && $0.contains(socket) }
  }

  /// Stops containerd and its shims and removes what they left: mounts, the directory.
  func stop() {
    if let process, process.isRunning {
      kill(process.processIdentifier, SIGTERM)
      let deadline = Date().addingTimeInterval(10)
      while process.isRunning && Date() < deadline { usleep(50_000) }
      if process.isRunning { kill(process.processIdentifier, SIGKILL) }
      process.waitUntilExit()
    }
    for pid in shimPids { kill(pid, SIGKILL) }
    // Its log outlives the run, for when a figure is missing.
    try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "crisp-bench-containerd.log")
    try? FileManager.default.copyItem(
      atPath: dir + "/containerd.log", toPath: NSTemporaryDirectory() + "crisp-bench-containerd.log")
    unmountAll(under: dir)
    try? FileManager.default.removeItem(atPath: dir)
  }
}

/// Detaches every mount under `dir`, deepest first.
func unmountAll(under dir: String) {
  let table = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
  let points = table.split(separator: "\n").compactMap { line -> String? in
    let fields = line.split(separator: " ")
    guard fields.count > 4, fields[4].hasPrefix(dir) else { return nil }
    return String(fields[4])
  }
  for point in points.sorted(by: { $0.count > $1.count }) { umount2(point, Int32(MNT_DETACH)) }
}

extension ContainerdPeer {
  /// containerd beside a bench instance, for one figure: installed if missing, its sandbox
  /// image (crisp-pause) pushed to `registry`, a CNI bridge and subnet of its own, and
  /// started, with a workload that answers. `release()` stops it and removes the bridge.
  static func startForBench(
    instance: BenchInstance, registry: LocalRegistry, binDir: String, figure: String, bridge: String, subnet: String,
    image: String, runID: String
  ) async throws -> (ContainerdPeer, CRIWorkload) {
    try ensureInstalled()
    let pause = registry.reference("crisp/pause:bench")
    _ = try await registry.pushPauseImage(binary: binDir + "/crisp-pause", name: "crisp/pause:bench")
    let cni = instance.dir + "/cni-containerd-\(figure)"
    try FileManager.default.createDirectory(atPath: cni, withIntermediateDirectories: true)
    try NetworkBench.conflist(bridge: bridge, subnet: subnet, ipamDir: instance.dir + "/ipam-\(figure)-c").list
      .write(toFile: cni + "/10-bench.conflist", atomically: true, encoding: .utf8)
    let peer = try ContainerdPeer(
      dir: instance.dir + "/containerd-\(figure)", registry: registry.address, sandboxImage: pause, cniConfDir: cni)
    peer.bridge = bridge
    do {
      try peer.start()
      let workload = CRIWorkload(
        name: "containerd", socket: peer.socket, image: image, logDir: instance.dir + "/logs-\(figure)-c", runID: runID)
      try await workload.waitReady()
      return (peer, workload)
    } catch {
      peer.release()
      throw error
    }
  }

  func release() {
    stop()
    if let bridge { _ = try? NetworkBench.run("/usr/sbin/ip", ["link", "del", bridge]) }
  }
}
