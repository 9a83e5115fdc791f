#if canImport(Glibc)
  import Glibc
#endif

/// Wall-clock and monotonic readings without Foundation (shimd links this).
public enum WallClock {
  /// Nanoseconds since the Unix epoch, the unit CRI uses for timestamps.
  public static func nowNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
  }
}

public enum MonotonicClock {
  /// Milliseconds on CLOCK_MONOTONIC, for deadlines.
  public static func milliseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
  }
}
