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
    let (imaged, client) = try startImaged(in: dir)
    defer { imaged.killIfRunning() }

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

/// A real imaged with its root and run root under `dir`, and an IPC client to it.
private func startImaged(in dir: String) throws -> (Process, IPCClient) {
  let config = dir + "/crisp.toml"
  try "root = \"\(dir)/root\"\nrun_root = \"\(dir)/run\"\n".write(toFile: config, atomically: true, encoding: .utf8)
  let imaged = try startBinary("imaged", ["--config", config])
  do {
    let client = try IPCClient(peer: "imaged", address: "ipc://\(dir)/run/imaged.ipc", defaultTimeoutMs: 10_000)
    return (imaged, client)
  } catch {
    imaged.killIfRunning()  // no caller holds it to stop it
    throw error
  }
}

/// A peer that sends more than crisp accepts: NNG must drop it before reading it all into
/// the daemon's memory, and the daemon goes on answering others.
@Suite struct OversizedMessageTests {
  @Test func aRequestOverTheLimitIsDroppedByTheTransportAndTheDaemonGoesOn() async throws {
    let dir = try makeTemporaryDirectory(prefix: "crisp-big")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let (imaged, client) = try startImaged(in: dir)
    defer { imaged.killIfRunning() }
    defer { client.close() }
    _ = try await client.call(Health.self)

    func peakMemoryKiB() -> Int {
      let status = readWholeFile("/proc/\(imaged.processIdentifier)/status")
      let line = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") } ?? ""
      return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }
    let before = peakMemoryKiB()
    let huge = [UInt8](repeating: UInt8(ascii: " "), count: 20 << 20)
    await #expect(throws: (any Error).self, "no reply to a 20 MiB request") {
      _ = try await client.roundTrip(huge, method: "raw", timeoutMs: 3_000)
    }
    let grown = peakMemoryKiB() - before
    #expect(grown < 8 << 10, "imaged's peak memory grew by \(grown) KiB for a message it refuses")
    #expect(try await client.call(Health.self).daemon == "imaged")
  }
}

/// A daemon told to stop (SIGTERM) while it answers calls: NNG 1.5 aborts the process
/// ("pthread_mutex_lock: Invalid argument" in nng_ctx_send) if the socket is closed
/// under a context that is sending a reply; imaged once exited with SIGABRT so in a test.
@Suite struct StopWhileAnsweringTests {
  @Test func aDaemonStoppedWhileAnsweringExitsCleanlyAndRemovesItsSocket() async throws {
    let dir = try makeTemporaryDirectory(prefix: "crisp-stop")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    var answeredInFlight = 0
    for round in 0..<30 {
      let id = String(format: "%064x", round)
      let shim = try startBinary("shimd", ["--id", id, "--run-root", dir])
      defer { shim.killIfRunning() }
      let socket = "\(dir)/shims/\(id).ipc"
      let client = try IPCClient(peer: "shimd", address: "ipc://" + socket, defaultTimeoutMs: 10_000)
      defer { client.close() }
      _ = try await client.call(Health.self)
      answeredInFlight += await withTaskGroup(of: Int.self) { group in
        for _ in 0..<16 {
          group.addTask { (try? await client.call(Health.self, timeoutMs: 2_000)) == nil ? 0 : 1 }
        }
        group.addTask {
          try? await Task.sleep(for: .microseconds(Int.random(in: 0...1_500)))
          kill(shim.processIdentifier, SIGTERM)
          return 0
        }
        return await group.reduce(0, +)
      }
      try await waitUntil("shimd exits after SIGTERM (round \(round))", timeout: .seconds(10)) { !shim.isRunning }
      #expect(shim.terminationReason == .exit && shim.terminationStatus == 0, "round \(round)")
      #expect(!FileManager.default.fileExists(atPath: socket), "round \(round)")
    }
    // The signals did come while calls were being answered.
    #expect(answeredInFlight > 0 && answeredInFlight < 30 * 16, "\(answeredInFlight) of \(30 * 16) answered")
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
