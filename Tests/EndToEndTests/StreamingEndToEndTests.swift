import CRIAPI
import CrispCore
import CrispTestSupport
import Foundation
import GRPCCore
import Testing

/// kubectl exec and attach through the whole of crisp: the CRI call answers a URL on
/// frontd's streaming server, a real kubectl (Debian's 1.20, SPDY/3.1) reaches it
/// through a stand-in API server that forwards the upgrade, and the container's shimd
/// does the work; for port-forward, netd connects inside the pod's network namespace.
@Suite struct StreamingEndToEndTests {
  static let kubectl = ProcessInfo.processInfo.environment["CRISP_KUBECTL"] ?? "/tmp/k8sclient/usr/bin/kubectl"
  static let kubeAPI = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("StreamingTests/Fixtures/kube_api.py").path

  /// The stand-in API server and a way to run kubectl against it.
  final class Kubectl: @unchecked Sendable {
    let dir: String
    let api: Process
    let url: String
    var target: String { dir + "/target" }

    init(dir: String) async throws {
      self.dir = dir
      api = Process()
      api.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
      api.arguments = [StreamingEndToEndTests.kubeAPI, dir + "/api-port", dir + "/target"]
      try api.run()
      try await waitUntil("the stand-in API server listens", timeout: .seconds(10)) {
        FileManager.default.fileExists(atPath: dir + "/api-port")
      }
      url = "http://127.0.0.1:" + readWholeFile(dir + "/api-port").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func stop() {
      if api.isRunning { kill(api.processIdentifier, SIGKILL) }
      api.waitUntilExit()
    }

    func launch(_ arguments: [String], stdin: String? = nil, stdinFile: String? = nil) throws -> (
      Process, out: String, err: String
    ) {
      let process = Process()
      process.executableURL = URL(fileURLWithPath: StreamingEndToEndTests.kubectl)
      process.arguments = ["--server", url, "--request-timeout", "0"] + arguments
      process.environment = ["KUBECONFIG": dir + "/no-kubeconfig", "HOME": dir]
      let out = dir + "/kubectl-\(UUID().uuidString).out"
      let err = out + ".err"
      FileManager.default.createFile(atPath: out, contents: nil)
      FileManager.default.createFile(atPath: err, contents: nil)
      process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
      process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
      process.standardInput =
        try stdinFile.map { try FileHandle(forReadingFrom: URL(fileURLWithPath: $0)) } ?? stdin.map { text in
          let file = dir + "/stdin-\(UUID().uuidString)"
          try text.write(toFile: file, atomically: true, encoding: .utf8)
          return try FileHandle(forReadingFrom: URL(fileURLWithPath: file))
        } ?? FileHandle.nullDevice
      try process.run()
      return (process, out, err)
    }

    /// Runs kubectl to its end (deadline 60 s): exit code, stdout, stderr.
    func run(_ arguments: [String], stdin: String? = nil, stdinFile: String? = nil) async throws -> (
      Int32, String, String
    ) {
      let (process, out, err) = try launch(arguments, stdin: stdin, stdinFile: stdinFile)
      do {
        try await waitUntil("kubectl \(arguments.first ?? "") ends", timeout: .seconds(60)) { !process.isRunning }
      } catch {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        throw error
      }
      return (process.terminationStatus, readWholeFile(out), readWholeFile(err))
    }
  }

  /// A pod with one running container of the registry's busybox, and kubectl pointed at a
  /// stand-in API server; the pod is removed after `body`.
  static func withKubectl(
    container name: String, command: [String],
    _ body: (CrispInstance, Kubectl, _ podID: String, _ containerID: String, _ image: String) async throws -> Void
  ) async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      let kubectl = try await Kubectl(dir: crisp.dir)
      defer { kubectl.stop() }
      let container = try await crisp.createContainer(podID: podID, name: name, image: image, command: command)
      try await crisp.startContainer(container)
      try await body(crisp, kubectl, podID, container, image)
      try await crisp.removePod(podID)
    }
  }

  @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: kubectl), "kubectl 1.20 comes with make deps"))
  func kubectlExecAndAttachThroughCrisp() async throws {
    try await Self.withKubectl(container: "sleeper", command: ["sleep", "1000"]) {
      crisp, kubectl, podID, sleeper, image in
      var exec = Runtime_V1_ExecRequest()
      exec.containerID = sleeper
      exec.cmd = ["sh", "-c", "echo out; echo err >&2; exit 3"]
      exec.stdout = true
      exec.stderr = true
      let url = try await crisp.withRuntime { try await $0.exec(exec) }.url
      #expect(url.hasPrefix("http://127.0.0.1:"), "\(url)")
      try url.write(toFile: kubectl.target, atomically: true, encoding: .utf8)
      var (code, out, err) = try await kubectl.run(["exec", "pod1", "--", "ignored"])
      #expect(code == 3, "\(err)")
      #expect(out == "out\n")
      #expect(err.contains("err"), "\(err)")

      // The token was used: the same URL runs nothing again.
      (code, _, err) = try await kubectl.run(["exec", "pod1", "--", "ignored"])
      #expect(code != 0)

      // As kubelet passes on what kubectl asked: -i without -t is stdin, stdout and stderr.
      exec.cmd = ["cat"]
      exec.stdin = true
      try await crisp.withRuntime { try await $0.exec(exec) }.url.write(
        toFile: kubectl.target, atomically: true, encoding: .utf8)
      (code, out, err) = try await kubectl.run(["exec", "-i", "pod1", "--", "ignored"], stdin: "ping\npong\n")
      #expect(code == 0, "\(err)")
      #expect(out == "ping\npong\n")

      // Attach: the container's own stdin and stdout, held by its shim.
      let reader = try await crisp.createContainer(
        podID: podID, name: "reader", image: image, command: ["sh", "-c", "read line; echo attached:$line"]
      ) { $0.config.stdin = true }
      try await crisp.startContainer(reader)
      var attach = Runtime_V1_AttachRequest()
      attach.containerID = reader
      attach.stdin = true
      attach.stdout = true
      attach.stderr = true
      try await crisp.withRuntime { try await $0.attach(attach) }.url.write(
        toFile: kubectl.target, atomically: true, encoding: .utf8)
      (code, out, err) = try await kubectl.run(["attach", "-i", "pod1"], stdin: "hi\n")
      #expect(out.contains("attached:hi"), "\(out) \(err)")
      try await waitUntil("the reader exits", timeout: .seconds(10)) {
        try await crisp.containerStatus(reader).status.state == .containerExited
      }
      #expect(readWholeFile(crisp.dir + "/logs/reader.log").contains("attached:hi"), "attach output is logged too")

      // Bad requests.
      var bad = Runtime_V1_ExecRequest()
      bad.containerID = sleeper
      bad.cmd = ["true"]
      let none = await #expect(throws: RPCError.self) { try await crisp.withRuntime { try await $0.exec(bad) } }
      #expect(none?.code == .invalidArgument)
      bad.stdout = true
      bad.stderr = true
      bad.tty = true
      let ttyErr = await #expect(throws: RPCError.self) { try await crisp.withRuntime { try await $0.exec(bad) } }
      #expect(ttyErr?.code == .invalidArgument)
      bad.containerID = "f00f"
      bad.tty = false
      let missing = await #expect(throws: RPCError.self) { try await crisp.withRuntime { try await $0.exec(bad) } }
      #expect(missing?.code == .notFound)
    }
  }
}

extension StreamingEndToEndTests {
  static let tcpRoundTrip = URL(fileURLWithPath: kubeAPI).deletingLastPathComponent()
    .appendingPathComponent("tcp_roundtrip.py").path

  /// kubectl port-forward to an echo server in a pod: 10 MB each way, on one connection and
  /// then on two at once; a port nothing listens on is reported, and kubectl survives it.
  @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: kubectl), "kubectl 1.20 comes with make deps"))
  func kubectlPortForwardThroughCrisp() async throws {
    try await Self.withKubectl(container: "echo", command: ["nc", "-ll", "-p", "8080", "-e", "cat"]) {
      crisp, kubectl, podID, echo, _ in
      // Started is not listening: nc binds its port some time after runc start returned.
      try await waitUntil("nc listens on 8080 in the pod", timeout: .seconds(20)) {
        let tables = try await crisp.execSync(echo, ["cat", "/proc/net/tcp", "/proc/net/tcp6"]).stdout
        return String(decoding: tables, as: UTF8.self).split(separator: "\n").contains { line in
          let fields = line.split(separator: " ")
          return fields.count > 3 && fields[1].hasSuffix(":1F90") && fields[3] == "0A"
        }
      }

      var request = Runtime_V1_PortForwardRequest()
      request.podSandboxID = podID
      request.port = [8080, 8081]
      try await crisp.withRuntime { try await $0.portForward(request) }.url.write(
        toFile: kubectl.target, atomically: true, encoding: .utf8)
      let (forwarder, out, err) = try kubectl.launch(["port-forward", "pod1", ":8080", ":8081"])
      defer {
        kill(forwarder.processIdentifier, SIGKILL)
        forwarder.waitUntilExit()
      }
      // "Forwarding from 127.0.0.1:40123 -> 8080"
      var localPorts: [Int: String] = [:]
      try await waitUntil("kubectl listens for both ports", timeout: .seconds(30)) {
        #expect(forwarder.isRunning, "kubectl port-forward ended: \(readWholeFile(err))")
        for line in readWholeFile(out).split(separator: "\n") where line.hasPrefix("Forwarding from 127.0.0.1:") {
          let parts = line.dropFirst("Forwarding from 127.0.0.1:".count).split(separator: " ")
          if parts.count == 3 { localPorts[Int(parts[2]) ?? 0] = String(parts[0]) }
        }
        return localPorts.count == 2 || !forwarder.isRunning
      }
      let port8080 = try #require(localPorts[8080], "\(readWholeFile(out)) \(readWholeFile(err))")
      let port8081 = try #require(localPorts[8081])

      let size = String(10 * 1024 * 1024)
      var (code, result, problems) = try runCapture("/usr/bin/python3", [Self.tcpRoundTrip, port8080, size, "1"])
      #expect(code == 0, "\(result) \(problems) kubectl: \(readWholeFile(err))")
      (code, result, problems) = try runCapture("/usr/bin/python3", [Self.tcpRoundTrip, port8080, size, "2"])
      #expect(code == 0, "\(result) \(problems) kubectl: \(readWholeFile(err))")
      #expect(result.split(separator: "\n").count == 2)

      // Nothing listens on 8081 in the pod: kubectl is told so on the error stream.
      (code, result, _) = try runCapture("/usr/bin/python3", [Self.tcpRoundTrip, port8081, "10", "1"])
      #expect(code != 0)
      try await waitUntil("kubectl reports the refused port", timeout: .seconds(10)) {
        readWholeFile(err).contains("error forwarding port 8081")
      }
      // And the forwarder still works for the good port.
      (code, result, problems) = try runCapture("/usr/bin/python3", [Self.tcpRoundTrip, port8080, "1000", "1"])
      #expect(code == 0, "\(result) \(problems) kubectl: \(readWholeFile(err))")
    }
  }
}

extension StreamingEndToEndTests {
  static let ptyRun = URL(fileURLWithPath: kubeAPI).deletingLastPathComponent()
    .appendingPathComponent("pty_run.py").path

  /// kubectl exec -i pipes 10 MB through `sha256sum` in the container; kubectl exec -it on a
  /// 33x77 terminal gives the exec'd shell a terminal of that size (the resize stream).
  @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: kubectl), "kubectl 1.20 comes with make deps"))
  func kubectlExecStdinVolumeAndTerminalSize() async throws {
    try await Self.withKubectl(container: "sleeper", command: ["sleep", "1000"]) {
      crisp, kubectl, podID, sleeper, image in

      // 10 MB in, its digest out, compared with the digest of what was sent.
      let input = crisp.dir + "/ten-megabytes"
      FileManager.default.createFile(
        atPath: input, contents: Data((0..<(10 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }))
      let (_, expected, _) = try runCapture("/usr/bin/sha256sum", [input])
      var exec = Runtime_V1_ExecRequest()
      exec.containerID = sleeper
      exec.cmd = ["sha256sum"]
      exec.stdin = true
      exec.stdout = true
      exec.stderr = true
      try await crisp.withRuntime { try await $0.exec(exec) }.url.write(
        toFile: kubectl.target, atomically: true, encoding: .utf8)
      let (code0, digest, problems0) = try await kubectl.run(["exec", "-i", "pod1", "--", "ignored"], stdinFile: input)
      #expect(code0 == 0, "\(problems0)")
      #expect(digest.prefix(64) == expected.prefix(64), "\(digest) \(problems0)")

      // A terminal: stdout and stderr merged, the size kubectl reads from its own terminal.
      // The first resize may reach the terminal after the shell starts (as with kubelet); busybox's
      // stty prints nothing on stdout (an error, exit status 0) while the size is 0x0: wait up to 5 s.
      exec.cmd = [
        "sh", "-c",
        "i=0; while [ -z \"$(stty size 2>/dev/null)\" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done;"
          + " stty size; echo to-stderr >&2",
      ]
      exec.stdin = true
      exec.stderr = false
      exec.tty = true
      try await crisp.withRuntime { try await $0.exec(exec) }.url.write(
        toFile: kubectl.target, atomically: true, encoding: .utf8)
      let (code, text, problems) = try await runCaptureWithDeadline(
        "/usr/bin/python3",
        [Self.ptyRun, "33", "77", Self.kubectl, "--server", kubectl.url, "exec", "-it", "pod1", "--", "ignored"],
        environment: ["KUBECONFIG": kubectl.dir + "/no-kubeconfig", "HOME": kubectl.dir])
      #expect(code == 0, "\(text) \(problems)")
      #expect(text.contains("33 77"), "\(text) \(problems)")
      #expect(text.contains("to-stderr"), "a terminal merges stderr: \(text)")
    }
  }
}

/// Runs a program to its end within 60 s (killed after that): exit code, stdout, stderr.
func runCaptureWithDeadline(_ path: String, _ arguments: [String], environment: [String: String]) async throws
  -> (Int32, String, String)
{
  let process = Process()
  process.executableURL = URL(fileURLWithPath: path)
  process.arguments = arguments
  process.environment = environment
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent("crisp-run-\(UUID().uuidString)").path
  try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(atPath: dir) }
  FileManager.default.createFile(atPath: dir + "/out", contents: nil)
  FileManager.default.createFile(atPath: dir + "/err", contents: nil)
  process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/out"))
  process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/err"))
  process.standardInput = FileHandle.nullDevice
  try process.run()
  do {
    try await waitUntil("\(path) ends", timeout: .seconds(60)) { !process.isRunning }
  } catch {
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    throw error
  }
  return (process.terminationStatus, readWholeFile(dir + "/out"), readWholeFile(dir + "/err"))
}

/// Runs a program to its end: exit code, stdout, stderr.
func runCapture(_ path: String, _ arguments: [String]) throws -> (Int32, String, String) {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: path)
  process.arguments = arguments
  let out = Pipe()
  let err = Pipe()
  process.standardOutput = out
  process.standardError = err
  try process.run()
  let stdout = out.fileHandleForReading.readDataToEndOfFile()
  let stderr = err.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
}
