import CRIAPI
import CrispCore
import CrispTestSupport
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2Posix
import Testing

/// One throw-away crisp: its own root, run_root, CNI config dir and sockets under a
/// temporary directory, real daemon processes started from the built binaries, and
/// everything stopped and removed by `stop()` (also when a test fails).
final class CrispInstance: @unchecked Sendable {
  enum Daemon: String, CaseIterable {
    case imaged, netd
    case frontd = "cri-frontd"
  }

  let dir: String
  let configPath: String
  let paths: CrispPaths
  let cniDir: String
  private var processes: [Daemon: Process] = [:]
  /// `deploy/crisp-run`'s pid, when the daemons were started through it (`startThroughCrispRun`).
  private var runner: pid_t?
  /// The bridge network of `writeBridgeCNIConfig`, deleted by `destroy`.
  private var network: TestBridge?
  private var logs: [Daemon: String] = [:]
  private let lock = NSLock()

  /// Where this instance's imaged reads registries.conf, auth.json and certs.d.
  var registriesConf: String { dir + "/registries.conf" }
  var authFile: String { dir + "/auth.json" }
  var certsDir: String { dir + "/certs.d" }

  init(extraConfig: String = "", imagedConfig: String = "", frontdConfig: String = "") throws {
    dir = try makeTemporaryDirectory(prefix: "crisp-e2e")
    paths = CrispPaths(root: dir + "/root", runRoot: dir + "/run")
    cniDir = dir + "/cni"
    try FileManager.default.createDirectory(atPath: cniDir, withIntermediateDirectories: true)
    configPath = dir + "/crisp.toml"
    self.extraConfig = extraConfig
    self.imagedConfig = imagedConfig
    try writeConfig(frontdConfig: frontdConfig)
  }

  private let extraConfig: String
  private let imagedConfig: String

  /// Rewrites the configuration with these [frontd] lines (before the daemons start).
  func writeFrontdConfig(_ lines: String) throws { try writeConfig(frontdConfig: lines) }

  private func writeConfig(frontdConfig: String) throws {
    let config = """
      root = "\(paths.root)"
      run_root = "\(paths.runRoot)"
      log_level = "debug"
      \(extraConfig)
      [ipc]
      # Status and the daemons' readiness come from health calls with this deadline: a
      # loaded 2-core machine may take more than the 300 ms a quick test would like (a dead
      # daemon fails its call at once or after IPCClient's redial grace all the same).
      health_timeout_ms = 2000

      [frontd]
      \(frontdConfig)

      [imaged]
      registries_conf = "\(dir)/registries.conf"
      auth_file = "\(dir)/auth.json"
      certs_dir = "\(dir)/certs.d"
      \(imagedConfig)

      [netd]
      cni_config_dir = "\(cniDir)"
      """
    try config.write(toFile: configPath, atomically: true, encoding: .utf8)
  }

  var criSocket: String { paths.criSocket }

  /// Writes a valid bridge configuration, as an operator would.
  func writeCNIConfig() throws {
    let conflist = """
      {"cniVersion": "1.0.0", "name": "crisp-test", "plugins": [{"type": "loopback"}]}
      """
    try conflist.write(toFile: cniDir + "/10-test.conflist", atomically: true, encoding: .utf8)
  }

  /// A real bridge network of this instance's own (bridge, subnet, IPAM dir).
  @discardableResult
  func writeBridgeCNIConfig() throws -> TestBridge {
    let bridge = TestBridge(ipamDir: dir + "/ipam")
    try bridge.conflist().write(toFile: cniDir + "/10-crisp-test.conflist", atomically: true, encoding: .utf8)
    lock.withLock { network = bridge }
    return bridge
  }

  /// Mounts under this instance's directory (pinned namespaces, /dev/shm of pods).
  func mounts() -> [String] {
    readWholeFile("/proc/self/mountinfo").split(separator: "\n").map(String.init).filter { $0.contains(dir) }
  }

  /// Starts `daemon`; `wrapper` (a command that execs its arguments, such as prlimit)
  /// runs it, under the same pid.
  func start(_ daemon: Daemon, arguments: [String] = [], wrapper: [String] = []) throws {
    let process = Process()
    let command = wrapper + [binaryPath(daemon.rawValue), "--config", configPath] + arguments
    process.executableURL = URL(fileURLWithPath: command[0])
    process.arguments = Array(command.dropFirst())
    let logPath = dir + "/\(daemon.rawValue).log"
    _ = FileManager.default.createFile(atPath: logPath, contents: nil)
    let log = FileHandle(forWritingAtPath: logPath)!
    log.seekToEndOfFile()
    process.standardOutput = log
    process.standardError = log
    try process.run()
    lock.withLock {
      processes[daemon] = process
      logs[daemon] = logPath
    }
  }

  func startAll(imagedWrapper: [String] = []) async throws {
    try start(.imaged, wrapper: imagedWrapper)
    try start(.netd)
    try start(.frontd)
    try await waitForCRI()
    // frontd dials its peers in the background; a test starts once both answer it
    // (reachable, not necessarily ready: some tests break the CNI config on purpose).
    try await waitUntil("cri-frontd reaches imaged and netd", timeout: .seconds(20)) {
      guard let info = try? await self.status(verbose: true).info else { return false }
      return ["imaged", "netd"].allSatisfy { info[$0].map { !$0.contains("\"reachable\":false") } ?? false }
    }
    // frontd's first sweep for orphans (then every ten minutes): a test that makes
    // snapshots or pod networks straight through imaged or netd starts after it.
    try await waitUntil("cri-frontd's first sweep for orphans", timeout: .seconds(20)) {
      guard let frontd = try? await self.status(verbose: true).info["cri-frontd"] else { return false }
      return !frontd.contains("\"orphansSweptAt\":0")
    }
  }

  /// Starts the daemons exactly as `make run` does: `deploy/crisp-run` from the checkout,
  /// given the binary directory as a relative path, with this instance's configuration.
  func startThroughCrispRun() async throws {
    let binDir = URL(fileURLWithPath: binaryPath("cri-frontd")).deletingLastPathComponent().path
    var checkout = binDir
    while !FileManager.default.fileExists(atPath: checkout + "/deploy/crisp-run") {
      guard let slash = checkout.lastIndex(of: "/"), slash != checkout.startIndex else {
        throw CrispRunNotFound(binDir: binDir)
      }
      checkout = String(checkout[..<slash])
    }
    let relativeBinDir = String(binDir.dropFirst(checkout.count + 1))
    let logPath = dir + "/crisp-run.log"
    // posix_spawn, not Foundation's Process: its waitUntilExit was seen spinning forever
    // on a crisp-run that had exited (a zombie it never reaped).
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    // env --chdir: in the checkout, as `make run` runs it.
    let arguments = ["/usr/bin/env", "--chdir=" + checkout, "deploy/crisp-run", relativeBinDir, configPath]
    var pid: pid_t = 0
    let status = withCStrings(arguments) { argv in posix_spawn(&pid, arguments[0], &actions, nil, argv, environ) }
    guard status == 0 else { throw POSIXError(POSIXErrorCode(rawValue: status) ?? .EIO) }
    lock.withLock { runner = pid }
    try await waitForCRI()
  }

  struct CrispRunNotFound: Error { var binDir: String }

  /// The daemons `deploy/crisp-run` started: its children, by executable name.
  func crispRunChildren() -> [String: Int32] {
    guard let runner = lock.withLock({ runner }) else { return [:] }
    var children: [String: Int32] = [:]
    for pid in processIDs(where: { _ in true }) {
      let stat = readWholeFile("/proc/\(pid)/stat")
      guard let close = stat.lastIndex(of: ")") else { continue }
      let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
      guard fields.count > 1, Int32(fields[1]) == runner else { continue }
      children[readWholeFile("/proc/\(pid)/comm").trimmingCharacters(in: .whitespacesAndNewlines)] = pid
    }
    return children
  }

  func pid(_ daemon: Daemon) -> Int32? { lock.withLock { processes[daemon]?.processIdentifier } }

  /// Sends a signal and waits (with a deadline) until the process is gone.
  @discardableResult
  func stop(_ daemon: Daemon, signal: Int32 = SIGTERM) async throws -> Int32 {
    guard let process = lock.withLock({ processes.removeValue(forKey: daemon) }) else { return 0 }
    kill(process.processIdentifier, signal)
    try await waitUntil("\(daemon.rawValue) exits", timeout: .seconds(10)) { !process.isRunning }
    return process.terminationStatus
  }

  func log(_ daemon: Daemon) -> String {
    (try? String(contentsOfFile: dir + "/\(daemon.rawValue).log", encoding: .utf8)) ?? ""
  }

  /// Stops every daemon (SIGKILL after a grace period) and removes the directory.
  func destroy() async {
    // Pods a failed test left: removing them runs CNI DEL and unmounts their files.
    if lock.withLock({ processes[.frontd] != nil || runner != nil }) {
      if let pods = try? await withRuntime({ try await $0.listPodSandbox(.init()) }) {
        for pod in pods.items {
          var request = Runtime_V1_RemovePodSandboxRequest()
          request.podSandboxID = pod.id
          _ = try? await withRuntime { try await $0.removePodSandbox(request) }
        }
      }
    }
    if let runner = lock.withLock({ runner }) {
      // crisp-run stops its daemons on SIGTERM; any it could not stop are killed.
      let daemons = crispRunChildren()
      kill(runner, SIGTERM)
      var status: Int32 = 0
      try? await waitUntil("crisp-run exits", timeout: .seconds(15)) { waitpid(runner, &status, WNOHANG) == runner }
      if kill(runner, SIGKILL) == 0 { waitpid(runner, &status, 0) }
      for pid in daemons.values { kill(pid, SIGKILL) }
    }
    let running = lock.withLock { processes }
    for (daemon, _) in running {
      _ = try? await stop(daemon)
    }
    for (_, process) in running where process.isRunning {
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
    }
    // A frontd that died could not remove its pods: their containers and shims go here.
    RuntimeLeftovers.killAll(runRoot: paths.runRoot)
    for line in mounts() {
      let fields = line.split(separator: " ")
      if fields.count > 4 { umount2(String(fields[4]), Int32(MNT_DETACH)) }
    }
    if let bridge = lock.withLock({ network }) { _ = try? runProgram("/usr/sbin/ip", ["link", "del", bridge.name]) }
    try? FileManager.default.removeItem(atPath: dir)
  }

  func waitForCRI() async throws {
    try await waitUntil("cri-frontd answers Version", timeout: .seconds(20)) {
      (try? await self.withRuntime { try await $0.version(.init()) }) != nil
    }
  }

  /// Runs `body` with a RuntimeService client on the instance's socket.
  func withRuntime<R: Sendable>(
    _ body: (Runtime_V1_RuntimeService.Client<HTTP2ClientTransport.Posix>) async throws -> R
  ) async throws -> R {
    try await withCRIClient(socket: criSocket) { try await body(Runtime_V1_RuntimeService.Client(wrapping: $0)) }
  }

  func withImages<R: Sendable>(
    _ body: (Runtime_V1_ImageService.Client<HTTP2ClientTransport.Posix>) async throws -> R
  ) async throws -> R {
    try await withCRIClient(socket: criSocket) { try await body(Runtime_V1_ImageService.Client(wrapping: $0)) }
  }

  func status(verbose: Bool = false) async throws -> Runtime_V1_StatusResponse {
    var request = Runtime_V1_StatusRequest()
    request.verbose = verbose
    return try await withRuntime { try await $0.status(request) }
  }
}

func withCRIClient<R: Sendable>(
  socket: String, _ body: (GRPCClient<HTTP2ClientTransport.Posix>) async throws -> R
) async throws -> R {
  try await withGRPCClient(
    transport: .http2NIOPosix(target: .unixDomainSocket(path: socket), transportSecurity: .plaintext)
  ) { client in
    try await body(client)
  }
}

extension Runtime_V1_StatusResponse {
  func condition(_ type: String) -> Runtime_V1_RuntimeCondition? {
    status.conditions.first { $0.type == type }
  }
}

/// Runs `body` with a fresh instance and destroys it afterwards, also when `body` throws.
func withCrisp(
  extraConfig: String = "", imagedConfig: String = "", _ body: (CrispInstance) async throws -> Void
) async throws {
  let crisp = try CrispInstance(extraConfig: extraConfig, imagedConfig: imagedConfig)
  do {
    try await body(crisp)
  } catch {
    for daemon in CrispInstance.Daemon.allCases {
      let log = crisp.log(daemon)
      if !log.isEmpty { print("--- \(daemon.rawValue) log ---\n\(log)") }
    }
    await crisp.destroy()
    throw error
  }
  await crisp.destroy()
}

/// `body` with a NULL-terminated argv of C strings.
private func withCStrings<R>(_ strings: [String], _ body: ([UnsafeMutablePointer<CChar>?]) -> R) -> R {
  let pointers = strings.map { strdup($0) } + [nil]
  defer { pointers.forEach { free($0) } }
  return body(pointers)
}
