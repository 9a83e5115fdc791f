import CrispCore
import CrispIPC
import CrispTestSupport
import Foundation
import Testing

/// One container under a real shimd and real runc, made without any image: the
/// root filesystem is an overlay whose lower directory holds Debian's static
/// busybox and its applet links; config.json comes from `runc spec`.
/// `cleanUp()` leaves nothing behind (processes, runc state, mounts, cgroups,
/// files), also after a failed test.
final class ShimFixture: @unchecked Sendable {
  static let runc = "/usr/sbin/runc"

  let dir: String
  let id: String
  let bundle: String
  let runRoot: String
  let runtimeRoot: String
  let logPath: String
  let cgroupName: String
  let tty: Bool
  var shimProcess: Child?
  private var client: IPCClient?

  var address: String { "ipc://\(runRoot)/shims/\(id).ipc" }
  var exitFile: String { bundle + "/exit.json" }

  /// `script` runs as `sh -c script` as the container's init.
  init(
    script: String, tty: Bool = false, memoryLimitBytes: Int? = nil, name: String = #function
  ) throws {
    dir = try makeTemporaryDirectory(prefix: "crisp-shimd")
    id = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    bundle = dir + "/bundle"
    runRoot = dir + "/run"
    runtimeRoot = runRoot + "/runc"
    logPath = dir + "/logs/pod_uid/container/0.log"
    cgroupName = "crisp-test-" + String(id.prefix(16))
    self.tty = tty
    do {
      try build(script: script, memoryLimitBytes: memoryLimitBytes)
    } catch {
      cleanUp()
      throw error
    }
  }

  private func build(script: String, memoryLimitBytes: Int?) throws {
    let fm = FileManager.default
    let lower = dir + "/lower"
    try fm.createDirectory(atPath: lower + "/bin", withIntermediateDirectories: true)
    try fm.createDirectory(atPath: dir + "/upper", withIntermediateDirectories: true)
    try fm.createDirectory(atPath: dir + "/work", withIntermediateDirectories: true)
    try fm.createDirectory(atPath: bundle, withIntermediateDirectories: true)
    try fm.copyItem(atPath: "/bin/busybox", toPath: lower + "/bin/busybox")
    let applets = try Child.run("/bin/busybox", ["--list"])
    for applet in applets.output.split(separator: "\n") where applet != "busybox" && !applet.contains("/") {
      try fm.createSymbolicLink(atPath: lower + "/bin/" + applet, withDestinationPath: "busybox")
    }
    for name in ["etc", "tmp", "proc", "sys", "dev"] {
      try fm.createDirectory(atPath: lower + "/" + name, withIntermediateDirectories: true)
    }
    try "crisp-test\n".write(toFile: lower + "/etc/hostname", atomically: true, encoding: .utf8)

    let spec = try Child.run(Self.runc, ["spec", "--bundle", bundle])
    guard spec.status == 0 else { throw FixtureError("runc spec failed: \(spec.output)") }
    let configPath = bundle + "/config.json"
    var config =
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath))) as! [String: Any]
    var process = config["process"] as! [String: Any]
    process["args"] = ["sh", "-c", script]
    process["terminal"] = tty
    config["process"] = process
    config["root"] = ["path": "rootfs", "readonly": false]
    var linux = config["linux"] as! [String: Any]
    linux["cgroupsPath"] = "/" + cgroupName
    if let memoryLimitBytes {
      // memory and memory+swap: the container cannot escape into swap.
      linux["resources"] = ["memory": ["limit": memoryLimitBytes, "swap": memoryLimitBytes]]
    }
    config["linux"] = linux
    try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
      .write(to: URL(fileURLWithPath: configPath))

    let mount = RootfsMount(
      type: "overlay", source: "overlay", lowerDirs: [lower], upperDir: dir + "/upper", workDir: dir + "/work",
      options: ["lowerdir=\(lower),upperdir=\(dir)/upper,workdir=\(dir)/work"])
    try JSONEncoder().encode(mount).write(to: URL(fileURLWithPath: bundle + "/rootfs.json"))
  }

  /// The command line of a shim for this container.
  func arguments(daemonize: Bool = false, events: String = "", extra: [String] = []) -> [String] {
    var args = [
      "--id", id, "--run-root", runRoot, "--bundle", bundle, "--log-path", logPath, "--runtime", Self.runc,
      "--events", events, "--log-level", "debug",
    ]
    if tty { args.append("--tty") }
    if daemonize { args.append("--daemonize") }
    return args + extra
  }

  /// Starts the shim in the foreground (a child of the test) and waits until it
  /// serves (its socket is bound before `runc create`, served after).
  func startShim(events: String = "", extra: [String] = []) async throws {
    // Its own log goes to a file: a shim left behind must not hold the test's output open.
    let logFD = open(dir + "/shimd.out", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    defer { close(logFD) }
    let process = try Child.spawn(binaryPath("shimd"), arguments(events: events, extra: extra), output: logFD)
    shimProcess = process
    try await waitUntil("shimd binds \(address)", timeout: .seconds(20)) {
      guard process.isRunning else {
        throw FixtureError("shimd exited with \(process.exitCode ?? -1): \(readWholeFile(dir + "/shimd.out"))")
      }
      return FileManager.default.fileExists(atPath: "\(runRoot)/shims/\(id).ipc")
    }
    _ = try await state()
  }

  /// Runs `shimd --daemonize` to completion: the launcher's status and output.
  func daemonize(events: String = "", timeout: TimeInterval = 30) throws -> (status: Int32, output: String) {
    try Child.run(binaryPath("shimd"), arguments(daemonize: true, events: events), timeout: timeout)
  }

  func connect() throws -> IPCClient {
    if let client { return client }
    let made = try IPCClient(peer: "shimd", address: address, defaultTimeoutMs: 15_000)
    client = made
    return made
  }

  func state() async throws -> ShimContainerState { try await connect().call(ShimState.self) }

  func waitForState(_ phase: ShimContainerPhase, timeout: Duration = .seconds(20)) async throws -> ShimContainerState {
    var last: ShimContainerState?
    try await waitUntil("container is \(phase)", timeout: timeout, every: .milliseconds(50)) {
      last = try await state()
      return last?.state == phase
    }
    return last!
  }

  func shimPID() async throws -> Int32 { try await connect().call(Health.self).pid }

  func readLog(_ path: String? = nil) -> String { readWholeFile(path ?? logPath) }

  func runcState() -> String? {
    guard let result = try? Child.run(Self.runc, ["--root", runtimeRoot, "state", id]), result.status == 0 else {
      return nil
    }
    return result.output
  }

  var rootfsMounted: Bool {
    readWholeFile("/proc/self/mountinfo").split(separator: "\n").contains {
      $0.split(separator: " ").dropFirst(4).first.map(String.init) == bundle + "/rootfs"
    }
  }

  /// Processes whose memory cgroup is the container's.
  func containerProcesses() -> [Int32] {
    let procs =
      readWholeFile("/sys/fs/cgroup/memory/\(cgroupName)/cgroup.procs")
      + readWholeFile("/sys/fs/cgroup/\(cgroupName)/cgroup.procs")
    return procs.split(separator: "\n").compactMap { Int32($0) }
  }

  /// Waits until the container runs `arguments` (then sh has run what came before:
  /// a trap is set).
  func waitForProcess(_ arguments: [String], timeout: Duration = .seconds(10)) async throws {
    try await waitUntil("the container runs \(arguments.joined(separator: " "))", timeout: timeout) {
      let inContainer = Set(containerProcesses())
      return processes(withCommandLine: arguments).contains { inContainer.contains($0) }
    }
  }

  /// Kills and removes everything this container may have left: the shim, the
  /// container's processes, its runc state, its mount, its cgroups, its files.
  func cleanUp() {
    client?.close()
    client = nil
    for pid in shimPIDs() { kill(pid, SIGKILL) }
    shimProcess?.killAndWait()
    if FileManager.default.fileExists(atPath: runtimeRoot + "/" + id) {
      _ = try? Child.run(Self.runc, ["--root", runtimeRoot, "kill", "--all", id, "KILL"], timeout: 10)
      _ = try? Child.run(Self.runc, ["--root", runtimeRoot, "delete", "--force", id], timeout: 10)
    }
    for pid in containerProcesses() { kill(pid, SIGKILL) }
    for _ in 0..<50 where rootfsMounted {
      umount2(bundle + "/rootfs", Int32(MNT_DETACH))
    }
    let controllers = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? []
    for controller in controllers {
      let path = "/sys/fs/cgroup/\(controller)/\(cgroupName)"
      if FileManager.default.fileExists(atPath: path) {
        for _ in 0..<50 where rmdir(path) != 0 { usleep(20_000) }
      }
    }
    try? FileManager.default.removeItem(atPath: dir)
  }

  /// The shims (and their launchers) of this container, found through /proc: a
  /// shim may be detached, or its test may have failed before asking its pid.
  func shimPIDs() -> [Int32] {
    let needle = "--id\0\(id)\0"
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap(Int32.init).filter { pid in
      pid != getpid() && readWholeFile("/proc/\(pid)/cmdline").contains(needle)
    }
  }
}

struct FixtureError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}

/// Runs `body` with a fixture and always cleans up.
func withContainer(
  script: String, tty: Bool = false, memoryLimitBytes: Int? = nil,
  _ body: (ShimFixture) async throws -> Void
) async throws {
  let fixture = try ShimFixture(script: script, tty: tty, memoryLimitBytes: memoryLimitBytes)
  defer { fixture.cleanUp() }
  try await body(fixture)
}

/// Waits for a CrispError and returns it (failing the test when the call succeeds).
func expectCrispError<T>(_ body: () async throws -> T) async -> CrispError? {
  do {
    _ = try await body()
    Issue.record("expected an error")
    return nil
  } catch let error as CrispError {
    return error
  } catch {
    Issue.record("unexpected error \(error)")
    return nil
  }
}

/// The pids of processes whose command line is exactly `arguments`.
func processes(withCommandLine arguments: [String]) -> [Int32] {
  let wanted = arguments.joined(separator: "\0") + "\0"
  let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
  return entries.compactMap(Int32.init).filter { readWholeFile("/proc/\($0)/cmdline") == wanted }
}

func statusField(_ pid: Int32, _ field: String) -> String? {
  for line in readWholeFile("/proc/\(pid)/status").split(separator: "\n") where line.hasPrefix(field + ":") {
    return line.dropFirst(field.count + 1).trimmingCharacters(in: .whitespaces)
  }
  return nil
}

/// Fields 5-6 of /proc/PID/stat after the command: ppid, pgrp, session.
func processIDs(_ pid: Int32) -> (ppid: Int32, pgrp: Int32, session: Int32)? {
  let stat = readWholeFile("/proc/\(pid)/stat")
  guard let close = stat.lastIndex(of: ")") else { return nil }
  let fields = stat[stat.index(after: close)...].split(separator: " ")
  guard fields.count > 4, let ppid = Int32(fields[1]), let pgrp = Int32(fields[2]), let session = Int32(fields[3])
  else { return nil }
  return (ppid, pgrp, session)
}
