import CrispCore
import CrispIPC
import CrispTestSupport
import Foundation
import Synchronization
import Testing

/// A real netd process with its own root, run_root, CNI config dir, bridge name,
/// subnet and IPAM store, all removed by `destroy()`.
final class NetdInstance: @unchecked Sendable {
  let dir: String
  let paths: CrispPaths
  let cniDir: String
  let ipamDir: String
  let pluginDir: String
  let network: TestBridge
  var bridge: String { network.name }
  var subnetPrefix: String { network.subnetPrefix }
  private var process: Process?
  private(set) var client: IPCClient!

  init() throws {
    dir = try makeTemporaryDirectory(prefix: "crisp-netd")
    paths = CrispPaths(root: dir + "/root", runRoot: dir + "/run")
    cniDir = dir + "/cni"
    ipamDir = dir + "/ipam"
    pluginDir = dir + "/plugins"
    for d in [cniDir, pluginDir] {
      try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    }
    network = TestBridge(ipamDir: ipamDir)
    try """
    root = "\(paths.root)"
    run_root = "\(paths.runRoot)"
    log_level = "debug"
    [netd]
    cni_config_dir = "\(cniDir)"
    cni_plugin_dirs = ["\(pluginDir)", "/usr/lib/cni"]
    cni_plugin_timeout_ms = 20000
    """.write(toFile: dir + "/crisp.toml", atomically: true, encoding: .utf8)
  }

  var subnet: String { network.subnet }

  /// bridge + host-local + (portmap) + loopback, in our own bridge, subnet and IPAM dir.
  func writeBridgeConfig(portmap: Bool = false, extraPlugins: [String] = []) throws {
    try network.conflist(portmap: portmap, extraPlugins: extraPlugins)
      .write(toFile: cniDir + "/10-crisp-test.conflist", atomically: true, encoding: .utf8)
  }

  /// Puts an executable CNI plugin (a shell script) first on the plugin path.
  func installPlugin(_ name: String, script: String) throws {
    let path = pluginDir + "/" + name
    try script.write(toFile: path, atomically: true, encoding: .utf8)
    chmod(path, 0o755)
  }

  func start() async throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: binaryPath("netd"))
    process.arguments = ["--config", dir + "/crisp.toml"]
    let log = dir + "/netd.log"
    if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
    let handle = FileHandle(forWritingAtPath: log)!
    handle.seekToEndOfFile()
    process.standardOutput = handle
    process.standardError = handle
    try process.run()
    self.process = process
    if client == nil {
      client = try IPCClient(peer: "netd", address: CrispPaths.ipcAddress(paths.netdSocket), defaultTimeoutMs: 30_000)
    }
    _ = try await client.call(Health.self)
  }

  func signal(_ signal: Int32) throws {
    guard let process else { throw CrispError(.failedPrecondition, "netd is not running") }
    Glibc.kill(process.processIdentifier, signal)
  }

  func kill(_ signal: Int32) async throws {
    guard let process else { return }
    Glibc.kill(process.processIdentifier, signal)
    try await waitUntil("netd exits", timeout: .seconds(10)) { !process.isRunning }
    self.process = nil
  }

  static func podID() -> String {
    (0..<4).map { _ in String(format: "%016llx", UInt64.random(in: 0...UInt64.max)) }.joined()
  }

  func setup(
    _ podID: String, name: String = "pod", hostNetwork: Bool = false, hostname: String = "",
    sysctls: [String: String] = [:], ports: [PortMapping] = []
  ) async throws -> PodNetworkInfo {
    try await client.call(
      PodNetworkSetup.self,
      PodNetworkSetup.Request(
        podID: podID, podName: name, podNamespace: "default", podUID: "uid-" + podID.prefix(8),
        hostNetwork: hostNetwork, hostname: hostname, sysctls: sysctls, portMappings: ports))
  }

  func teardown(_ podID: String) async throws {
    _ = try await client.call(PodNetworkTeardown.self, PodNetworkTeardown.Request(podID: podID))
  }

  /// IPs host-local has handed out and not yet released (files named by address).
  func leasedIPs() -> [String] { network.leasedIPs() }

  /// Mounts under this instance's directory (pinned namespaces left behind).
  func mounts() -> [String] {
    let table = readWholeFile("/proc/self/mountinfo")
    return table.split(separator: "\n").map(String.init).filter { $0.contains(dir) }
  }

  /// Links enslaved to our bridge (one veth per pod still attached).
  func bridgePorts() throws -> [String] {
    let out = try runProgram("/usr/sbin/ip", ["-o", "link", "show", "master", bridge])
    return out.output.split(separator: "\n").map(String.init).filter { !$0.isEmpty && !$0.contains("does not exist") }
  }

  /// No lease, no pinned namespace, no veth on our bridge: what a teardown must leave.
  func expectNothingLeft(sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(leasedIPs().isEmpty, "leases left: \(leasedIPs())", sourceLocation: sourceLocation)
    #expect(mounts().isEmpty, "mounts left: \(mounts())", sourceLocation: sourceLocation)
    #expect(try bridgePorts().isEmpty, "veths left on \(bridge)", sourceLocation: sourceLocation)
  }

  var log: String { (try? String(contentsOfFile: dir + "/netd.log", encoding: .utf8)) ?? "" }

  func destroy() async {
    if let process, process.isRunning {
      // Pods a failed test left: CNI DEL removes their iptables rules and leases too.
      if let pods = try? await client.call(PodNetworkList.self, timeoutMs: 5_000) {
        for pod in pods.pods { _ = try? await teardown(pod.podID) }
      }
      Glibc.kill(process.processIdentifier, SIGTERM)
      if (try? await waitUntil("netd exits", timeout: .seconds(10), { !process.isRunning })) == nil {
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
      }
    }
    // Whatever a failed test left pinned.
    for line in mounts() {
      let fields = line.split(separator: " ")
      if fields.count > 4 { umount2(String(fields[4]), Int32(MNT_DETACH)) }
    }
    _ = try? runProgram("/usr/sbin/ip", ["link", "del", bridge])
    try? FileManager.default.removeItem(atPath: dir)
  }
}

func withNetd(_ body: (NetdInstance) async throws -> Void) async throws {
  let netd = try NetdInstance()
  do {
    try await body(netd)
  } catch {
    print("--- netd log ---\n\(netd.log)")
    await netd.destroy()
    throw error
  }
  await netd.destroy()
}

/// A process inside a pod's network namespace (nsenter), its stdout readable by line.
final class PodProcess: @unchecked Sendable {
  let process = Process()
  private let output = Pipe()

  init(netns: String, python: String) throws {
    process.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
    process.arguments = ["--net=" + netns, "/usr/bin/env", "python3", "-c", python]
    process.standardOutput = output
    try process.run()
  }

  func readLine() -> String {
    var bytes: [UInt8] = []
    while true {
      let chunk = output.fileHandleForReading.readData(ofLength: 1)
      if chunk.isEmpty || chunk.first == UInt8(ascii: "\n") { break }
      bytes += chunk
    }
    return String(decoding: bytes, as: UTF8.self)
  }

  func stop() {
    if process.isRunning {
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
    }
  }
}

/// Python that listens on a TCP port, prints "ready", then greets one client.
func pythonListener(port: Int, greeting: String) -> String {
  """
  import socket
  s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  s.bind(("0.0.0.0", \(port))); s.listen(5); print("ready", flush=True)
  c, _ = s.accept(); c.sendall(b"\(greeting)"); c.close()
  """
}

/// Python that connects and prints what the server says (or the error).
func pythonConnect(host: String, port: Int) -> String {
  """
  import socket
  try:
      s = socket.create_connection(("\(host)", \(port)), timeout=5); print(s.recv(100).decode(), flush=True)
  except Exception as e:
      print("error: %s" % e, flush=True)
  """
}
