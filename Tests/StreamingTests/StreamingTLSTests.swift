import CrispTestSupport
import Foundation
import Streaming
import XCTest

/// TLS with client certificates: a CA, a server certificate for 127.0.0.1 and client
/// certificates made here with the openssl CLI; the clients are Python's ssl (websocket-client
/// and the SPDY client).
final class StreamingTLSTests: StreamingServerTestCase {
  private let options = StreamOptions(stdin: false, stdout: true, stderr: true, tty: false)

  private func openssl(_ arguments: [String]) throws {
    let (status, output) = try runProgram("/usr/bin/openssl", arguments)
    XCTAssertEqual(status, 0, "openssl \(arguments): \(output)")
  }

  /// Makes `<name>.key`/`<name>.crt` signed by the CA `<ca>` (self-signed when ca is nil).
  private func certificate(_ name: String, signedBy ca: String?, subjectAltName: String? = nil) throws {
    let dir = directory
    let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "\(dir)/\(name).key"]
    guard let ca else {
      try openssl(["req", "-x509"] + key + ["-out", "\(dir)/\(name).crt", "-days", "1", "-subj", "/CN=\(name)"])
      return
    }
    try openssl(["req"] + key + ["-out", "\(dir)/\(name).csr", "-subj", "/CN=\(name)"])
    var sign = [
      "x509", "-req", "-in", "\(dir)/\(name).csr", "-CA", "\(dir)/\(ca).crt", "-CAkey", "\(dir)/\(ca).key",
      "-CAcreateserial", "-out", "\(dir)/\(name).crt", "-days", "1",
    ]
    if let subjectAltName {
      try "subjectAltName=\(subjectAltName)\n".write(toFile: "\(dir)/\(name).ext", atomically: true, encoding: .utf8)
      sign += ["-extfile", "\(dir)/\(name).ext"]
    }
    try openssl(sign)
  }

  func testClientCertificatesSignedByTheClientCAGetThroughOthersDoNot() async throws {
    try certificate("ca", signedBy: nil)
    try certificate("server", signedBy: "ca", subjectAltName: "IP:127.0.0.1")
    try certificate("client", signedBy: "ca")
    try certificate("rogue-ca", signedBy: nil)
    try certificate("rogue", signedBy: "rogue-ca")
    let dir = directory
    let base = try await startServer {
      $0.tlsCertificatePath = "\(dir)/server.crt"
      $0.tlsKeyPath = "\(dir)/server.key"
      $0.tlsClientCAPath = "\(dir)/ca.crt"
    }
    XCTAssertTrue(base.hasPrefix("https://"), base)
    let trust = ["--cafile", "\(dir)/ca.crt"]
    let client = ["--cert", "\(dir)/client.crt", "--key", "\(dir)/client.key"]

    let wss = try url(.exec(containerID: "c1", command: ["echo", "over-tls"], options: options), webSocket: true)
    XCTAssertTrue(wss.hasPrefix("wss://"), wss)
    let ok = try await runClient("ws_client.py", ["exec", wss, "--protocol", "v4.channel.k8s.io"] + trust + client)
    XCTAssertEqual(ok.object("channels", "1")?["text"] as? String, "over-tls\n", ok.description)

    let https = try url(.exec(containerID: "c1", command: ["echo", "spdy-tls"], options: options))
    let spdy = try await runClient(
      "spdy_client.py", ["exec", https, "--protocol", "v4.channel.k8s.io"] + trust + client)
    XCTAssertEqual(spdy.object("streams", "stdout")?["text"] as? String, "spdy-tls\n", spdy.description)
    XCTAssertEqual(backend.calls, 2)

    // No client certificate, or one from another CA: the handshake fails, no HTTP answer.
    for (name, certificate) in [
      ("no client certificate", [String]()),
      ("a certificate of another CA", ["--cert", "\(dir)/rogue.crt", "--key", "\(dir)/rogue.key"]),
    ] {
      let wssURL = try url(.exec(containerID: "c1", command: ["echo", "never"], options: options), webSocket: true)
      let refused = try await runClient(
        "ws_client.py", ["exec", wssURL, "--protocol", "v4.channel.k8s.io"] + trust + certificate)
      XCTAssertNil(refused.int("handshake_status"), "\(name): \(refused.description)")
      // The server's TLS alert (certificate required, unknown CA), not some other failure.
      XCTAssertTrue(refused.string("error")?.contains("SSLError") == true, "\(name): \(refused.description)")
      let httpsURL = try url(.exec(containerID: "c1", command: ["echo", "never"], options: options))
      let refusedSPDY = try await runClient(
        "spdy_client.py", ["exec", httpsURL, "--protocol", "v4.channel.k8s.io"] + trust + certificate)
      XCTAssertTrue(refusedSPDY.string("error")?.contains("SSLError") == true, "\(name): \(refusedSPDY.description)")
      XCTAssertNil(refusedSPDY.object("streams"), "\(name): \(refusedSPDY.description)")
      // With the handshake refused, the token was never presented: it is still good.
      let later = try await runClient(
        "ws_client.py", ["exec", wssURL, "--protocol", "v4.channel.k8s.io"] + trust + client)
      XCTAssertEqual(later.object("channels", "1")?["text"] as? String, "never\n", later.description)
    }
    XCTAssertEqual(backend.calls, 4, "only the clients with a good certificate ran anything")
  }

  func testTLSWithoutClientCAAcceptsAnyClient() async throws {
    try certificate("ca", signedBy: nil)
    try certificate("server", signedBy: "ca", subjectAltName: "IP:127.0.0.1")
    let dir = directory
    try await startServer {
      $0.tlsCertificatePath = "\(dir)/server.crt"
      $0.tlsKeyPath = "\(dir)/server.key"
    }
    let wss = try url(.exec(containerID: "c1", command: ["echo", "anyone"], options: options), webSocket: true)
    let ok = try await runClient(
      "ws_client.py", ["exec", wss, "--protocol", "v5.channel.k8s.io", "--cafile", "\(dir)/ca.crt"])
    XCTAssertEqual(ok.object("channels", "1")?["text"] as? String, "anyone\n", ok.description)
  }
}
