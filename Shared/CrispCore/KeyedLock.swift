import Synchronization

/// One operation at a time per key (a pod, a container), in arrival order:
///
///     guard await locks.acquire(podID) else { throw busy }
///     defer { locks.release(podID) }
///
/// A caller waits at most `timeoutMs` for its turn: one that gave up must not keep a
/// worker waiting behind a slow operation.
public final class KeyedLock: Sendable {
  private struct State {
    var busy: [String: [(id: UInt64, continuation: CheckedContinuation<Bool, Never>)]] = [:]
    var nextWaiter: UInt64 = 0
  }
  private let state = Mutex(State())
  private let timeoutMs: Int

  public init(timeoutMs: Int) {
    self.timeoutMs = timeoutMs
  }

  /// True once `key` is this caller's; false when its turn did not come in time.
  public func acquire(_ key: String) async -> Bool {
    let timeout = timeoutMs
    return await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
      let waiter: UInt64? = state.withLock { state in
        guard state.busy[key] != nil else {
          state.busy[key] = []
          return nil
        }
        state.nextWaiter += 1
        state.busy[key, default: []].append((state.nextWaiter, continuation))
        return state.nextWaiter
      }
      guard let waiter else { return continuation.resume(returning: true) }
      Task {
        try? await Task.sleep(for: .milliseconds(timeout))
        self.expire(key, waiter)
      }
    }
  }

  private func expire(_ key: String, _ id: UInt64) {
    let expired = state.withLock { state -> CheckedContinuation<Bool, Never>? in
      guard let index = state.busy[key]?.firstIndex(where: { $0.id == id }) else { return nil }
      return state.busy[key]!.remove(at: index).continuation
    }
    expired?.resume(returning: false)
  }

  /// Hands `key` to the next waiter, if any.
  public func release(_ key: String) {
    let next = state.withLock { state -> CheckedContinuation<Bool, Never>? in
      guard var waiters = state.busy[key] else { return nil }
      if waiters.isEmpty {
        state.busy[key] = nil
        return nil
      }
      let next = waiters.removeFirst()
      state.busy[key] = waiters
      return next.continuation
    }
    next?.resume(returning: true)
  }
}
