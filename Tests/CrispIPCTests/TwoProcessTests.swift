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

    let imaged = try startBinary("imaged", ["--config", config])
    defer { imaged.killIfRunning() }

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

/// shimd runs once per container: it must answer IPC without loading full Foundation,
/// NIO or gRPC (see the memory table in the README).
@Suite struct ShimdFootprintTests {
  @Test func shimdServesIPCWithoutFoundationOrNIO() async throws {
    let dir = try makeTemporaryDirectory(prefix: "crisp-shim")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let id = String(repeating: "ab", count: 32)
    let shim = try startBinary("shimd", ["--id", id, "--run-root", dir])
    defer { shim.killIfRunning() }
    let client = try IPCClient(peer: "shimd", address: "ipc://\(dir)/shims/\(id).ipc", defaultTimeoutMs: 10_000)
    let health = try await client.call(Health.self)
    #expect(health.daemon == "shimd")
    #expect(health.pid == shim.processIdentifier)

    let maps = readWholeFile("/proc/\(shim.processIdentifier)/maps")
    for library in ["libFoundation.so", "lib_FoundationICU.so", "libFoundationNetworking.so", "NIO", "GRPC"] {
      #expect(!maps.contains(library), "shimd maps \(library)")
    }
  }

  @Test func shimdRefusesABadID() throws {
    let result = try runProgram(binaryPath("shimd"), ["--id", "../../etc/passwd", "--run-root", "/tmp"])
    #expect(result.status != 0)
    #expect(result.output.contains("--id must be 64 lower-case hex characters"))
  }
}
