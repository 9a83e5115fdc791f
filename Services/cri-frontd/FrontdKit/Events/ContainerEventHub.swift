import CRIAPI
import CrispCore
import CrispIPC
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

  struct Pending: Sendable {
    var kind: Kind
    var containerID: String
    var podID: String
    /// Nanoseconds since the epoch.
    var at: Int64
    /// The container as it was recorded: its status can still be shown when it is
    /// gone by the time the event is built (stopped, then removed at once).
    var record: ContainerRecord?
    /// A stop's exit, as the shim reported it.
    var exit: ShimContainerState?
  }

  /// Events a subscriber may have waiting before it is dropped.
  var bufferSize: Int { subscribers.bufferSize }

  /// The last kind recorded per live container: a container's events only go forward.
  private let last = Mutex<[String: Kind]>([:])
  private let subscribers: Fanout<Runtime_V1_ContainerEventResponse>
  private let queue: AsyncStream<Pending>
  private let enqueue: AsyncStream<Pending>.Continuation

  init(bufferSize: Int = 1024) {
    subscribers = Fanout(bufferSize: bufferSize)
    (queue, enqueue) = AsyncStream.makeStream(of: Pending.self, bufferingPolicy: .unbounded)
  }

  /// Records an event; returns at once. A kind at or before the container's last one
  /// is dropped (a shim's exit reported after frontd already recorded the stop, or
  /// after the removal); a removal of a started container is preceded by its stop, and
  /// a stop whose exit says the container had started by its start.
  func record(
    _ kind: Kind, _ container: ContainerRecord, at: Int64 = WallClock.nowNanoseconds(), exit: ShimContainerState? = nil
  ) {
    let containerID = container.id
    let kinds = self.last.withLock { lastKinds -> [(Kind, Int64)] in
      let last = lastKinds[containerID]
      if let last, kind <= last { return [] }
      var kinds: [(Kind, Int64)] = []
      if kind == .deleted && last == .started { kinds.append((.stopped, at)) }
      // A container that exits at once: its exit can be reported before its start.
      if kind == .stopped && last == .created, let startedAt = exit?.startedAt, startedAt > 0 {
        kinds.append((.started, startedAt))
      }
      kinds.append((kind, at))
      if kind == .deleted {
        lastKinds.removeValue(forKey: containerID)
      } else {
        lastKinds[containerID] = kind
      }
      return kinds
    }
    for (kind, at) in kinds {
      enqueue.yield(
        Pending(
          kind: kind, containerID: containerID, podID: container.podID, at: at, record: container,
          exit: kind == .stopped ? exit : nil))
    }
  }

  /// A new subscriber's stream of events, from now on.
  func subscribe() -> Fanout<Runtime_V1_ContainerEventResponse>.Subscription { subscribers.subscribe() }

  func unsubscribe(_ id: UInt64) { subscribers.unsubscribe(id) }

  /// Ends every subscription (shutdown: the streams must not hold the server open).
  func close() {
    subscribers.close()
    enqueue.finish()
  }

  /// The dispatcher: builds each event once (nil skips it) and fans it out in order.
  func run(build: (Pending) async -> Runtime_V1_ContainerEventResponse?) async {
    for await pending in queue {
      guard subscribers.subscriberCount > 0, let event = await build(pending) else { continue }
      subscribers.publish(event)
    }
  }
}
