import CrispCore
import CrispTestSupport
import Foundation
import Testing

@testable import CrispIPC

/// IPC between this test process and a real daemon process.
@Suite struct TwoProcessTests {
  @Test func healthAndPingFromARealImagedProcess() async throws {
    let dir = try makeTemporaryDirectory(prefix: "crisp-2p")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let config = dir + "/crisp.toml"
    try "root = \"\(dir)/root\"\nrun_root = \"\(dir)/run\"\n".write(toFile: config, atomically: true, encoding: .utf8)

    let imaged = Process()
    imaged.executableURL = URL(fileURLWithPath: binaryPath("imaged"))
    imaged.arguments = ["--config", config]
    try imaged.run()
    defer {
      if imaged.isRunning {
        kill(imaged.processIdentifier, SIGKILL)
        imaged.waitUntilExit()
      }
    }

    let client = try IPCClient(peer: "imaged", address: "ipc://\(dir)/run/imaged.ipc", defaultTimeoutMs: 10_000)
    let health = try await client.call(Health.self)
    #expect(health.daemon == "imaged")
    #expect(health.pid == imaged.processIdentifier)
    #expect(health.version == CrispVersion.string)
    #expect(health.ready)

    let payload = String(repeating: "p", count: 200)
    #expect(try await client.call(Ping.self, Ping.Request(payload: payload)).payload == payload)

    let garbage = try await client.roundTrip(Array("not json".utf8), method: "raw", timeoutMs: 5_000)
    #expect(String(decoding: garbage, as: UTF8.self).contains("invalidArgument"))
    #expect(imaged.isRunning)

    kill(imaged.processIdentifier, SIGTERM)
    try await waitUntil("imaged exits", timeout: .seconds(10)) { !imaged.isRunning }
    #expect(imaged.terminationStatus == 0)
    #expect(!FileManager.default.fileExists(atPath: "\(dir)/run/imaged.ipc"))
  }
}
