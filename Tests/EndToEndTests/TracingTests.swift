import CRIAPI
import CrispCore
import CrispTestSupport
import Foundation
import GRPCCore
import Testing

/// OpenTelemetry tracing end to end: real daemons with `[tracing] endpoint` set export
/// OTLP/HTTP to a collector in the test process; a CRI call's span in crisp-frontd and
/// the IPC spans it causes in crisp-netd and crisp-imaged form one trace, parent by
/// parent, continuing kubelet's traceparent when the call carries one.
@Suite struct TracingTests {
  static let kubeletTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
  static let kubeletSpanID = "00f067aa0ba902b7"

  @Test func criCallsAndTheirIPCCallsShareOneTrace() async throws {
    let collector = try OTLPCollector()
    defer { collector.stop() }
    let tracing = """
      [tracing]
      endpoint = "\(collector.endpoint)"
      export_interval_ms = 100
      """
    try await withRegistry { registry, _ in
      try await withCrisp(extraConfig: tracing) { crisp in
        try crisp.writeRegistriesConf(CrispInstance.insecureRegistry(registry.address))
        try crisp.writeBridgeCNIConfig()
        try await crisp.startAll()

        // RunPodSandbox inside kubelet's trace.
        var run = Runtime_V1_RunPodSandboxRequest()
        run.config = PodSandboxTests.podConfig(name: "traced")
        let traceparent = "00-\(Self.kubeletTraceID)-\(Self.kubeletSpanID)-01"
        let podID = try await crisp.withRuntime {
          try await $0.runPodSandbox(run, metadata: ["traceparent": .string(traceparent)])
        }.podSandboxID
        // PullImage with no trace of kubelet's: frontd starts one.
        _ = try await crisp.pull("\(registry.address)/crisp/busybox:latest")
        // A failing call: its status code is on its span.
        var missing = Runtime_V1_PodSandboxStatusRequest()
        missing.podSandboxID = String(repeating: "e", count: 64)
        await #expect(throws: RPCError.self) { try await crisp.withRuntime { try await $0.podSandboxStatus(missing) } }
        // A malformed traceparent is ignored: the call works, its span starts a trace.
        let version = try await crisp.withRuntime {
          try await $0.version(.init(), metadata: ["traceparent": .string("00-zz-not-a-trace-context")])
        }
        #expect(version.runtimeName == CrispVersion.runtimeName)

        func span(_ service: String, _ name: String, where match: (OTLPCollector.Span) -> Bool = { _ in true })
          -> OTLPCollector.Span?
        {
          collector.received.first { $0.service == service && $0.name == name && match($0) }
        }
        // Every span looked at below, not a few taken as a sign of the others: each daemon
        // batches and sends its spans on a timer of its own.
        try await waitUntil("the spans reach the collector", timeout: .seconds(20)) {
          guard let pullServed = span("crisp-imaged", "ipc.serve image.pull") else { return false }
          return span("crisp-netd", "ipc.serve netd.setup") != nil
            && span("crisp-frontd", "runtime.v1.RuntimeService/RunPodSandbox") != nil
            && span("crisp-frontd", "ipc netd/netd.setup") != nil
            && span("crisp-frontd", "runtime.v1.ImageService/PullImage") != nil
            && span("crisp-frontd", "ipc imaged/image.pull") != nil
            && span("crisp-frontd", "runtime.v1.RuntimeService/Version") != nil
            && span("crisp-frontd", "runtime.v1.RuntimeService/PodSandboxStatus") != nil
            && collector.received.contains { $0.service == "crisp-imaged" && $0.parentSpanID == pullServed.spanID }
        }
        #expect(collector.errors.isEmpty, "\(collector.errors)")

        // frontd's RunPodSandbox span continues kubelet's trace ...
        let runSpan = try #require(span("crisp-frontd", "runtime.v1.RuntimeService/RunPodSandbox"))
        #expect(runSpan.traceID == Self.kubeletTraceID)
        #expect(runSpan.parentSpanID == Self.kubeletSpanID)
        #expect(runSpan.kind == 2)
        #expect(runSpan.attributes["rpc.grpc.status_code"] == "0")
        #expect(runSpan.attributes["rpc.method"] == "RunPodSandbox")
        // ... its IPC call to netd is its child, and netd's handling the child of that.
        let setupCall = try #require(span("crisp-frontd", "ipc netd/netd.setup") { $0.traceID == runSpan.traceID })
        #expect(setupCall.parentSpanID == runSpan.spanID)
        #expect(setupCall.kind == 3)
        let setupServed = try #require(span("crisp-netd", "ipc.serve netd.setup"))
        #expect(setupServed.traceID == Self.kubeletTraceID)
        #expect(setupServed.parentSpanID == setupCall.spanID)
        #expect(setupServed.kind == 2)

        // PullImage: a trace of frontd's own, with imaged's pull in it.
        let pullSpan = try #require(span("crisp-frontd", "runtime.v1.ImageService/PullImage"))
        #expect(pullSpan.parentSpanID.isEmpty)
        #expect(pullSpan.traceID != Self.kubeletTraceID)
        let pullCall = try #require(span("crisp-frontd", "ipc imaged/image.pull"))
        #expect(pullCall.traceID == pullSpan.traceID && pullCall.parentSpanID == pullSpan.spanID)
        let pullServed = try #require(span("crisp-imaged", "ipc.serve image.pull"))
        #expect(pullServed.traceID == pullSpan.traceID && pullServed.parentSpanID == pullCall.spanID)
        // AsyncHTTPClient traces imaged's registry requests within it.
        #expect(collector.received.contains { $0.service == "crisp-imaged" && $0.parentSpanID == pullServed.spanID })

        let failed = try #require(span("crisp-frontd", "runtime.v1.RuntimeService/PodSandboxStatus"))
        #expect(failed.attributes["rpc.grpc.status_code"] == "5")  // NOT_FOUND
        #expect(failed.statusCode == 2)
        let versionSpan = try #require(span("crisp-frontd", "runtime.v1.RuntimeService/Version"))
        #expect(versionSpan.parentSpanID.isEmpty && versionSpan.traceID.count == 32)
        #expect(!crisp.log(.frontd).contains("Fatal error"))

        try await crisp.stopPod(podID)
        try await crisp.removePod(podID)
      }
    }
  }

  /// Export happens beside the work: with no collector listening, calls answer at once
  /// and each daemon still stops promptly on SIGTERM, with spans queued.
  @Test func aCollectorThatIsDownDelaysNeitherCallsNorShutdown() async throws {
    let gone = try OTLPCollector()
    gone.stop()  // its port now refuses connections
    let tracing = """
      [tracing]
      endpoint = "\(gone.endpoint)"
      export_interval_ms = 100
      """
    try await withCrisp(extraConfig: tracing) { crisp in
      try crisp.writeCNIConfig()
      try await crisp.startAll()
      let clock = ContinuousClock()
      let start = clock.now
      // Status asks imaged and netd over IPC: spans in all three daemons.
      for _ in 0..<10 { _ = try await crisp.status(verbose: true) }
      #expect(clock.now - start < .seconds(5))
      for daemon in [CrispInstance.Daemon.frontd, .imaged, .netd] {
        let stopping = clock.now
        let status = try await crisp.stop(daemon)
        #expect(status == 0, "\(daemon.rawValue) exit status")
        #expect(clock.now - stopping < .seconds(6), "\(daemon.rawValue) stopped in \(clock.now - stopping)")
      }
    }
  }
}
