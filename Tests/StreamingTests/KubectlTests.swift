import CrispCore
import CrispTestSupport
import Foundation
import Logging
import Streaming
import XCTest

/// A real kubectl (Debian's kubernetes-client 1.20, SPDY/3.1, fetched by `make deps`) against
/// the streaming server, through Fixtures/kube_api.py, a stand-in API server that forwards the
/// exec/attach/portforward upgrade to the URL the server issued.
final class KubectlTests: XCTestCase {
  static let kubectl = ProcessInfo.processInfo.environment["CRISP_KUBECTL"] ?? "/tmp/k8sclient/usr/bin/kubectl"

  private var backend: ProcessBackend!
  private var server: StreamingServer!
  private var api: Process!
  private var apiURL = ""
  private var targetFile = ""

  override func setUp() async throws {
    guard FileManager.default.isExecutableFile(atPath: Self.kubectl) else {
      throw XCTSkip("kubectl 1.20 is not at \(Self.kubectl): run make deps")
    }
    backend = try ProcessBackend()
    var configuration = StreamingServerConfiguration()
    // kubectl starts and asks the API server first: on a loaded machine that can take seconds,
    // and an expired URL would also fail the used-token test for the wrong reason.
    configuration.tokenTTLMs = 60_000
    server = StreamingServer(configuration: configuration, backend: backend, logger: Logger(label: "streaming-test"))
    try await server.start()
    targetFile = backend.directory + "/target"
    let portFile = backend.directory + "/api-port"
    api = Process()
    api.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
    api.arguments = [ProcessBackend.fixtures + "/kube_api.py", portFile, targetFile]
    try api.run()
    try await waitUntil("the fake API server is up", timeout: .seconds(10)) {
      FileManager.default.fileExists(atPath: portFile)
    }
    apiURL = "http://127.0.0.1:" + (try String(contentsOfFile: portFile, encoding: .utf8))
  }

  override func tearDown() async throws {
    if let api, api.isRunning {
      kill(api.processIdentifier, SIGKILL)
      api.waitUntilExit()
    }
    await server?.stop()
    backend?.cleanUp()
  }

  private func issue(_ request: StreamRequest) throws -> String {
    let url = try server.url(for: request)
    try url.write(toFile: targetFile, atomically: true, encoding: .utf8)
    return url
  }

  /// Runs kubectl with `stdin` (a file path or nil); returns exit code, stdout, stderr.
  private func kubectl(_ arguments: [String], stdin: String? = nil, timeout: TimeInterval = 60) throws -> (
    Int32, Data, String
  ) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: Self.kubectl)
    process.arguments = ["--server", apiURL, "--request-timeout", "0"] + arguments
    process.environment = ["KUBECONFIG": backend.directory + "/no-kubeconfig", "HOME": backend.directory]
    let out = backend.directory + "/kubectl.out"
    let err = backend.directory + "/kubectl.err"
    FileManager.default.createFile(atPath: out, contents: nil)
    FileManager.default.createFile(atPath: err, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
    process.standardInput =
      try stdin.map { try FileHandle(forReadingFrom: URL(fileURLWithPath: $0)) } ?? FileHandle.nullDevice
    try process.run()
    let deadline = Date().addingTimeInterval(timeout)
    while process.isRunning && Date() < deadline { usleep(20_000) }
    if process.isRunning {
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
      XCTFail("kubectl \(arguments) timed out: \((try? String(contentsOfFile: err, encoding: .utf8)) ?? "")")
    }
    return (
      process.terminationStatus, try Data(contentsOf: URL(fileURLWithPath: out)),
      try String(contentsOfFile: err, encoding: .utf8)
    )
  }

  func testExecEchoAndExitCodes() throws {
    let options = StreamOptions(stdin: false, stdout: true, stderr: true, tty: false)
    _ = try issue(.exec(containerID: "c1", command: ["sh", "-c", "echo hello; echo oops >&2"], options: options))
    let (code, out, err) = try kubectl(["exec", "pod1", "--", "ignored"])
    XCTAssertEqual(code, 0, err)
    XCTAssertEqual(String(decoding: out, as: UTF8.self), "hello\n")
    XCTAssertTrue(err.contains("oops"), err)

    _ = try issue(.exec(containerID: "c1", command: ["sh", "-c", "exit 3"], options: options))
    let (code3, _, err3) = try kubectl(["exec", "pod1", "--", "ignored"])
    XCTAssertEqual(code3, 3, err3)
    XCTAssertTrue(err3.contains("exit code 3"), err3)
  }

  func testExecStdinRoundTripsTenMegabytes() throws {
    let input = backend.directory + "/input"
    var bytes = [UInt8](repeating: 0, count: 10 << 20)
    var generator = SystemRandomNumberGenerator()
    for index in stride(from: 0, to: bytes.count, by: 8) {
      withUnsafeBytes(of: generator.next() as UInt64) { random in
        for offset in 0..<8 { bytes[index + offset] = random[offset] }
      }
    }
    try Data(bytes).write(to: URL(fileURLWithPath: input))
    _ = try issue(
      .exec(
        containerID: "c1", command: ["cat"], options: StreamOptions(stdin: true, stdout: true, stderr: true, tty: false)
      ))
    let started = Date()
    let (code, out, err) = try kubectl(["exec", "-i", "pod1", "--", "cat"], stdin: input)
    XCTAssertEqual(code, 0, err)
    XCTAssertEqual(out.count, bytes.count)
    XCTAssertTrue(out == Data(bytes), "10 MB through cat came back different")
    print("exec cat of 10 MB through kubectl: \(String(format: "%.2f", Date().timeIntervalSince(started))) s")
  }

  func testAttach() throws {
    let input = backend.directory + "/line"
    try "hi\n".write(toFile: input, atomically: true, encoding: .utf8)
    _ = try issue(
      .attach(containerID: "c1", options: StreamOptions(stdin: true, stdout: true, stderr: true, tty: false)))
    let (code, out, err) = try kubectl(["attach", "-i", "pod1"], stdin: input)
    XCTAssertEqual(code, 0, err)
    XCTAssertTrue(
      String(decoding: out, as: UTF8.self).contains("attached:hi"), String(decoding: out, as: UTF8.self) + err)
  }

  func testUsedTokenIsRefused() throws {
    let options = StreamOptions(stdin: false, stdout: true, stderr: true, tty: false)
    let url = try issue(.exec(containerID: "c1", command: ["true"], options: options))
    let (code, _, err) = try kubectl(["exec", "pod1", "--", "true"])
    XCTAssertEqual(code, 0, err)
    try url.write(toFile: targetFile, atomically: true, encoding: .utf8)
    // Sessions started, not running: the first one's fake shim may still be exiting.
    let startedBefore = backend.started
    let (again, _, againErr) = try kubectl(["exec", "pod1", "--", "true"])
    XCTAssertNotEqual(again, 0)
    XCTAssertTrue(againErr.contains("404") || againErr.lowercased().contains("not found"), againErr)
    XCTAssertEqual(backend.started, startedBefore)
  }
}
