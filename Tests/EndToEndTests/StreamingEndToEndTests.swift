import CRIAPI
import CrispCore
import CrispTestSupport
import Foundation
import GRPCCore
import Testing

/// kubectl exec and attach through the whole of crisp: the CRI call answers a URL on
/// frontd's streaming server, a real kubectl (Debian's 1.20, SPDY/3.1) reaches it
/// through a stand-in API server that forwards the upgrade, and the container's shimd
/// does the work. (kubectl port-forward through crisp does not pass yet: see the issue.)
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

    func launch(_ arguments: [String], stdin: String? = nil) throws -> (Process, out: String, err: String) {
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
        try stdin.map { text in
          let file = dir + "/stdin-\(UUID().uuidString)"
          try text.write(toFile: file, atomically: true, encoding: .utf8)
          return try FileHandle(forReadingFrom: URL(fileURLWithPath: file))
        } ?? FileHandle.nullDevice
      try process.run()
      return (process, out, err)
    }

    /// Runs kubectl to its end (deadline 60 s): exit code, stdout, stderr.
    func run(_ arguments: [String], stdin: String? = nil) async throws -> (Int32, String, String) {
      let (process, out, err) = try launch(arguments, stdin: stdin)
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

  @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: kubectl), "kubectl 1.20 comes with make deps"))
  func kubectlExecAndAttachThroughCrisp() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      let kubectl = try await Kubectl(dir: crisp.dir)
      defer { kubectl.stop() }

      // Exec: both streams and the exit code; stdin to cat.
      let sleeper = try await crisp.createContainer(
        podID: podID, name: "sleeper", image: image, command: ["sleep", "1000"])
      try await crisp.startContainer(sleeper)
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
      try await crisp.removePod(podID)
    }
  }
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
