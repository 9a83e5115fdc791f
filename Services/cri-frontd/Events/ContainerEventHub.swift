import CRIAPI
import CrispCore
import Synchronization

/// The CRI's container events (GetContainerEvents): frontd records its own creates,
/// starts, stops and removals and the shims' pushed starts and exits; one dispatcher
/// task turns each into a ContainerEventResponse (with the pod's and its containers'
/// statuses, built once) and hands it to every subscriber. Each subscriber has a
/// bounded buffer: one that falls behind is dropped (its call ends with
/// RESOURCE_EXHAUSTED, kubelet subscribes again), never allowed to hold up the others
/// or the calls that record events.
final class ContainerEventHub: Sendable {
  enum Kind: Int, Comparable, Sendable {
    case created, started, stopped, deleted

    static func < (a: Kind, b: Kind) -> Bool { a.rawValue < b.rawValue }

    var criType: Runtime_V1_ContainerEventType {
      switch self {
      case .created: .containerCreatedEvent
      case .started: .containerStartedEvent
      case .stopped: .containerStoppedEvent
      case .deleted: .containerDeletedEvent
      }
    }
  }

  struct Pending: Sendable, Equatable {
    var kind: Kind
    var containerID: String
    /// Empty when the recorder did not know it (a shim's event).
    var podID: String
    /// Nanoseconds since the epoch.
    var at: Int64
  }

  final class Subscriber: Sendable {
    let continuation: AsyncStream<Runtime_V1_ContainerEventResponse>.Continuation
    private let droppedFlag = Atomic<Bool>(false)
    var dropped: Bool { droppedFlag.load(ordering: .acquiring) }

    init(_ continuation: AsyncStream<Runtime_V1_ContainerEventResponse>.Continuation) {
      self.continuation = continuation
    }

    func drop() {
      droppedFlag.store(true, ordering: .releasing)
      continuation.finish()
    }
  }

  /// Events a subscriber may have waiting before it is dropped.
  let bufferSize: Int

  private struct State {
    /// The last kind recorded per live container: a container's events only go forward.
    var last: [String: Kind] = [:]
    var subscribers: [UInt64: Subscriber] = [:]
    var nextID: UInt64 = 0
    var closed = false
  }

  private let state = Mutex(State())
  private let queue: AsyncStream<Pending>
  private let enqueue: AsyncStream<Pending>.Continuation

  init(bufferSize: Int = 1024) {
    self.bufferSize = bufferSize
    (queue, enqueue) = AsyncStream.makeStream(of: Pending.self, bufferingPolicy: .unbounded)
  }

  /// Records an event; returns at once. A kind at or before the container's last one
  /// is dropped (a shim's exit reported after frontd already recorded the stop, or
  /// after the removal); a removal of a started container is preceded by its stop.
  func record(_ kind: Kind, containerID: String, podID: String = "", at: Int64 = WallClock.nowNanoseconds()) {
    let kinds = state.withLock { state -> [Kind] in
      let last = state.last[containerID]
      if let last, kind <= last { return [] }
      var kinds: [Kind] = []
      if kind == .deleted && last == .started { kinds.append(.stopped) }
      kinds.append(kind)
      if kind == .deleted {
        state.last.removeValue(forKey: containerID)
      } else {
        state.last[containerID] = kind
      }
      return kinds
    }
    for kind in kinds { enqueue.yield(Pending(kind: kind, containerID: containerID, podID: podID, at: at)) }
  }

  /// A new subscriber's stream of events, from now on.
  func subscribe() -> (id: UInt64, events: AsyncStream<Runtime_V1_ContainerEventResponse>, subscriber: Subscriber) {
    let (stream, continuation) = AsyncStream.makeStream(
      of: Runtime_V1_ContainerEventResponse.self, bufferingPolicy: .bufferingOldest(bufferSize))
    let subscriber = Subscriber(continuation)
    let id = state.withLock { state -> UInt64? in
      guard !state.closed else { return nil }
      state.nextID += 1
      state.subscribers[state.nextID] = subscriber
      return state.nextID
    }
    guard let id else {
      continuation.finish()
      return (0, stream, subscriber)
    }
    continuation.onTermination = { [weak self] _ in self?.unsubscribe(id) }
    return (id, stream, subscriber)
  }

  func unsubscribe(_ id: UInt64) {
    _ = state.withLock { $0.subscribers.removeValue(forKey: id) }
  }

  var subscriberCount: Int { state.withLock { $0.subscribers.count } }

  /// Ends every subscription (shutdown: the streams must not hold the server open).
  func close() {
    let subscribers = state.withLock { state -> [Subscriber] in
      state.closed = true
      defer { state.subscribers = [:] }
      return Array(state.subscribers.values)
    }
    subscribers.forEach { $0.continuation.finish() }
    enqueue.finish()
  }

  /// The dispatcher: builds each event once (nil skips it) and fans it out in order.
  func run(build: (Pending) async -> Runtime_V1_ContainerEventResponse?) async {
    for await pending in queue {
      guard state.withLock({ !$0.subscribers.isEmpty }) else { continue }
      guard let event = await build(pending) else { continue }
      let subscribers = state.withLock { Array($0.subscribers) }
      for (id, subscriber) in subscribers {
        switch subscriber.continuation.yield(event) {
        case .enqueued: continue
        case .dropped:
          unsubscribe(id)
          subscriber.drop()
        case .terminated: unsubscribe(id)
        @unknown default: continue
        }
      }
    }
  }
}
