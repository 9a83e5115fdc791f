import CrispTestSupport
import Foundation
import Streaming
import XCTest

/// remotecommand v4/v5 and port forwarding over WebSocket, against the real server and real
/// local processes, with Fixtures/ws_client.py (the websocket-client library) as the client.
final class WebSocketClientTests: StreamingServerTestCase {
  private let pipes = StreamOptions(stdin: false, stdout: true, stderr: true, tty: false)
  private let withStdin = StreamOptions(stdin: true, stdout: true, stderr: true, tty: false)

  override func setUp() async throws {
    try await super.setUp()
    try await startServer()
  }

  private func exec(_ command: [String], _ options: StreamOptions, _ arguments: [String]) async throws -> ClientResult {
    let url = try url(.exec(containerID: "c1", command: command, options: options), webSocket: true)
    return try await runClient("ws_client.py", ["exec", url] + arguments)
  }

  func testEchoAndExitStatusOverV4AndV5() async throws {
    for version in ["v4.channel.k8s.io", "v5.channel.k8s.io"] {
      let ok = try await exec(["sh", "-c", "echo hello; echo oops >&2"], pipes, ["--protocol", version])
      XCTAssertEqual(ok.int("handshake_status"), 101, ok.description)
      XCTAssertEqual(ok.string("subprotocol"), version, ok.description)
      XCTAssertEqual(ok.object("channels", "1")?["text"] as? String, "hello\n", ok.description)
      XCTAssertEqual(ok.object("channels", "2")?["text"] as? String, "oops\n", ok.description)
      XCTAssertEqual(decodeStatus(ok.string("status")).status, "Success", ok.description)
      XCTAssertEqual(ok.bool("close_frame"), true, "the server ends the session with a close frame: \(ok.description)")

      let three = try await exec(["sh", "-c", "exit 3"], pipes, ["--protocol", version])
      let status = decodeStatus(three.string("status"))
      XCTAssertEqual(status.status, "Failure", three.description)
      XCTAssertEqual(status.exitCode, "3", three.description)
    }
    XCTAssertEqual(backend.execs.withLock { $0 }, 4)
  }

  func testTenMegabytesThroughCatWithV5StdinClose() async throws {
    let input = try randomFile("input", size: 10 << 20)
    let clock = ContinuousClock()
    let start = clock.now
    let result = try await exec(
      ["cat"], withStdin, ["--protocol", "v5.channel.k8s.io", "--stdin", input.path, "--close-stdin"])
    let elapsed = clock.now - start
    XCTAssertEqual(result.object("channels", "1")?["length"] as? Int, 10 << 20, result.description)
    XCTAssertEqual(result.object("channels", "1")?["sha256"] as? String, input.sha256)
    // cat ends only on EOF: a Success status proves the close signal (channel 255) reached it.
    XCTAssertEqual(decodeStatus(result.string("status")).status, "Success", result.description)
    print("WebSocket v5: 10 MiB through cat in \(elapsed)")
  }

  func testTenMegabytesThroughCatOverV4() async throws {
    // v4 has no stdin close: the client leaves once everything came back, which kills cat.
    let input = try randomFile("input", size: 10 << 20)
    let result = try await exec(
      ["cat"], withStdin, ["--protocol", "v4.channel.k8s.io", "--stdin", input.path, "--expect-bytes", "\(10 << 20)"])
    XCTAssertEqual(result.object("channels", "1")?["length"] as? Int, 10 << 20, result.description)
    XCTAssertEqual(result.object("channels", "1")?["sha256"] as? String, input.sha256)
    try await waitUntil("cat is killed once its client left", timeout: .seconds(10)) { runningSessions == 0 }
  }

  func testV5StdinCloseGivesEOF() async throws {
    let result = try await exec(
      ["sh", "-c", "cat >/dev/null; echo got-eof"], withStdin,
      ["--protocol", "v5.channel.k8s.io", "--stdin-text", "some input\n", "--close-stdin"])
    XCTAssertEqual(result.object("channels", "1")?["text"] as? String, "got-eof\n", result.description)
    XCTAssertEqual(decodeStatus(result.string("status")).status, "Success", result.description)
  }

  func testResizeIsSeenByATerminal() async throws {
    let tty = StreamOptions(stdin: true, stdout: true, stderr: false, tty: true)
    for version in ["v4.channel.k8s.io", "v5.channel.k8s.io"] {
      // The size is sent before the line that lets the command go on: frames keep their order.
      let result = try await exec(
        ["sh", "-c", "read line; stty size"], tty,
        ["--protocol", version, "--resize", "123x45", "--stdin-text", "go\n"])
      let text = result.object("channels", "1")?["text"] as? String ?? ""
      XCTAssertTrue(text.contains("45 123"), "stty size inside: \(result.description)")
      XCTAssertNil(result.object("channels", "2"), "a terminal merges stderr: \(result.description)")
      XCTAssertEqual(decodeStatus(result.string("status")).status, "Success", result.description)
    }
  }

  func testPortForwardTenMegabytesToAnEchoServer() async throws {
    let port = try await startEchoServer()
    let input = try randomFile("input", size: 10 << 20)
    for proto in ["v4.channel.k8s.io", "portforward.k8s.io"] {
      let url = try url(.portForward(podID: "p1", ports: [port]), webSocket: true) + "?port=\(port)"
      let result = try await runClient(
        "ws_client.py",
        ["portforward", url, "--protocol", proto, "--stdin", input.path, "--expect-bytes", "\(10 << 20)"])
      XCTAssertEqual(result.int("handshake_status"), 101, result.description)
      XCTAssertEqual(result.string("subprotocol"), proto, result.description)
      XCTAssertEqual(result.int("port"), Int(port), "the first message names the port: \(result.description)")
      XCTAssertEqual(result.object("channels", "0")?["length"] as? Int, 10 << 20, result.description)
      XCTAssertEqual(result.object("channels", "0")?["sha256"] as? String, input.sha256)
      XCTAssertNil(result.string("error_text"), result.description)
    }
  }

  func testPortForwardToAClosedPortReportsOnTheErrorChannel() async throws {
    // A port nobody listens on: bind one, note it, close it.
    let probe = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
        _ = bind(probe, pointer, length)
        return getsockname(probe, pointer, &length)
      }
    }
    let port = UInt16(bigEndian: address.sin_port)
    close(probe)
    let url = try url(.portForward(podID: "p1", ports: [port]), webSocket: true) + "?port=\(port)"
    let result = try await runClient("ws_client.py", ["portforward", url, "--protocol", "v4.channel.k8s.io"])
    XCTAssertEqual(result.int("handshake_status"), 101, result.description)
    XCTAssertTrue(result.string("error_text")?.contains("\(port)") == true, result.description)
    XCTAssertEqual(result.bool("closed_by_server"), true, result.description)
  }

  func testUnsupportedSubprotocolIsRefused() async throws {
    // v2.portforward.k8s.io is the API server's SPDY-over-WebSocket tunnel, not kubelet's.
    let exec = try url(.exec(containerID: "c1", command: ["true"], options: pipes), webSocket: true)
    let refused = try await runClient("ws_client.py", ["exec", exec, "--protocol", "v9.channel.k8s.io"])
    XCTAssertEqual(refused.int("handshake_status"), 403, refused.description)
    XCTAssertEqual(backend.calls, 0)
  }
}
