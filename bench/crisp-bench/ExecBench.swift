import CRIAPI
import CrispCore
import CrispTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOWebSocket

/// Streaming exec as kubectl exec sees it, on one runtime: the Exec call, then the
/// streaming URL over WebSocket (`v4.channel.k8s.io`, which crisp and containerd 1.6 both
/// serve) until the exit status arrives. Latency of `true`, and stdout throughput of `cat`
/// of a 100 MB file.
extension CRIWorkload {
  struct ExecFigures {
    /// Exec RPC start → status frame received, ms.
    var roundTrip: [Double] = []
    /// MB/s of `cat` of the file, from the Exec RPC to the status.
    var throughput: [Double] = []
  }

  static let bigFileBytes = 100 * 1024 * 1024

  func execFigures(runs: Int, catRuns: Int, group: MultiThreadedEventLoopGroup) async throws -> ExecFigures {
    let (pod, container) = try await withClients { runtime, _ in
      let config = podConfig(0, group: "exec")
      var run = Runtime_V1_RunPodSandboxRequest()
      run.config = config
      let pod = try await runtime.runPodSandbox(run).podSandboxID
      var create = containerRequest(pod: pod, config: config)
      create.config.command = [
        "sh", "-c",
        "head -c \(Self.bigFileBytes) /dev/zero > /tmp/big && touch /tmp/big.done; trap 'exit 0' TERM; sleep 3600 & wait",
      ]
      let container = try await runtime.createContainer(create).containerID
      var start = Runtime_V1_StartContainerRequest()
      start.containerID = container
      _ = try await runtime.startContainer(start)
      var probe = Runtime_V1_ExecSyncRequest()
      probe.containerID = container
      probe.cmd = ["test", "-f", "/tmp/big.done"]
      probe.timeout = 10
      let deadline = ContinuousClock.now + .seconds(60)
      while try await runtime.execSync(probe).exitCode != 0 {
        guard ContinuousClock.now < deadline else {
          throw CrispError(.deadlineExceeded, "\(name): the 100 MB file was not written in 60 s")
        }
        try await Task.sleep(for: .milliseconds(50))
      }
      return (pod, container)
    }

    var figures = ExecFigures()
    var exec = Runtime_V1_ExecRequest()
    exec.containerID = container
    exec.stdout = true
    exec.stderr = true
    exec.cmd = ["true"]
    for index in 0...runs {
      let (outcome, milliseconds) = try await timedExec(exec, group: group)
      guard outcome.succeeded else { throw CrispError(.internal, "\(name): exec true ended with \(outcome.status)") }
      // The first run warms both sides up.
      if index > 0 { figures.roundTrip.append(milliseconds) }
    }
    exec.cmd = ["cat", "/tmp/big"]
    exec.stderr = false
    for _ in 0..<catRuns {
      let (outcome, milliseconds) = try await timedExec(exec, group: group)
      guard outcome.succeeded, outcome.stdoutBytes == Self.bigFileBytes else {
        throw CrispError(
          .internal, "\(name): exec cat gave \(outcome.stdoutBytes) of \(Self.bigFileBytes) bytes, \(outcome.status)")
      }
      figures.throughput.append(Double(outcome.stdoutBytes) / 1e6 / (milliseconds / 1000))
    }

    try await withClients { runtime, _ in
      var stopPod = Runtime_V1_StopPodSandboxRequest()
      stopPod.podSandboxID = pod
      _ = try await runtime.stopPodSandbox(stopPod)
      var removePod = Runtime_V1_RemovePodSandboxRequest()
      removePod.podSandboxID = pod
      _ = try await runtime.removePodSandbox(removePod)
    }
    return figures
  }

  /// One exec on a connection of its own, connected before the clock starts (containerd
  /// was seen to close a long-lived connection of this client mid-run): the Exec call,
  /// then the stream until the status; milliseconds of both.
  func timedExec(_ exec: Runtime_V1_ExecRequest, group: MultiThreadedEventLoopGroup) async throws -> (
    ExecWebSocketClient.Outcome, Double
  ) {
    try await withClients { runtime, _ in
      _ = try await runtime.version(.init())
      let began = ContinuousClock.now
      let url = try await runtime.exec(exec).url
      let outcome = try await ExecWebSocketClient.run(url: url, group: group)
      return (outcome, Self.milliseconds(since: began))
    }
  }
}

/// Just enough of a remotecommand v4 WebSocket client to time an exec: it counts stdout
/// bytes and keeps the status channel, and sends nothing but the upgrade request.
enum ExecWebSocketClient {
  struct Outcome: Sendable {
    var stdoutBytes = 0
    var status = ""
    var succeeded: Bool { status.contains("\"Success\"") }
  }

  static func run(url: String, group: MultiThreadedEventLoopGroup) async throws -> Outcome {
    guard let parsed = URL(string: url), let host = parsed.host, let port = parsed.port else {
      throw CrispError(.invalidArgument, "not a streaming URL: \(url)")
    }
    let target = parsed.path + (parsed.query.map { "?" + $0 } ?? "")
    let done = group.next().makePromise(of: Outcome.self)
    let key = Data((0..<16).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
    let channel = try await ClientBootstrap(group: group)
      .channelOption(.socketOption(.tcp_nodelay), value: 1)
      .channelInitializer { channel in
        let upgrader = NIOWebSocketClientUpgrader(
          requestKey: key, maxFrameSize: 1 << 24,
          upgradePipelineHandler: { channel, _ in
            return channel.eventLoop.makeCompletedFuture {
              try channel.pipeline.syncOperations.addHandler(OutcomeCollector(done: done))
            }
          })
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "\(host):\(port)")
        headers.add(name: "Sec-WebSocket-Protocol", value: "v4.channel.k8s.io")
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: target, headers: headers)
        return channel.eventLoop.makeCompletedFuture {
          let request = UpgradeRequest(head: head, failed: done)
          // Frames that came in the same read as the 101 go on to the WebSocket decoder; the
          // request handler goes with the HTTP handlers.
          try channel.pipeline.syncOperations.addHTTPClientHandlers(
            leftOverBytesStrategy: .forwardBytes,
            withClientUpgrade: (
              upgraders: [upgrader],
              completionHandler: { context in context.pipeline.syncOperations.removeHandler(request, promise: nil) }
            ))
          try channel.pipeline.syncOperations.addHandler(request)
        }
      }
      .connect(host: host, port: port).get()
    defer { channel.close(promise: nil) }
    return try await done.futureResult.get()
  }

  /// Sends the GET that asks for the upgrade once connected; a plain HTTP answer means refused.
  final class UpgradeRequest: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart
    let head: HTTPRequestHead
    let failed: EventLoopPromise<Outcome>

    init(head: HTTPRequestHead, failed: EventLoopPromise<Outcome>) {
      self.head = head
      self.failed = failed
    }

    func channelActive(context: ChannelHandlerContext) {
      context.write(wrapOutboundOut(.head(head)), promise: nil)
      context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
      context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      if case .head(let response) = unwrapInboundIn(data) {
        failed.fail(CrispError(.unavailable, "the streaming server answered \(response.status) instead of 101"))
      }
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
      failed.fail(error)
      context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
      failed.fail(CrispError(.unavailable, "the streaming server closed the connection before the upgrade"))
    }
  }

  /// Channel byte 1 is stdout, 3 the status; the outcome is ready when the server closes.
  final class OutcomeCollector: ChannelInboundHandler {
    typealias InboundIn = WebSocketFrame
    let done: EventLoopPromise<Outcome>
    var outcome = Outcome()

    init(done: EventLoopPromise<Outcome>) { self.done = done }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
      let frame = unwrapInboundIn(data)
      switch frame.opcode {
      case .binary, .continuation:
        var payload = frame.unmaskedData
        guard let channelByte = payload.readInteger(as: UInt8.self) else { return }
        if channelByte == 1 { outcome.stdoutBytes += payload.readableBytes }
        if channelByte == 3 { outcome.status += payload.readString(length: payload.readableBytes) ?? "" }
      case .connectionClose:
        done.succeed(outcome)
        context.close(promise: nil)
      default:
        break
      }
    }

    func channelInactive(context: ChannelHandlerContext) {
      done.succeed(outcome)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
      done.fail(error)
      context.close(promise: nil)
    }
  }
}

/// The exec figure: the same exec workload on crisp and on containerd 1.6 (each on a
/// bridge and subnet of its own), crisp first.
enum ExecBench {
  static func run(instance: BenchInstance, registry: LocalRegistry, binDir: String, runs: Int, catRuns: Int)
    async throws -> [String: Any]
  {
    _ = try await registry.pushStandardImages()
    let image = registry.reference("crisp/busybox:latest")
    let runID = String(UInt32.random(in: 0...UInt32.max), radix: 36)
    let group = MultiThreadedEventLoopGroup.singleton
    let crispBridge = "cbench-exec"
    defer { instance.releaseFigure(bridge: crispBridge) }
    let crisp = try await instance.workload(
      figure: "exec", bridge: crispBridge, subnet: "10.250.5.0/24", image: image, runID: runID)
    print("\nexec: \(runs) × exec true and \(catRuns) × cat of 100 MB, over WebSocket v4, on crisp")
    var pull = Runtime_V1_PullImageRequest()
    pull.image.image = image
    _ = try await crisp.withClients { _, images in try await images.pullImage(pull) }
    let mine = try await crisp.removingPods {
      try await crisp.execFigures(runs: runs, catRuns: catRuns, group: group)
    }

    let (peer, containerd) = try await ContainerdPeer.startForBench(
      instance: instance, registry: registry, binDir: binDir, figure: "exec", bridge: "cbench-exec-c",
      subnet: "10.250.6.0/24", image: image, runID: runID)
    defer { peer.release() }
    print("exec: the same on containerd")
    _ = try await containerd.withClients { _, images in try await images.pullImage(pull) }
    let theirs = try await containerd.removingPods {
      try await containerd.execFigures(runs: runs, catRuns: catRuns, group: group)
    }

    print("\nExec through the streaming server (WebSocket v4.channel.k8s.io): crisp vs containerd 1.6")
    let widths = [34, 5, 9, 9, 9, 10, 10, 10, 7]
    print(row(["figure", "n", "p50", "p90", "p99", "ctrd p50", "ctrd p90", "ctrd p99", "ratio"], widths: widths))
    let (a, b) = (Summary(mine.roundTrip), Summary(theirs.roundTrip))
    print(
      row(
        [
          "exec true, RPC to status (ms)", "\(mine.roundTrip.count)", f(a.p50), f(a.p90), f(a.p99), f(b.p50), f(b.p90),
          f(b.p99), String(format: "%.2f", a.p50 / b.p50),
        ], widths: widths))
    let (x, y) = (Summary(mine.throughput), Summary(theirs.throughput))
    print(
      row(
        [
          "cat 100 MB, stdout (MB/s)", "\(mine.throughput.count)", f(x.p50), "", "", f(y.p50), "", "",
          String(format: "%.2f", x.p50 / y.p50),
        ], widths: widths))
    return [
      "round_trip_ms": ["crisp": mine.roundTrip, "containerd": theirs.roundTrip],
      "cat_mb_per_s": ["crisp": mine.throughput, "containerd": theirs.throughput],
    ]
  }
}
