import CrispCore
import CrispIPC

#if canImport(Glibc)
  import Glibc
#endif

/// What a daemon says about itself in its health answer.
public struct DaemonIdentity: Sendable {
  public let name: String
  private let startedAt: timespec

  public init(name: String) {
    self.name = name
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    startedAt = ts
  }

  public var uptimeSeconds: Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec - startedAt.tv_sec) + Double(now.tv_nsec - startedAt.tv_nsec) / 1e9
  }

  public func health(ready: Bool = true, reason: String? = nil, message: String? = nil) -> Health.Response {
    Health.Response(
      daemon: name, version: CrispVersion.string, pid: getpid(), uptimeSeconds: uptimeSeconds,
      ready: ready, reason: reason, message: message)
  }
}
