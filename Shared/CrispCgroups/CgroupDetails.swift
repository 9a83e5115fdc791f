/// What a cgroup tells beyond `CgroupSample`: the cAdvisor figures kubelet's
/// `/metrics/cadvisor` shows when the runtime serves them (ListPodSandboxMetrics). Read
/// only when metrics are asked for, so the stats calls kubelet makes every few seconds
/// keep their few reads. A part whose file is missing is nil.
public struct CgroupDetails: Sendable, Equatable {
  /// User and system CPU time, in nanoseconds.
  public var cpuUserNanoseconds: UInt64?
  public var cpuSystemNanoseconds: UInt64?
  /// CFS enforcement: elapsed periods, throttled periods, throttled time (nanoseconds).
  public var cfsPeriods: UInt64?
  public var cfsThrottledPeriods: UInt64?
  public var cfsThrottledNanoseconds: UInt64?
  /// Page cache (v2 `file`, v1 `total_cache`) and mapped files.
  public var cache: UInt64?
  public var mappedFile: UInt64?
  /// Peak usage (v1 `memory.max_usage_in_bytes`, v2 `memory.peak` where the kernel has it).
  public var maxUsage: UInt64?
  /// Times usage hit the limit (v1 `memory.failcnt`, v2 `memory.events` `max`).
  public var failcnt: UInt64?
  /// OOM kills in the cgroup (v2 `memory.events` `oom_kill`, v1 `memory.oom_control`).
  public var oomKills: UInt64?
  /// Processes (`cgroup.procs` lines) and tasks (`pids.current`), and the task limit.
  public var processes: UInt64?
  public var threads: UInt64?
  public var threadsMax: UInt64?
  /// The CPU and memory settings, as the cgroup holds them (cAdvisor's `spec`).
  public var cpuShares: UInt64?
  public var cpuQuota: UInt64?
  public var cpuPeriod: UInt64?
  public var memoryReservation: UInt64?

  public init() {}
}

extension ContainerCgroup {
  /// USER_HZ, the unit of v1 `cpuacct.stat` (100 on every Linux architecture kubelet runs on).
  static let userHzNanoseconds: UInt64 = 10_000_000

  public func details() -> CgroupDetails {
    var details = CgroupDetails()
    if let cpu {
      switch version {
      case .v2:
        let stat = CgroupFiles.keyed(CgroupFiles.read(cpu + "/cpu.stat"))
        details.cpuUserNanoseconds = stat["user_usec"].map { $0 &* 1000 }
        details.cpuSystemNanoseconds = stat["system_usec"].map { $0 &* 1000 }
        details.cfsPeriods = stat["nr_periods"]
        details.cfsThrottledPeriods = stat["nr_throttled"]
        details.cfsThrottledNanoseconds = stat["throttled_usec"].map { $0 &* 1000 }
        if let max = CgroupFiles.read(cpu + "/cpu.max") {
          let fields = max.split(whereSeparator: { $0 == " " || $0 == "\n" })
          if fields.count == 2 {
            details.cpuQuota = UInt64(fields[0])
            details.cpuPeriod = UInt64(fields[1])
          }
        }
        // cpu.weight (1–10000) back to shares (2–262144), as runc maps them the other way.
        details.cpuShares = CgroupFiles.number(cpu + "/cpu.weight").map { 2 + (($0 &- 1) &* 262_142) / 9999 }
      case .v1:
        let stat = CgroupFiles.keyed(CgroupFiles.read(cpu + "/cpuacct.stat"))
        details.cpuUserNanoseconds = stat["user"].map { $0 &* Self.userHzNanoseconds }
        details.cpuSystemNanoseconds = stat["system"].map { $0 &* Self.userHzNanoseconds }
        // cpu and cpuacct share one directory on every distribution that mounts them.
        let cfs = CgroupFiles.keyed(CgroupFiles.read(cpu + "/cpu.stat"))
        details.cfsPeriods = cfs["nr_periods"]
        details.cfsThrottledPeriods = cfs["nr_throttled"]
        details.cfsThrottledNanoseconds = cfs["throttled_time"]
        details.cpuShares = CgroupFiles.number(cpu + "/cpu.shares")
        details.cpuQuota = CgroupFiles.number(cpu + "/cpu.cfs_quota_us")  // -1 (none) does not parse: nil
        details.cpuPeriod = CgroupFiles.number(cpu + "/cpu.cfs_period_us")
      }
    }
    if let memory {
      switch version {
      case .v2:
        let stat = CgroupFiles.keyed(CgroupFiles.read(memory + "/memory.stat"))
        details.cache = stat["file"]
        details.mappedFile = stat["file_mapped"]
        let events = CgroupFiles.keyed(CgroupFiles.read(memory + "/memory.events"))
        details.failcnt = events["max"]
        details.oomKills = events["oom_kill"]
        details.maxUsage = CgroupFiles.number(memory + "/memory.peak")
        details.memoryReservation = CgroupFiles.number(memory + "/memory.low")
      case .v1:
        let stat = CgroupFiles.keyed(CgroupFiles.read(memory + "/memory.stat"))
        details.cache = stat["total_cache"] ?? stat["cache"]
        details.mappedFile = stat["total_mapped_file"] ?? stat["mapped_file"]
        details.failcnt = CgroupFiles.number(memory + "/memory.failcnt")
        details.oomKills = CgroupFiles.keyed(CgroupFiles.read(memory + "/memory.oom_control"))["oom_kill"]
        details.maxUsage = CgroupFiles.number(memory + "/memory.max_usage_in_bytes")
        details.memoryReservation = CgroupFiles.number(memory + "/memory.soft_limit_in_bytes").flatMap(Self.v1Limit)
      }
    }
    if let directory = memory ?? cpu ?? pids, let procs = CgroupFiles.read(directory + "/cgroup.procs") {
      details.processes = UInt64(procs.split(separator: "\n").count)
    }
    if let pids {
      details.threads = CgroupFiles.number(pids + "/pids.current")
      details.threadsMax = CgroupFiles.number(pids + "/pids.max")  // "max" does not parse: nil
    }
    return details
  }
}
