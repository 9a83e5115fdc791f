import CRIAPI
import CrispCore
import CrispTestSupport
import Foundation
import GRPCCore
import Testing

/// Every daemon restarted (SIGTERM) and killed (SIGKILL) in turn, in every order, with
/// a pod and a logging container running: after each, the CRI answers within seconds,
/// the container kept running and logging without a lost line, and no pod, container
/// or image went missing. While imaged or netd is down, calls that need it fail fast
/// with `Unavailable` naming it, and Status shows the matching condition false.
@Suite struct RestartMatrixTests {
  static let orders: [[CrispInstance.Daemon]] = [
    [.imaged, .netd, .frontd], [.imaged, .frontd, .netd], [.netd, .imaged, .frontd],
    [.netd, .frontd, .imaged], [.frontd, .imaged, .netd], [.frontd, .netd, .imaged],
  ]

  @Test func everyDaemonRestartsAndDiesInEveryOrderWithoutLosingAnything() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      let ticker = try await crisp.createContainer(
        podID: podID, name: "ticker", image: image,
        command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.02; done"])
      try await crisp.startContainer(ticker)
      let log = crisp.dir + "/logs/ticker.log"
      func ticks() -> [Int] {
        readWholeFile(log).split(separator: "\n").compactMap { line in
          line.split(separator: " ").last.flatMap { Int($0) }
        }
      }

      for signal in [SIGTERM, SIGKILL] {
        for order in Self.orders {
          for daemon in order {
            let before = ticks().count
            try await crisp.stop(daemon, signal: signal)
            try await expectFailsFastWhileDown(daemon, crisp: crisp, podID: podID, image: image)
            try await waitUntil("the container logs while \(daemon) is down", timeout: .seconds(10)) {
              ticks().count > before + 3
            }
            try crisp.start(daemon)
            let restarted = ContinuousClock.now
            try await waitUntil("CRI answers after \(daemon) came back (signal \(signal))", timeout: .seconds(20)) {
              guard let status = try? await crisp.status() else { return false }
              return status.condition("RuntimeReady")?.status == true
                && status.condition("NetworkReady")?.status == true
            }
            // Seconds (a debug build's start on a loaded 2-core machine), not a redial backoff
            // or a deadline run out.
            #expect(ContinuousClock.now - restarted < .seconds(10), "\(daemon) took long to be usable again")
            #expect(try await crisp.containerStatus(ticker).status.state == .containerRunning)
            #expect(try await crisp.listPods().map(\.id) == [podID])
            #expect(try await crisp.listContainers().map(\.id) == [ticker])
            #expect(try await crisp.withImages { try await $0.listImages(.init()) }.images.count == 1)
          }
        }
      }
      let all = ticks()
      #expect(all == Array(1...all.count), "\(all.count) lines, with a gap")
      #expect(String(decoding: try await crisp.execSync(ticker, ["echo", "ok"]).stdout, as: UTF8.self) == "ok\n")
      try await crisp.removePod(podID)
      try await waitUntil("the shim exits", timeout: .seconds(10)) { shimProcesses(crisp).isEmpty }
    }
  }

  /// What a client sees while `daemon` is down.
  func expectFailsFastWhileDown(
    _ daemon: CrispInstance.Daemon, crisp: CrispInstance, podID: String, image: String
  ) async throws {
    switch daemon {
    case .imaged:
      let started = ContinuousClock.now
      let error = await #expect(throws: RPCError.self) {
        var request = Runtime_V1_ImageStatusRequest()
        request.image.image = image
        _ = try await crisp.withImages { try await $0.imageStatus(request) }
      }
      #expect(error?.code == .unavailable)
      #expect(error?.message.contains("imaged") == true, "\(error?.message ?? "")")
      #expect(ContinuousClock.now - started < .seconds(8))
      let runtime = try await crisp.status().condition("RuntimeReady")
      #expect(runtime?.status == false)
    case .netd:
      let started = ContinuousClock.now
      let error = await #expect(throws: RPCError.self) {
        try await crisp.runPod(PodSandboxTests.podConfig(name: "while-netd-is-down"))
      }
      #expect(error?.code == .unavailable)
      #expect(error?.message.contains("netd") == true, "\(error?.message ?? "")")
      #expect(ContinuousClock.now - started < .seconds(8))
      let network = try await crisp.status().condition("NetworkReady")
      #expect(network?.status == false)
      // The failed RunPodSandbox left nothing behind.
      #expect(try await crisp.listPods().map(\.id) == [podID])
    case .frontd:
      break
    }
  }
}
