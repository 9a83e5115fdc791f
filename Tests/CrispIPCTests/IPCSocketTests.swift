import CNNG
import CrispCore
import CrispTestSupport
import Foundation
import Synchronization
import Testing

@testable import CrispIPC

/// Real NNG sockets over ipc:// in a temporary directory.
@Suite struct IPCSocketTests {
  struct Slow: IPCMethod {
    static let name = "test.slow"
    typealias Request = Empty
    typealias Response = Empty
  }

  /// A latch the slow handler waits on, opened by the test.
  final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))
    let entered = Atomic<Int>(0)

    func wait() async {
      entered.add(1, ordering: .relaxed)
      await withCheckedContinuation { c in
        let resumeNow = state.withLock { s -> Bool in
          if s.open { return true }
          s.waiters.append(c)
          return false
        }
        if resumeNow { c.resume() }
      }
    }

    func open() {
      let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
        s.open = true
        defer { s.waiters = [] }
        return s.waiters
      }
      waiters.forEach { $0.resume() }
    }
  }

  func withServer(
    workers: Int = 8, gate: Gate = Gate(),
    _ body: (_ address: String, _ dir: String) async throws -> Void
  ) async throws {
    let dir = try makeTemporaryDirectory(prefix: "crisp-ipc")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let address = "ipc://\(dir)/test.ipc"
    var router = IPCRouter()
    router.register(Slow.self) { _ in
      await gate.wait()
      return Empty()
    }
    let server = try IPCServer(address: address, router: router, workers: workers, logger: .init(label: "test"))
    let serving = Task { await server.run() }
    defer {
      server.close()
      serving.cancel()
    }
    try await body(address, dir)
  }

  @Test func roundTripAndSocketMode() async throws {
    try await withServer { address, dir in
      let client = try IPCClient(peer: "test", address: address, defaultTimeoutMs: 5_000)
      let payload = String(repeating: "x", count: 200)
      let reply = try await client.call(Ping.self, Ping.Request(payload: payload))
      #expect(reply.payload == payload)

      let mode = try FileManager.default.attributesOfItem(atPath: dir + "/test.ipc")[.posixPermissions] as? Int
      #expect(mode == 0o600)
    }
  }

  @Test func aSlowRequestDoesNotBlockTheOthers() async throws {
    let gate = Gate()
    try await withServer(workers: 8, gate: gate) { address, _ in
      let client = try IPCClient(peer: "test", address: address, defaultTimeoutMs: 20_000)
      let slow = Task { try await client.call(Slow.self) }
      try await waitUntil("the slow handler runs", timeout: .seconds(10)) {
        gate.entered.load(ordering: .relaxed) == 1
      }
      // 100 requests at once complete while the slow one is still held.
      let answers = try await withThrowingTaskGroup(of: String.self) { group in
        for i in 0..<100 {
          group.addTask { try await client.call(Ping.self, Ping.Request(payload: "\(i)")).payload }
        }
        return try await group.reduce(into: Set<String>()) { $0.insert($1) }
      }
      #expect(answers == Set((0..<100).map(String.init)))
      #expect(gate.entered.load(ordering: .relaxed) == 1)
      gate.open()
      _ = try await slow.value
    }
  }

  @Test func aDeadPeerYieldsUnavailableWithinTheDeadline() async throws {
    let dir = try makeTemporaryDirectory(prefix: "crisp-ipc")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let client = try IPCClient(peer: "imaged", address: "ipc://\(dir)/nobody.ipc", defaultTimeoutMs: 300)
    let clock = ContinuousClock()
    let started = clock.now
    let error = await #expect(throws: CrispError.self) { try await client.call(Ping.self, Ping.Request()) }
    let elapsed = clock.now - started
    #expect(error?.code == .unavailable)
    #expect(error?.message.contains("imaged") == true)
    #expect(error?.message.contains("nobody.ipc") == true)
    // The deadline is 300 ms; allow a loaded CI machine generous slack, but not "hangs".
    #expect(elapsed < .seconds(3))
  }

  /// A daemon down for longer than the grace fails even a call with a long deadline at
  /// once; one that comes back within it is waited for.
  @Test func aPeerDownPastTheGraceFailsLongCallsAtOnce() async throws {
    let dir = try makeTemporaryDirectory(prefix: "crisp-ipc")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let address = "ipc://\(dir)/down.ipc"
    let client = try IPCClient(peer: "netd", address: address, defaultTimeoutMs: 30_000, connectGraceMs: 200)
    let clock = ContinuousClock()
    var started = clock.now
    let first = await #expect(throws: CrispError.self) { try await client.call(Ping.self, Ping.Request()) }
    #expect(first?.code == .unavailable)
    #expect(clock.now - started < .seconds(5), "waited for the 30 s deadline instead of the 200 ms grace")
    started = clock.now
    await #expect(throws: CrispError.self) { try await client.call(Ping.self, Ping.Request()) }
    // Not the 30 s deadline; seconds of slack for a loaded machine running tests in parallel.
    #expect(clock.now - started < .seconds(5), "the grace is spent: the second call fails at once")

    // Back: the client reconnects by itself and the next call is answered.
    let server = try IPCServer(address: address, router: IPCRouter(), logger: .init(label: "test"))
    let serving = Task { await server.run() }
    try await waitUntil("the client reconnects", timeout: .seconds(10)) { client.isConnected }
    #expect(try await client.call(Ping.self, Ping.Request(payload: "back")).payload == "back")
    server.close()
    await serving.value
  }

  @Test func theClientRecoversWhenThePeerComesBack() async throws {
    let dir = try makeTemporaryDirectory(prefix: "crisp-ipc")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let address = "ipc://\(dir)/late.ipc"
    let client = try IPCClient(peer: "late", address: address, defaultTimeoutMs: 200)
    await #expect(throws: CrispError.self) { try await client.call(Ping.self, Ping.Request()) }

    for round in 0..<2 {
      let server = try IPCServer(address: address, router: IPCRouter(), logger: .init(label: "test"))
      let serving = Task { await server.run() }
      // The client redials by itself; a call made before it has (its grace for a peer
      // that is down long spent) fails fast, as it should.
      try await waitUntil("the client reconnects", timeout: .seconds(10)) { client.isConnected }
      let reply = try await client.call(Ping.self, Ping.Request(payload: "round \(round)"), timeoutMs: 5_000)
      #expect(reply.payload == "round \(round)")
      server.close()
      await serving.value
      // The next round's call must not race the client's noticing that this server went
      // (a call in flight when a connection drops fails, as it should).
      try await waitUntil("the client sees the server gone", timeout: .seconds(10)) { !client.isConnected }
    }
  }

  @Test func rawGarbageGetsAnErrorReply() async throws {
    try await withServer { address, _ in
      let client = try IPCClient(peer: "test", address: address)
      for garbage in [[UInt8](), [0xff, 0x00, 0x13], Array("{\"v\":7,\"method\":\"ping\"}".utf8)] {
        let reply = try await client.roundTrip(garbage, method: "raw", timeoutMs: 5_000)
        let json = try #require(JSONSerialization.jsonObject(with: Data(reply)) as? [String: Any])
        #expect(json["error"] != nil)
      }
      // The server still answers normally afterwards.
      #expect(try await client.call(Ping.self, Ping.Request(payload: "ok")).payload == "ok")
    }
  }

  @Test func eventsArePushedAndGarbageIsDropped() async throws {
    let dir = try makeTemporaryDirectory(prefix: "crisp-ipc")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let address = "ipc://\(dir)/events.ipc"
    let receiver = try IPCEventReceiver(address: address, logger: .init(label: "test"))
    defer { receiver.close() }
    // A lost event must fail the test, not hang it.
    let watchdog = Task {
      try await Task.sleep(for: .seconds(20))
      receiver.close()
    }
    defer { watchdog.cancel() }

    // Garbage first, from a raw PUSH socket: it is dropped, not delivered, not fatal.
    let raw = try NNGSocket(.push)
    defer { raw.close() }
    try raw.dial(address)
    for garbage in ["not json", #"{"v":9,"event":"container.exited","data":{}}"#, #"{"v":1}"#] {
      var bytes = Array(garbage.utf8)
      #expect(nng_send(raw.raw, &bytes, bytes.count, 0) == 0)
    }

    let sender = try IPCEventSender(address: address)
    let event = ContainerExitedEvent(
      containerID: String(repeating: "a", count: 64), exitCode: 137, finishedAt: 42, oomKilled: true)
    try await sender.send(event)
    let received = try #require(await receiver.next())
    #expect(received.name == ContainerExitedEvent.name)
    #expect(try received.decode(ContainerExitedEvent.self) == event)
    #expect(throws: CrispError.self) { try received.decode(ContainerStartedEvent.self) }
  }
}
