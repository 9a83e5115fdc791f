import CrispCore
import Synchronization

/// When a pull last received anything; its watchdog fails the pull when that is
/// longer ago than the configured `pull_progress_timeout_ms`.
final class PullProgress: Sendable {
  private let lastMs = Atomic<Int64>(MonotonicClock.milliseconds())
  private let totalBytes = Atomic<Int64>(0)

  func advance(bytes: Int) {
    totalBytes.add(Int64(bytes), ordering: .relaxed)
    lastMs.store(MonotonicClock.milliseconds(), ordering: .relaxed)
  }

  var bytes: Int64 { totalBytes.load(ordering: .relaxed) }
  var idleMs: Int64 { MonotonicClock.milliseconds() - lastMs.load(ordering: .relaxed) }

  /// Returns when the pull has been idle for `timeoutMs`; cancelled with the pull.
  func waitUntilStalled(timeoutMs: Int64) async {
    while !Task.isCancelled {
      let idle = idleMs
      if idle >= timeoutMs { return }
      try? await Task.sleep(for: .milliseconds(min(timeoutMs - idle, 1_000) + 1))
    }
  }
}

/// The progress of one layer download, credited to every pull waiting for it (pulls
/// of two images that share a layer share its download).
final class LayerProgress: Sendable {
  private let pulls: Mutex<[PullProgress]>

  init(_ first: PullProgress) { pulls = Mutex([first]) }

  func join(_ progress: PullProgress) { pulls.withLock { $0.append(progress) } }

  func advance(bytes: Int) {
    for pull in pulls.withLock({ $0 }) { pull.advance(bytes: bytes) }
  }
}
