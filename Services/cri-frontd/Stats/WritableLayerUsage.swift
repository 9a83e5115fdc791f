import CrispCore
import Dispatch
import Foundation
import Synchronization

/// Bytes and inodes of containers' writable layers (the overlay upper directory imaged
/// made for each). Counting means walking the tree, so a result is kept for `ttl` and
/// shared: kubelet polls every few seconds, and a walk of a big layer must not run once
/// per call. Walks run one at a time on a queue of their own, off the async executor,
/// and concurrent callers for one container wait for the same walk.
final class WritableLayerUsage: Sendable {
  struct Usage: Sendable, Equatable {
    var bytes: UInt64
    var inodes: UInt64
    /// Wall-clock nanoseconds of the walk.
    var timestamp: Int64
  }

  private struct Entry {
    var usage: Usage
    var measured: ContinuousClock.Instant
  }

  let ttl: Duration
  private let cache = Mutex<[String: Entry]>([:])
  private let walks = Mutex<[String: Task<Usage, Never>]>([:])
  private static let queue = DispatchQueue(label: "crisp.writable-layer", qos: .utility)

  init(ttl: Duration = .seconds(5)) { self.ttl = ttl }

  func usage(containerID: String, upperDir: String) async -> Usage {
    let now = ContinuousClock.now
    if let entry = cache.withLock({ $0[containerID] }), now - entry.measured < ttl { return entry.usage }
    let task = walks.withLock { walks -> Task<Usage, Never> in
      if let running = walks[containerID] { return running }
      let task = Task {
        let usage = await withCheckedContinuation { continuation in
          Self.queue.async { continuation.resume(returning: Self.walk(upperDir)) }
        }
        self.cache.withLock { $0[containerID] = Entry(usage: usage, measured: ContinuousClock.now) }
        self.walks.withLock { _ = $0.removeValue(forKey: containerID) }
        return usage
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

  /// Allocated bytes (st_blocks) and inodes of a tree, like `du`: not following
  /// symlinks, not crossing into other file systems, hard links counted once.
  static func walk(_ root: String) -> Usage {
    var bytes: UInt64 = 0
    var inodes: UInt64 = 0
    var seenLinks = Set<UInt64>()
    var st = stat()
    guard lstat(root, &st) == 0 else { return Usage(bytes: 0, inodes: 0, timestamp: WallClock.nowNanoseconds()) }
    let device = st.st_dev
    var pending = [root]
    bytes += UInt64(st.st_blocks) * 512
    inodes += 1
    while let directory = pending.popLast() {
      guard let dir = opendir(directory) else { continue }
      while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
          String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
        }
        if name == "." || name == ".." { continue }
        let path = directory + "/" + name
        guard lstat(path, &st) == 0 else { continue }
        let isDirectory = (st.st_mode & S_IFMT) == S_IFDIR
        if !isDirectory && st.st_nlink > 1 {
          guard seenLinks.insert(UInt64(st.st_ino)).inserted else { continue }
        }
        bytes += UInt64(st.st_blocks) * 512
        inodes += 1
        if isDirectory && st.st_dev == device { pending.append(path) }
      }
      closedir(dir)
    }
    return Usage(bytes: bytes, inodes: inodes, timestamp: WallClock.nowNanoseconds())
  }
}
