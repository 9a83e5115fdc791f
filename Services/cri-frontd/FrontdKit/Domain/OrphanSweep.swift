import CrispCore
import Logging
import Synchronization

/// Has imaged release the snapshots of containers this frontd does not know, and netd
/// tear down the networks of pods it does not know: what a create or removal left
/// when its undo could not reach them (a peer was down, or frontd died).
final class OrphanSweep: Sendable {
  let sandboxes: Sandboxes
  let containers: Containers
  let logger: Logger
  /// When (wall clock, ns) the last sweep got both peers' answers; 0 before the first
  /// (shown in Status's verbose info).
  let sweptAt = Atomic<Int64>(0)

  init(sandboxes: Sandboxes, containers: Containers, logger: Logger) {
    self.sandboxes = sandboxes
    self.containers = containers
    self.logger = logger
  }

  /// One sweep. Records are listed after `listedAt`, and the peers keep what they made
  /// after it: a RunPodSandbox or CreateContainer under way records its pod or
  /// container before it asks. False when either peer did not answer.
  @discardableResult
  func sweep() async -> Bool {
    let listedAt = WallClock.nowNanoseconds()
    var answered = true
    do throws(CrispError) {
      let released = try await containers.images.releaseOrphanedSnapshots(
        keeping: containers.records.all().map(\.id), listedAt: listedAt)
      if !released.isEmpty {
        logger.info("imaged released snapshots no container owns", metadata: ["containers": "\(released)"])
      }
    } catch {
      logger.debug("orphaned snapshots not checked", metadata: ["error": "\(error)"])
      answered = false
    }
    do throws(CrispError) {
      let tornDown = try await sandboxes.network.tearDownOrphans(
        keeping: sandboxes.records.all().map(\.id), listedAt: listedAt)
      if !tornDown.isEmpty {
        logger.info("netd tore down networks no pod owns", metadata: ["pods": "\(tornDown)"])
      }
    } catch {
      logger.debug("orphaned pod networks not checked", metadata: ["error": "\(error)"])
      answered = false
    }
    if answered { sweptAt.store(WallClock.nowNanoseconds(), ordering: .relaxed) }
    return answered
  }

  /// A sweep every second until both peers have answered, then every ten minutes,
  /// until cancelled.
  func run() async {
    while !Task.isCancelled {
      let answered = await sweep()
      do { try await Task.sleep(for: answered ? .seconds(600) : .seconds(1)) } catch { return }
    }
  }
}
