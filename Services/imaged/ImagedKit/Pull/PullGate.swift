import CrispCore

/// How many PullImage requests imaged works on at once, and how many may wait. Each
/// request holds one of imaged's IPC contexts until it answers, and a pull can take an
/// hour: unbounded, slow pulls would take every context, `health` would go unanswered,
/// RuntimeReady would turn false and kubelet would mark the node NotReady. So the
/// running and waiting pulls together stay below the contexts (the configuration is
/// refused otherwise), and a pull past the queue fails at once with ResourceExhausted.
public actor PullGate {
  public let maxRunning: Int
  public let maxWaiting: Int
  private var running = 0
  private var waiting: [CheckedContinuation<Void, Never>] = []

  public init(maxRunning: Int, maxWaiting: Int) {
    self.maxRunning = max(1, maxRunning)
    self.maxWaiting = max(0, maxWaiting)
  }

  /// Runs `body` once a slot is free; throws at once when the queue is full.
  public func run<T: Sendable>(_ body: @Sendable () async throws(CrispError) -> T) async throws(CrispError) -> T {
    try await enter()
    defer { leave() }
    return try await body()
  }

  private func enter() async throws(CrispError) {
    if running < maxRunning {
      running += 1
      return
    }
    guard waiting.count < maxWaiting else {
      throw CrispError(
        .resourceExhausted,
        "imaged is pulling \(running) images and \(waiting.count) more are waiting "
          + "(imaged.max_concurrent_pulls, imaged.max_queued_pulls); try again later")
    }
    // The slot is handed over by `leave`, which does not decrement `running` for it.
    await withCheckedContinuation { waiting.append($0) }
  }

  private func leave() {
    if waiting.isEmpty {
      running -= 1
    } else {
      waiting.removeFirst().resume()
    }
  }

  /// Pulls running and waiting now.
  public var load: (running: Int, waiting: Int) { (running, waiting.count) }
}
