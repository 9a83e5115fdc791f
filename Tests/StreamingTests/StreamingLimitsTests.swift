import CrispTestSupport
import Foundation
import Streaming
import XCTest

/// The idle timeout, the bound on concurrent sessions, and back-pressure towards a client that
/// stops reading.
final class StreamingLimitsTests: StreamingServerTestCase {
  private let pipes = StreamOptions(stdin: false, stdout: true, stderr: true, tty: false)

  func testIdleSessionsAreClosedAndBusyOnesAreNot() async throws {
    // Longer than starting a session may take on a loaded machine (a Python fake shim, then
    // sh): until then even the busy session below sends nothing.
    try await startServer { $0.idleTimeoutMs = 1500 }
    let clock = ContinuousClock()
    // Silent for a minute: the server closes it after the idle timeout, and sleep is killed.
    let ws = try url(.exec(containerID: "c1", command: ["sleep", "60"], options: pipes), webSocket: true)
    let start = clock.now
    let idleWS = try await runClient("ws_client.py", ["exec", ws, "--protocol", "v5.channel.k8s.io"])
    let elapsedWS = clock.now - start
    XCTAssertEqual(idleWS.bool("closed_by_server"), true, idleWS.description)
    XCTAssertGreaterThanOrEqual(elapsedWS, .milliseconds(1500))
    XCTAssertLessThan(elapsedWS, .seconds(15), "closed long before sleep 60 ends")
    try await waitUntil("sleep is killed with its session", timeout: .seconds(10)) { runningSessions == 0 }

    let spdy = try url(.exec(containerID: "c1", command: ["sleep", "60"], options: pipes))
    let startSPDY = clock.now
    let idleSPDY = try await runClient("spdy_client.py", ["exec", spdy, "--protocol", "v4.channel.k8s.io"])
    let elapsedSPDY = clock.now - startSPDY
    XCTAssertEqual(idleSPDY.bool("server_closed"), true, idleSPDY.description)
    XCTAssertGreaterThanOrEqual(elapsedSPDY, .milliseconds(1500))
    XCTAssertLessThan(elapsedSPDY, .seconds(15))
    XCTAssertTrue(
      (idleSPDY["events"] as? [String] ?? []).contains { $0.hasPrefix("GOAWAY") }, "GOAWAY: \(idleSPDY.description)")
    try await waitUntil("sleep is killed with its session", timeout: .seconds(10)) { runningSessions == 0 }
    try await waitUntil("the sessions are released", timeout: .seconds(10)) { server.activeSessions == 0 }

    // Output every 100 ms for 4.5 s, three times the timeout: never idle, runs to its end.
    let busy = try url(
      .exec(
        containerID: "c1", command: ["sh", "-c", "for i in $(seq 45); do echo $i; sleep 0.1; done"], options: pipes),
      webSocket: true)
    let busyResult = try await runClient("ws_client.py", ["exec", busy, "--protocol", "v5.channel.k8s.io"])
    XCTAssertEqual(decodeStatus(busyResult.string("status")).status, "Success", busyResult.description)
    XCTAssertTrue(
      (busyResult.object("channels", "1")?["text"] as? String ?? "").hasSuffix("44\n45\n"), busyResult.description)
  }

  func testTheSessionAfterTheBoundIsRefusedUntilOneEnds() async throws {
    try await startServer { $0.maxSessions = 2 }
    var holders: [(Process, String)] = []
    for number in 1...2 {
      let url = try url(.exec(containerID: "c1", command: ["sleep", "60"], options: pipes), webSocket: true)
      holders.append(
        try startClient(
          "ws_client.py",
          ["exec", url, "--protocol", "v5.channel.k8s.io", "--ready-file", "\(directory)/ready\(number)"]))
    }
    try await waitUntil("two sessions run", timeout: .seconds(20)) {
      server.activeSessions == 2 && runningSessions == 2
    }
    let third = try url(.exec(containerID: "c1", command: ["echo", "third"], options: pipes), webSocket: true)
    let refused = try await runClient("ws_client.py", ["exec", third, "--protocol", "v5.channel.k8s.io"])
    XCTAssertEqual(refused.int("handshake_status"), 429, refused.description)
    let thirdSPDY = try url(.exec(containerID: "c1", command: ["echo", "third"], options: pipes))
    let refusedSPDY = try await runClient("spdy_client.py", ["exec", thirdSPDY, "--protocol", "v4.channel.k8s.io"])
    XCTAssertEqual(refusedSPDY.int("handshake_status"), 429, refusedSPDY.description)
    XCTAssertEqual(backend.execs.withLock { $0 }, 2, "the refused sessions started nothing")

    // One client goes away: its session ends and makes room.
    holders[0].0.killIfRunning()
    try await waitUntil("the first session is released", timeout: .seconds(10)) {
      server.activeSessions == 1 && runningSessions == 1
    }
    let next = try url(.exec(containerID: "c1", command: ["echo", "room"], options: pipes), webSocket: true)
    let admitted = try await runClient("ws_client.py", ["exec", next, "--protocol", "v5.channel.k8s.io"])
    XCTAssertEqual(admitted.object("channels", "1")?["text"] as? String, "room\n", admitted.description)
    holders[1].0.killIfRunning()
    try await waitUntil("every session is released", timeout: .seconds(10)) {
      server.activeSessions == 0 && runningSessions == 0
    }
  }

  /// Writes 64 KiB chunks to stdout for ever, keeping the total written in the file argv[1].
  private static let producer = """
    import os, sys
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)
    chunk, total = b"x" * 65536, 0
    while True:
        total += os.write(1, chunk)
        os.pwrite(fd, str(total).encode().ljust(20), 0)
    """

  private func written(_ path: String) -> Int {
    Int(readWholeFile(path).trimmingCharacters(in: .whitespaces)) ?? 0
  }

  private func residentBytes() -> Int {
    let status = readWholeFile("/proc/self/status")
    guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
      let kb = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    else { return 0 }
    return kb * 1024
  }

  /// Waits until the count in `counter` has not moved for a whole second: every buffer on the
  /// way is full. Without back-pressure the server would read on and the writer never stop.
  private func waitForStall(_ counter: String) async throws -> Int {
    try await waitUntil("the writer starts", timeout: .seconds(20)) { written(counter) > 0 }
    var last = -1
    var stableSince = ContinuousClock.now
    try await waitUntil("the writer is held back", timeout: .seconds(30), every: .milliseconds(100)) {
      let now = written(counter)
      if now != last {
        last = now
        stableSince = .now
        return false
      }
      return ContinuousClock.now - stableSince >= .seconds(1)
    }
    return written(counter)
  }

  func testSlowPortForwardReadersGetBackPressure() async throws {
    try await startServer()
    let counter = "\(directory)/firehose"
    let portFile = "\(directory)/firehose-port"
    _ = try startFixture("echo_server.py", [portFile, "--firehose", counter])
    try await waitUntil("the firehose listens", timeout: .seconds(10)) {
      FileManager.default.fileExists(atPath: portFile)
    }
    let port = UInt16(try String(contentsOfFile: portFile, encoding: .utf8))!
    for client in ["ws_client.py", "spdy_client.py"] {
      try? FileManager.default.removeItem(atPath: counter)
      let rssBefore = residentBytes()
      let process: Process
      if client == "ws_client.py" {
        let url = try url(.portForward(podID: "p1", ports: [port]), webSocket: true) + "?port=\(port)"
        (process, _) = try startClient(client, ["portforward", url, "--protocol", "v4.channel.k8s.io", "--no-read"])
      } else {
        let url = try url(.portForward(podID: "p1", ports: []))
        (process, _) = try startClient(
          client, ["portforward", url, "--protocol", "portforward.k8s.io", "--port", "\(port)", "--no-read"])
      }
      let stalledAt = try await waitForStall(counter)
      let rssGrowth = residentBytes() - rssBefore
      print(
        "\(client) port-forward slow reader: the pod's writer was held at \(stalledAt >> 10) KiB; RSS grew by \(rssGrowth >> 10) KiB"
      )
      XCTAssertLessThan(stalledAt, 32 << 20, "\(client): the server buffered what its client did not read")
      XCTAssertLessThan(rssGrowth, 64 << 20, "\(client): the server's memory grew with unread data")
      process.killIfRunning()
      try await waitUntil("the forwarded connection is closed with its client", timeout: .seconds(10)) {
        server.activeSessions == 0
      }
    }
  }

  func testSlowReadersGetBackPressureNotBuffering() async throws {
    try await startServer()
    for (client, arguments) in [
      ("ws_client.py", ["--protocol", "v5.channel.k8s.io", "--no-read"]),
      ("spdy_client.py", ["--protocol", "v4.channel.k8s.io", "--no-read"]),
    ] {
      let counter = "\(directory)/written-\(client)"
      let request = StreamRequest.exec(
        containerID: "c1", command: ["/usr/bin/python3", "-c", Self.producer, counter], options: pipes)
      let url = try url(request, webSocket: client == "ws_client.py")
      let rssBefore = residentBytes()
      let (process, _) = try startClient(client, ["exec", url] + arguments)
      let stalledAt = try await waitForStall(counter)
      let rssGrowth = residentBytes() - rssBefore
      print(
        "\(client) slow reader: the producer was held at \(stalledAt >> 10) KiB; frontd (this process) RSS grew by \(rssGrowth >> 10) KiB"
      )
      // Kernel buffers on the way (pipe, unix socket, TCP both ends) hold a few MiB at most.
      XCTAssertLessThan(stalledAt, 32 << 20, "\(client): the server buffered what its client did not read")
      XCTAssertLessThan(rssGrowth, 64 << 20, "\(client): the server's memory grew with unread output")
      process.killIfRunning()
      try await waitUntil("the producer is killed when its client goes", timeout: .seconds(10)) {
        runningSessions == 0
      }
    }
  }
}
