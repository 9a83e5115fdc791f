import CrispTestSupport
import Foundation
import Streaming
import XCTest

/// Single-use, expiring tokens: a used, expired or unknown token gets 404 and nothing reaches
/// the backend (no process is started).
final class StreamingTokenTests: StreamingServerTestCase {
  private let options = StreamOptions(stdin: false, stdout: true, stderr: true, tty: false)

  func testUsedTokenIsRefusedOverBothProtocolsAndNothingRuns() async throws {
    try await startServer()
    let spdyURL = try url(.exec(containerID: "c1", command: ["echo", "once"], options: options))
    let first = try await runClient("spdy_client.py", ["exec", spdyURL, "--protocol", "v4.channel.k8s.io"])
    XCTAssertEqual(first.object("streams", "stdout")?["text"] as? String, "once\n", first.description)
    XCTAssertEqual(backend.execs.withLock { $0 }, 1)

    for protocolName in ["v4.channel.k8s.io", "v3.channel.k8s.io"] {
      let again = try await runClient("spdy_client.py", ["exec", spdyURL, "--protocol", protocolName])
      XCTAssertEqual(again.int("handshake_status"), 404, again.description)
    }
    let webSocketURL = spdyURL.replacingOccurrences(of: "http://", with: "ws://")
    let viaWebSocket = try await runClient("ws_client.py", ["exec", webSocketURL, "--protocol", "v4.channel.k8s.io"])
    XCTAssertEqual(viaWebSocket.int("handshake_status"), 404, viaWebSocket.description)
    XCTAssertEqual(backend.calls, 1, "a refused token started nothing")

    // A WebSocket token is just as single-use.
    let wsURL = try url(.exec(containerID: "c1", command: ["true"], options: options), webSocket: true)
    let used = try await runClient("ws_client.py", ["exec", wsURL, "--protocol", "v5.channel.k8s.io"])
    XCTAssertEqual(used.int("handshake_status"), 101, used.description)
    let reused = try await runClient("ws_client.py", ["exec", wsURL, "--protocol", "v5.channel.k8s.io"])
    XCTAssertEqual(reused.int("handshake_status"), 404, reused.description)
    XCTAssertEqual(backend.calls, 2)
  }

  func testExpiredTokenIsRefused() async throws {
    // Long enough for a Python client to start and connect on a loaded machine.
    let ttlMs: Int64 = 2000
    try await startServer { $0.tokenTTLMs = ttlMs }
    // In time: works (so the refusal below is the expiry, not something else).
    let fresh = try url(.exec(containerID: "c1", command: ["echo", "in-time"], options: options), webSocket: true)
    let ok = try await runClient("ws_client.py", ["exec", fresh, "--protocol", "v4.channel.k8s.io"])
    XCTAssertEqual(ok.object("channels", "1")?["text"] as? String, "in-time\n", ok.description)

    let webSocket = try url(.exec(containerID: "c1", command: ["echo", "late"], options: options), webSocket: true)
    let spdy = try url(.exec(containerID: "c1", command: ["echo", "late"], options: options))
    let forward = try url(.portForward(podID: "p1", ports: []))
    // The TTL is a deadline on the monotonic clock: past it, the tokens are dead.
    try await Task.sleep(for: .milliseconds(ttlMs + 300))
    let late = try await runClient("ws_client.py", ["exec", webSocket, "--protocol", "v4.channel.k8s.io"])
    XCTAssertEqual(late.int("handshake_status"), 404, late.description)
    let lateSPDY = try await runClient("spdy_client.py", ["exec", spdy, "--protocol", "v4.channel.k8s.io"])
    XCTAssertEqual(lateSPDY.int("handshake_status"), 404, lateSPDY.description)
    let lateForward = try await runClient(
      "spdy_client.py", ["portforward", forward, "--protocol", "portforward.k8s.io", "--port", "1"])
    XCTAssertEqual(lateForward.int("handshake_status"), 404, lateForward.description)
    XCTAssertEqual(backend.calls, 1, "only the request in time ran")
  }

  func testUnknownTokenAndWrongKindAreRefused() async throws {
    let base = try await startServer()
    for path in ["/exec/00112233445566778899aabbccddeeff", "/exec/", "/exec", "/attach/x/y", "/nothing"] {
      let spdy = try await runClient("spdy_client.py", ["exec", base + path, "--protocol", "v4.channel.k8s.io"])
      XCTAssertEqual(spdy.int("handshake_status"), 404, "\(path): \(spdy.description)")
      let ws = try await runClient(
        "ws_client.py",
        ["exec", base.replacingOccurrences(of: "http://", with: "ws://") + path, "--protocol", "v4.channel.k8s.io"])
      XCTAssertEqual(ws.int("handshake_status"), 404, "\(path): \(ws.description)")
    }
    // An exec token presented on /attach/ is no attach token.
    let exec = try url(.exec(containerID: "c1", command: ["true"], options: options))
    let asAttach = exec.replacingOccurrences(of: "/exec/", with: "/attach/")
    let wrong = try await runClient("spdy_client.py", ["exec", asAttach, "--protocol", "v4.channel.k8s.io"])
    XCTAssertEqual(wrong.int("handshake_status"), 404, wrong.description)
    XCTAssertEqual(backend.calls, 0, "nothing ran")
  }
}
