import Synchronization

/// Tasks suspended until a value for their key comes: a reply by its request ID, a
/// child's wait status by its pid, an event everyone waits for (each waiter with a
/// fresh key from `makeKey`, all resumed by `resumeAll`). Each waiter is resumed
/// exactly once: by `resume`, by `resumeAll`, or by its timeout.
///
/// A value that comes while nobody waits is not kept: a waiter that registers later
/// would wait for good. Two ways to close that gap, both run under the table's lock so
/// that no `resume` slips in between:
/// - `unless`: the caller's check ("has it exited already?"), answering the value when
///   it is there; whoever resumes must make the check true before resuming.
/// - `afterRegistering`: runs once the waiter is registered (outside the lock), for
///   the caller to start what will resume it (send the request whose reply it awaits).
///
/// `unless` may take a lock of the caller's; the caller must then never call into
/// this table while holding that lock (the order is: this table's lock, then theirs).
/// A cancelled task keeps waiting: give it a timeout if it must not wait for ever.
public final class Waiters<Key: Hashable & Sendable, Value: Sendable>: Sendable {
  private struct Waiter {
    /// Tells waiters for the same key apart, so that a timeout ends only its own.
    let id: UInt64
    let continuation: CheckedContinuation<Value, Never>
    /// Cancelled when the waiter is resumed first, so that no sleeping task outlives it.
    var timer: Task<Void, Never>?
  }

  private struct State {
    var waiting: [Key: [Waiter]] = [:]
    /// The last number handed out, as a waiter's id or by `makeKey`.
    var lastSerial: UInt64 = 0

    mutating func nextSerial() -> UInt64 {
      lastSerial &+= 1
      return lastSerial
    }
  }

  private let state = Mutex(State())

  public init() {}

  /// How many tasks wait now.
  public var count: Int {
    state.withLock { $0.waiting.values.reduce(0) { $0 + $1.count } }
  }

  /// Waits until `resume(key, with:)` or `resumeAll(with:)`; at once with what `ready`
  /// answers when it answers something.
  public func wait(
    for key: Key, unless ready: () -> Value? = { nil }, afterRegistering start: () -> Void = {}
  ) async -> Value {
    await wait(key, timeout: nil, ready, start)
  }

  /// `wait(for:unless:afterRegistering:)`, answering `timeoutValue` once `timeout` has
  /// passed.
  public func wait(
    for key: Key, timeout: Duration, orElse timeoutValue: Value, unless ready: () -> Value? = { nil },
    afterRegistering start: () -> Void = {}
  ) async -> Value {
    await wait(key, timeout: (timeout, timeoutValue), ready, start)
  }

  private enum Registration {
    case ready(Value)
    case registered
  }

  private func wait(
    _ key: Key, timeout: (after: Duration, value: Value)?, _ ready: () -> Value?, _ start: () -> Void
  ) async -> Value {
    await withCheckedContinuation { (continuation: CheckedContinuation<Value, Never>) in
      let registration = state.withLock { state -> Registration in
        if let value = ready() { return .ready(value) }
        var waiter = Waiter(id: state.nextSerial(), continuation: continuation)
        if let timeout {
          // Started under the lock: its `expire` cannot run before the waiter is in.
          let id = waiter.id
          waiter.timer = Task {
            do {
              try await Task.sleep(for: timeout.after)
            } catch {
              return
            }
            self.expire(key, id, with: timeout.value)
          }
        }
        state.waiting[key, default: []].append(waiter)
        return .registered
      }
      switch registration {
      case .ready(let value): continuation.resume(returning: value)
      case .registered: start()
      }
    }
  }

  /// Resumes every task waiting for `key`; false when none waits (the value is dropped).
  @discardableResult
  public func resume(_ key: Key, with value: Value) -> Bool {
    let resumed = state.withLock { $0.waiting.removeValue(forKey: key) } ?? []
    for waiter in resumed {
      waiter.timer?.cancel()
      waiter.continuation.resume(returning: value)
    }
    return !resumed.isEmpty
  }

  /// Resumes every waiting task, whatever its key; answers how many there were.
  @discardableResult
  public func resumeAll(with value: Value) -> Int {
    let resumed = state.withLock { state -> [Waiter] in
      defer { state.waiting = [:] }
      return state.waiting.values.flatMap { $0 }
    }
    for waiter in resumed {
      waiter.timer?.cancel()
      waiter.continuation.resume(returning: value)
    }
    return resumed.count
  }

  private func expire(_ key: Key, _ id: UInt64, with value: Value) {
    let expired = state.withLock { state -> Waiter? in
      guard var list = state.waiting[key], let index = list.firstIndex(where: { $0.id == id }) else { return nil }
      let waiter = list.remove(at: index)
      state.waiting[key] = list.isEmpty ? nil : list
      return waiter
    }
    expired?.continuation.resume(returning: value)
  }
}

extension Waiters where Key == UInt64 {
  /// A key no other caller of this table gets (a request ID, a waiter of its own).
  public func makeKey() -> UInt64 {
    state.withLock { $0.nextSerial() }
  }
}
