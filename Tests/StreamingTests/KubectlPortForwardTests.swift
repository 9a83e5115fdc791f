import CrispTestSupport
import Foundation
import Streaming
import XCTest

/// A real kubectl 1.20 `port-forward` (moby/spdystream) through Fixtures/kube_api.py to the
/// streaming server, whose ProcessBackend connects to a local echo server: the server's own
/// share of port forwarding, apart from netd and pods.
final class KubectlPortForwardTests: StreamingServerTestCase {
  func testTenMegabytesThroughKubectlPortForward() async throws {
    guard FileManager.default.isExecutableFile(atPath: KubectlTests.kubectl) else {
      throw XCTSkip("kubectl 1.20 is not at \(KubectlTests.kubectl): run make deps")
    }
    try await startServer { $0.tokenTTLMs = 10_000 }
    let echoPort = try await startEchoServer()
    let targetFile = directory + "/target"
    let portFile = directory + "/api-port"
    _ = try startFixture("kube_api.py", [portFile, targetFile])
    try await waitUntil("the fake API server is up", timeout: .seconds(10)) {
      FileManager.default.fileExists(atPath: portFile)
    }
    let apiURL = "http://127.0.0.1:" + (try String(contentsOfFile: portFile, encoding: .utf8))
    try server.url(for: .portForward(podID: "p1", ports: [echoPort])).write(
      toFile: targetFile, atomically: true, encoding: .utf8)

    // kubectl picks a free local port (":remote") and says which.
    let process = Process()
    process.executableURL = URL(fileURLWithPath: KubectlTests.kubectl)
    process.arguments = ["--server", apiURL, "port-forward", "pod1", ":\(echoPort)"]
    process.environment = ["KUBECONFIG": directory + "/no-kubeconfig", "HOME": directory]
    let out = directory + "/kubectl.out"
    FileManager.default.createFile(atPath: out, contents: nil)
    process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
    process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
    process.standardInput = FileHandle.nullDevice
    try process.run()
    defer { process.killIfRunning() }
    var localPort = ""
    try await waitUntil("kubectl listens", timeout: .seconds(20)) {
      let text = readWholeFile(out)
      guard let range = text.range(of: "Forwarding from 127.0.0.1:") else { return false }
      localPort = String(text[range.upperBound...].prefix { $0.isNumber })
      return !localPort.isEmpty
    }
    let input = try randomFile("input", size: 10 << 20)
    let result = try await runClient("tcp_echo_check.py", ["127.0.0.1:\(localPort)", input.path])
    XCTAssertEqual(result.int("length"), 10 << 20, "\(result.description) kubectl: \(readWholeFile(out))")
    XCTAssertEqual(result.string("sha256"), input.sha256)
    XCTAssertEqual(result.bool("eof"), true, result.description)
    XCTAssertEqual(backend.forwards.withLock { $0 }, 1)
  }
}
