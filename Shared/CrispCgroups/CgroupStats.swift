/// Memory of a cgroup, as kubelet (cAdvisor) defines it.
public struct MemoryStats: Sendable, Equatable {
  /// Everything charged to the cgroup (v2 `memory.current`, v1 `memory.usage_in_bytes`).
  public var usage: UInt64
  /// usage − inactive file pages (v1 `total_inactive_file`), at least 0: what the
  /// kernel could not simply drop, and what kubelet evicts on.
  public var workingSet: UInt64
  /// Anonymous and swap cache memory (v2 `anon`, v1 `total_rss`).
  public var rss: UInt64
  public var pageFaults: UInt64
  public var majorPageFaults: UInt64
  /// The limit; nil when unlimited.
  public var limit: UInt64?
  /// Swap in use (v2 `memory.swap.current`, v1 memsw usage − usage); nil without swap accounting.
  public var swapUsage: UInt64?
  /// Swap limit (v2 `memory.swap.max`; v1 memsw limit − memory limit); nil when unlimited.
  public var swapLimit: UInt64?

  public init(
    usage: UInt64, workingSet: UInt64, rss: UInt64, pageFaults: UInt64, majorPageFaults: UInt64, limit: UInt64?,
    swapUsage: UInt64? = nil, swapLimit: UInt64? = nil
  ) {
    self.usage = usage
    self.workingSet = workingSet
    self.rss = rss
    self.pageFaults = pageFaults
    self.majorPageFaults = majorPageFaults
    self.limit = limit
    self.swapUsage = swapUsage
    self.swapLimit = swapLimit
  }

  /// limit − working set, when limited.
  public var available: UInt64? { limit.map { $0 > workingSet ? $0 - workingSet : 0 } }
}

/// One reading of a cgroup. A part whose files cannot be read is nil.
public struct CgroupSample: Sendable, Equatable {
  /// Cumulative CPU time of every task, in nanoseconds.
  public var cpuUsageNanoseconds: UInt64?
  public var memory: MemoryStats?
  /// Tasks (processes and threads) in the cgroup.
  public var processes: UInt64?

  public init(cpuUsageNanoseconds: UInt64? = nil, memory: MemoryStats? = nil, processes: UInt64? = nil) {
    self.cpuUsageNanoseconds = cpuUsageNanoseconds
    self.memory = memory
    self.processes = processes
  }

  /// Sums of several cgroups (a pod's containers, when the pod has no cgroup of its own).
  public static func sum(_ samples: [CgroupSample]) -> CgroupSample {
    var total = CgroupSample()
    for sample in samples {
      if let cpu = sample.cpuUsageNanoseconds { total.cpuUsageNanoseconds = (total.cpuUsageNanoseconds ?? 0) &+ cpu }
      if let count = sample.processes { total.processes = (total.processes ?? 0) + count }
      if let memory = sample.memory {
        var sum =
          total.memory ?? MemoryStats(usage: 0, workingSet: 0, rss: 0, pageFaults: 0, majorPageFaults: 0, limit: nil)
        sum.usage += memory.usage
        sum.workingSet += memory.workingSet
        sum.rss += memory.rss
        sum.pageFaults += memory.pageFaults
        sum.majorPageFaults += memory.majorPageFaults
        if let swap = memory.swapUsage { sum.swapUsage = (sum.swapUsage ?? 0) + swap }
        total.memory = sum
      }
    }
    return total
  }
}

extension ContainerCgroup {
  /// Reads CPU, memory and task count from the cgroup files (a handful of small reads).
  public func sample() -> CgroupSample {
    CgroupSample(cpuUsageNanoseconds: cpuUsage(), memory: memoryStats(), processes: processCount())
  }

  /// v2 `cpu.stat` `usage_usec`; v1 `cpuacct.usage` (nanoseconds).
  public func cpuUsage() -> UInt64? {
    guard let cpu else { return nil }
    switch version {
    case .v2: return CgroupFiles.keyed(CgroupFiles.read(cpu + "/cpu.stat"))["usage_usec"].map { $0 &* 1000 }
    case .v1: return CgroupFiles.number(cpu + "/cpuacct.usage")
    }
  }

  public func memoryStats() -> MemoryStats? {
    guard let memory else { return nil }
    switch version {
    case .v2:
      guard let usage = CgroupFiles.number(memory + "/memory.current") else { return nil }
      let stat = CgroupFiles.keyed(CgroupFiles.read(memory + "/memory.stat"))
      let inactive = stat["inactive_file"] ?? 0
      return MemoryStats(
        usage: usage, workingSet: usage > inactive ? usage - inactive : 0, rss: stat["anon"] ?? 0,
        pageFaults: stat["pgfault"] ?? 0, majorPageFaults: stat["pgmajfault"] ?? 0,
        limit: CgroupFiles.number(memory + "/memory.max"),
        swapUsage: CgroupFiles.number(memory + "/memory.swap.current"),
        swapLimit: CgroupFiles.number(memory + "/memory.swap.max"))
    case .v1:
      guard let usage = CgroupFiles.number(memory + "/memory.usage_in_bytes") else { return nil }
      let stat = CgroupFiles.keyed(CgroupFiles.read(memory + "/memory.stat"))
      let inactive = stat["total_inactive_file"] ?? stat["inactive_file"] ?? 0
      let limit = CgroupFiles.number(memory + "/memory.limit_in_bytes").flatMap(Self.v1Limit)
      var swapUsage: UInt64? = nil
      var swapLimit: UInt64? = nil
      if let both = CgroupFiles.number(memory + "/memory.memsw.usage_in_bytes") {
        swapUsage = both > usage ? both - usage : 0
        if let bothLimit = CgroupFiles.number(memory + "/memory.memsw.limit_in_bytes").flatMap(Self.v1Limit),
          let limit
        {
          swapLimit = bothLimit > limit ? bothLimit - limit : 0
        }
      }
      return MemoryStats(
        usage: usage, workingSet: usage > inactive ? usage - inactive : 0,
        rss: stat["total_rss"] ?? stat["rss"] ?? 0, pageFaults: stat["total_pgfault"] ?? stat["pgfault"] ?? 0,
        majorPageFaults: stat["total_pgmajfault"] ?? stat["pgmajfault"] ?? 0, limit: limit, swapUsage: swapUsage,
        swapLimit: swapLimit)
    }
  }

  /// v1 shows "no limit" as the largest page-aligned counter (9223372036854771712 with
  /// 4 KiB pages): anything from 2^62 up counts as unlimited.
  static func v1Limit(_ value: UInt64) -> UInt64? { value >= 1 << 62 ? nil : value }

  /// `pids.current`, else the lines of `cgroup.procs` in the memory or CPU cgroup.
  public func processCount() -> UInt64? {
    if let pids, let count = CgroupFiles.number(pids + "/pids.current") { return count }
    guard let directory = memory ?? cpu, let procs = CgroupFiles.read(directory + "/cgroup.procs") else { return nil }
    return UInt64(procs.split(separator: "\n").count)
  }
}
