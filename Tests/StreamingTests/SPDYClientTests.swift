import CrispTestSupport
import Foundation
import Streaming
import XCTest

/// remotecommand and port forwarding over SPDY/3.1 with Fixtures/spdy_client.py, a SPDY client
/// written apart from the server (its own framing, zlib dictionary and flow control).
final class SPDYClientTests: StreamingServerTestCase {
  override func setUp() async throws {
    try await super.setUp()
    try await startServer()
  }

  func testTenMegabytesThroughCatWithAndWithoutClientFlowControl() async throws {
    let input = try randomFile("input", size: 10 << 20)
    let options = StreamOptions(stdin: true, stdout: true, stderr: true, tty: false)
    // Without WINDOW_UPDATEs from the client (as moby/spdystream) and with them (then the
    // server must keep to the windows the client returns).
    for flowControl in [false, true] {
      let url = try url(.exec(containerID: "c1", command: ["cat"], options: options))
      let clock = ContinuousClock()
      let start = clock.now
      let result = try await runClient(
        "spdy_client.py",
        ["exec", url, "--protocol", "v4.channel.k8s.io", "--stdin", input.path]
          + (flowControl ? ["--flow-control"] : []))
      let elapsed = clock.now - start
      XCTAssertEqual(result.int("handshake_status"), 101, result.description)
      XCTAssertEqual(result.string("protocol"), "v4.channel.k8s.io", result.description)
      XCTAssertEqual(result.object("streams", "stdout")?["length"] as? Int, 10 << 20, result.description)
      XCTAssertEqual(result.object("streams", "stdout")?["sha256"] as? String, input.sha256)
      // cat ends on the stdin stream's FIN.
      XCTAssertEqual(decodeStatus(result.string("status")).status, "Success", result.description)
      XCTAssertEqual(result.bool("server_closed"), true, result.description)
      XCTAssertNil(result.string("read_error"), result.description)
      print("SPDY (client flow control \(flowControl)): 10 MiB through cat in \(elapsed)")
    }
  }

  func testExitCodeAndOlderProtocols() async throws {
    let options = StreamOptions(stdin: false, stdout: true, stderr: true, tty: false)
    let v4 = try await runClient(
      "spdy_client.py",
      [
        "exec", try url(.exec(containerID: "c1", command: ["sh", "-c", "echo out; exit 3"], options: options)),
        "--protocol", "v4.channel.k8s.io",
      ])
    XCTAssertEqual(v4.object("streams", "stdout")?["text"] as? String, "out\n", v4.description)
    XCTAssertEqual(decodeStatus(v4.string("status")).exitCode, "3", v4.description)
    // Before v4 the error stream carries the message as text.
    let v2 = try await runClient(
      "spdy_client.py",
      [
        "exec", try url(.exec(containerID: "c1", command: ["sh", "-c", "exit 3"], options: options)),
        "--protocol", "v2.channel.k8s.io",
      ])
    XCTAssertEqual(v2.string("protocol"), "v2.channel.k8s.io", v2.description)
    XCTAssertTrue(v2.string("status")?.contains("exit status 3") == true, v2.description)
  }

  func testResizeIsSeenByATerminal() async throws {
    let tty = StreamOptions(stdin: true, stdout: true, stderr: false, tty: true)
    let url = try url(.exec(containerID: "c1", command: ["sh", "-c", "read line; stty size"], options: tty))
    let result = try await runClient(
      "spdy_client.py",
      ["exec", url, "--protocol", "v4.channel.k8s.io", "--tty", "--resize", "123x45", "--stdin-text", "go\n"])
    let text = result.object("streams", "stdout")?["text"] as? String ?? ""
    XCTAssertTrue(text.contains("45 123"), "stty size inside: \(result.description)")
    XCTAssertEqual(decodeStatus(result.string("status")).status, "Success", result.description)
  }

  func testTwoConcurrentPortForwardStreamsOfTenMegabytes() async throws {
    let port = try await startEchoServer()
    let input = try randomFile("input", size: 10 << 20)
    // As kubectl (no WINDOW_UPDATE from the client), then with client flow control.
    for flowControl in [false, true] {
      let url = try url(.portForward(podID: "p1", ports: []))
      let result = try await runClient(
        "spdy_client.py",
        [
          "portforward", url, "--protocol", "portforward.k8s.io", "--port", "\(port)", "--streams", "2",
          "--stdin", input.path,
        ] + (flowControl ? ["--flow-control"] : []))
      XCTAssertEqual(result.int("handshake_status"), 101, result.description)
      let pairs = result["pairs"] as? [[String: Any]] ?? []
      XCTAssertEqual(pairs.count, 2, result.description)
      for pair in pairs {
        let data = pair["data"] as? [String: Any] ?? [:]
        let error = pair["error"] as? [String: Any] ?? [:]
        XCTAssertEqual(data["length"] as? Int, 10 << 20, "flow control \(flowControl): \(result.description)")
        XCTAssertEqual(data["sha256"] as? String, input.sha256)
        XCTAssertEqual(data["fin"] as? Bool, true, "the echo server's EOF comes back as FIN: \(result.description)")
        XCTAssertEqual(error["length"] as? Int, 0, result.description)
      }
      XCTAssertNil(result["write_errors"], result.description)
    }
    XCTAssertEqual(backend.forwards.withLock { $0 }, 4)
  }

  func testPortForwardToAClosedPortReportsOnTheErrorStream() async throws {
    // Port 1 (tcpmux): nothing listens on it here, so connecting is refused at once.
    let url = try url(.portForward(podID: "p1", ports: []))
    let result = try await runClient(
      "spdy_client.py", ["portforward", url, "--protocol", "portforward.k8s.io", "--port", "1", "--timeout", "20"])
    let pairs = result["pairs"] as? [[String: Any]] ?? []
    let error = pairs.first?["error"] as? [String: Any] ?? [:]
    XCTAssertTrue((error["text"] as? String)?.contains("port 1") == true, result.description)
  }
}
