import Synchronization

/// Hands each published element to every subscriber, each through a buffer of its own
/// of `bufferSize` elements. Publishing never waits: a subscriber whose buffer is full
/// is dropped (its stream ends after what it has buffered, `dropped` set), so one slow
/// reader can never hold up the publisher or the other readers.
public final class Fanout<Element: Sendable>: Sendable {
  public final class Subscription: Sendable {
    public let id: UInt64
    public let elements: AsyncStream<Element>
    let continuation: AsyncStream<Element>.Continuation
    private let droppedFlag = Atomic<Bool>(false)

    /// Whether it was dropped for falling behind (rather than ended by `close`).
    public var dropped: Bool { droppedFlag.load(ordering: .acquiring) }

    init(id: UInt64, elements: AsyncStream<Element>, continuation: AsyncStream<Element>.Continuation) {
      self.id = id
      self.elements = elements
      self.continuation = continuation
    }

    func drop() {
      droppedFlag.store(true, ordering: .releasing)
      continuation.finish()
    }
  }

  public let bufferSize: Int
  private struct State {
    var subscribers: [UInt64: Subscription] = [:]
    var nextID: UInt64 = 0
    var closed = false
  }
  private let state = Mutex(State())

  public init(bufferSize: Int) {
    precondition(bufferSize > 0, "a fanout needs room for at least one element")
    self.bufferSize = bufferSize
  }

  /// A new subscription, receiving what is published from now on; after `close`, one
  /// that has already ended.
  public func subscribe() -> Subscription {
    let (stream, continuation) = AsyncStream.makeStream(of: Element.self, bufferingPolicy: .bufferingOldest(bufferSize))
    let subscription = state.withLock { state -> Subscription in
      state.nextID += 1
      let subscription = Subscription(id: state.nextID, elements: stream, continuation: continuation)
      if !state.closed { state.subscribers[state.nextID] = subscription }
      return subscription
    }
    if state.withLock({ $0.closed }) {
      continuation.finish()
    } else {
      let id = subscription.id
      continuation.onTermination = { [weak self] _ in self?.unsubscribe(id) }
    }
    return subscription
  }

  public func unsubscribe(_ id: UInt64) {
    _ = state.withLock { $0.subscribers.removeValue(forKey: id) }
  }

  public var subscriberCount: Int { state.withLock { $0.subscribers.count } }

  /// Hands `element` to every subscriber; drops those whose buffer is full.
  public func publish(_ element: Element) {
    let subscribers = state.withLock { Array($0.subscribers.values) }
    for subscriber in subscribers {
      switch subscriber.continuation.yield(element) {
      case .enqueued: continue
      case .dropped:
        unsubscribe(subscriber.id)
        subscriber.drop()
      case .terminated: unsubscribe(subscriber.id)
      @unknown default: continue
      }
    }
  }

  /// Ends every subscription; later ones end at once.
  public func close() {
    let subscribers = state.withLock { state -> [Subscription] in
      state.closed = true
      defer { state.subscribers = [:] }
      return Array(state.subscribers.values)
    }
    subscribers.forEach { $0.continuation.finish() }
  }
}
