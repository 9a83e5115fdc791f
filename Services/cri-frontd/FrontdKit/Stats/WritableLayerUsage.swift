import CrispCore
import Foundation
import Synchronization

/// Bytes and inodes of containers' writable layers, measured by imaged (`image.snapshotUsage`):
/// the walk needs to read directories a container made private, which frontd, holding no
/// capability, cannot. A result is kept for `ttl` and shared: kubelet polls every few
/// seconds, and a walk of a big layer must not run once per call; concurrent callers for
/// one container wait for the same measurement. While imaged cannot answer, the last
/// measurement is given again (its timestamp says how old it is).
final class WritableLayerUsage: Sendable {
  struct Usage: Sendable, Equatable {
    var bytes: UInt64
    var inodes: UInt64
    /// Wall-clock nanoseconds of the measurement.
    var timestamp: Int64
  }

  private struct Entry {
    var usage: Usage
    var measured: ContinuousClock.Instant
  }

  let ttl: Duration
  private let cache = Mutex<[String: Entry]>([:])
  private let walks = Mutex<[String: Task<Usage?, Never>]>([:])

  init(ttl: Duration = .seconds(5)) { self.ttl = ttl }

  /// nil when the container has never been measured and `measure` fails.
  func usage(containerID: String, measure: @escaping @Sendable (String) async -> Usage?) async -> Usage? {
    let now = ContinuousClock.now
    let cached = cache.withLock { $0[containerID] }
    if let cached, now - cached.measured < ttl { return cached.usage }
    let task = walks.withLock { walks -> Task<Usage?, Never> in
      if let running = walks[containerID] { return running }
      let task = Task {
        let usage = await measure(containerID)
        if let usage {
          self.cache.withLock { $0[containerID] = Entry(usage: usage, measured: ContinuousClock.now) }
        }
        self.walks.withLock { _ = $0.removeValue(forKey: containerID) }
        return usage ?? cached?.usage
      }
      walks[containerID] = task
      return task
    }
    return await task.value
  }

  /// Forgets containers not in `live` (removed since).
  func keep(only live: Set<String>) {
    cache.withLock { cache in
      for id in cache.keys where !live.contains(id) { cache.removeValue(forKey: id) }
    }
  }
}
