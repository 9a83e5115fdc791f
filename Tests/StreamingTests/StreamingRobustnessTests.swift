import CrispTestSupport
import Foundation
import Streaming
import XCTest

/// Malformed SPDY frames and bad HTTP upgrade requests: the server closes the connection or
/// answers 4xx (or resets just the stream), starts nothing, frees the session, and serves the
/// next good request.
final class StreamingRobustnessTests: StreamingServerTestCase {
  private let options = StreamOptions(stdin: false, stdout: true, stderr: true, tty: false)
  private var base = ""

  override func setUp() async throws {
    try await super.setUp()
    base = try await startServer()
  }

  /// A good exec after the bad ones: the server still serves.
  private func assertStillServes(_ context: String) async throws {
    let url = try url(.exec(containerID: "c1", command: ["echo", "still-here"], options: options))
    let result = try await runClient("spdy_client.py", ["exec", url, "--protocol", "v4.channel.k8s.io"])
    XCTAssertEqual(
      result.object("streams", "stdout")?["text"] as? String, "still-here\n", "after \(context): \(result.description)")
  }

  func testMalformedSPDYFramesEndTheSessionWithoutHarm() async throws {
    // Session errors: the server must end the connection.
    for kind in ["bad-version", "huge-length", "huge-control", "garbage-headers", "short-rst", "truncated"] {
      let url = try url(.exec(containerID: "c1", command: ["echo", "never"], options: options))
      let result = try await runClient(
        "spdy_client.py", ["malformed", url, "--protocol", "v4.channel.k8s.io", "--kind", kind, "--timeout", "20"])
      XCTAssertEqual(result.int("handshake_status"), 101, "\(kind): \(result.description)")
      XCTAssertEqual(result.bool("server_closed"), true, "\(kind): the server closes: \(result.description)")
      if kind != "truncated" {
        XCTAssertEqual(result.int("goaway"), 1, "\(kind): GOAWAY PROTOCOL_ERROR first: \(result.description)")
      }
      try await waitUntil("the session of \(kind) is released", timeout: .seconds(10)) {
        server.activeSessions == 0
      }
    }
    // Stream errors: a SYN_STREAM with stream ID 0 and data for a stream never opened are
    // refused (RST_STREAM or the session's end), never accepted.
    for (kind, status) in [("syn-stream-zero", 1), ("data-unknown-stream", 2)] {
      let url = try url(.exec(containerID: "c1", command: ["echo", "never"], options: options))
      let result = try await runClient(
        "spdy_client.py", ["malformed", url, "--protocol", "v4.channel.k8s.io", "--kind", kind, "--timeout", "20"])
      let events = result["events"] as? [String] ?? []
      let reset = events.contains { $0.hasPrefix("RST_STREAM") && $0.hasSuffix("status \(status)") }
      XCTAssertTrue(reset || result.bool("server_closed") == true, "\(kind): \(result.description)")
      try await waitUntil("the session of \(kind) is released", timeout: .seconds(10)) {
        server.activeSessions == 0
      }
    }
    XCTAssertEqual(backend.calls, 0, "no malformed session started anything")
    try await assertStillServes("malformed SPDY frames")
  }

  func testBadUpgradeRequestsAreAnsweredWithClientErrors() async throws {
    let address = String(base.dropFirst("http://".count))
    func token() throws -> String {
      let url = try url(.exec(containerID: "c1", command: ["echo", "never"], options: options))
      return String(url.dropFirst(base.count))
    }
    let cases: [(String, String, ClosedRange<Int>)] = [
      ("no Upgrade header", "GET \(try token()) HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n", 400...400),
      (
        "unknown upgrade protocol",
        "GET \(try token()) HTTP/1.1\\r\\nHost: x\\r\\nConnection: Upgrade\\r\\nUpgrade: h2c\\r\\n\\r\\n", 400...400
      ),
      (
        "wrong method",
        "DELETE \(try token()) HTTP/1.1\\r\\nHost: x\\r\\nConnection: Upgrade\\r\\nUpgrade: SPDY/3.1\\r\\n"
          + "X-Stream-Protocol-Version: v4.channel.k8s.io\\r\\n\\r\\n", 405...405
      ),
      (
        "SPDY without X-Stream-Protocol-Version",
        "GET \(try token()) HTTP/1.1\\r\\nHost: x\\r\\nConnection: Upgrade\\r\\nUpgrade: SPDY/3.1\\r\\n\\r\\n",
        400...400
      ),
      (
        "SPDY with an unknown stream protocol",
        "GET \(try token()) HTTP/1.1\\r\\nHost: x\\r\\nConnection: Upgrade\\r\\nUpgrade: SPDY/3.1\\r\\n"
          + "X-Stream-Protocol-Version: v99.channel.k8s.io\\r\\n\\r\\n", 403...403
      ),
      (
        // NIO's upgrader drops this one without an answer (status 0 below): closed is fine.
        "WebSocket without Sec-WebSocket-Key",
        "GET \(try token()) HTTP/1.1\\r\\nHost: x\\r\\nConnection: Upgrade\\r\\nUpgrade: websocket\\r\\n"
          + "Sec-WebSocket-Version: 13\\r\\n\\r\\n", 0...0
      ),
      ("garbage request line", "\\x00\\x01\\x02 garbage\\r\\n\\r\\n", 400...400),
      ("a 100 KB header", "GET \(try token()) HTTP/1.1\\r\\nHost: x\\r\\nX-Pad: {pad}\\r\\n\\r\\n", 400...431),
    ]
    for (name, request, expected) in cases {
      let result = try await runClient("http_probe.py", [address, request])
      let status = result.int("status") ?? 0
      XCTAssertTrue(expected.contains(status), "\(name): got \(result.description)")
      XCTAssertEqual(result.bool("closed"), true, "\(name): the connection is closed after the answer")
    }
    try await waitUntil("no session is left", timeout: .seconds(10)) { server.activeSessions == 0 }
    XCTAssertEqual(backend.calls, 0, "no bad request started anything")
    try await assertStillServes("bad upgrade requests")
  }
}
