/// CPU usage in nano-cores (core-nanoseconds per second) over the interval between two
/// readings of a cumulative counter: what kubelet shows as a container's CPU usage.
public struct CPURate: Sendable, Equatable {
  /// The reading the next rate is measured from.
  public var usageNanoseconds: UInt64
  /// Monotonic time of that reading, in nanoseconds.
  public var time: UInt64
  /// The rate measured at the last step; nil before there were two readings.
  public var nanoCores: UInt64?

  public init(usageNanoseconds: UInt64, time: UInt64) {
    self.usageNanoseconds = usageNanoseconds
    self.time = time
  }

  /// Readings closer together than this keep the previous rate: two pollers
  /// (kubelet, crictl) must not turn each other's intervals into noise.
  public static let minimumIntervalNanoseconds: UInt64 = 1_000_000_000

  /// Takes a new reading; answers the rate over the interval since the kept one.
  public mutating func update(usageNanoseconds usage: UInt64, time now: UInt64) -> UInt64? {
    guard now > time else { return nanoCores }
    if usage < usageNanoseconds {
      // The counter went back (a new cgroup under the same key): start over.
      self = CPURate(usageNanoseconds: usage, time: now)
      return nil
    }
    let elapsed = now - time
    guard elapsed >= Self.minimumIntervalNanoseconds else { return nanoCores }
    let used = usage - usageNanoseconds
    let (product, overflow) = used.multipliedReportingOverflow(by: 1_000_000_000)
    nanoCores = overflow ? UInt64((Double(used) / Double(elapsed)) * 1e9) : product / elapsed
    usageNanoseconds = usage
    time = now
    return nanoCores
  }
}
