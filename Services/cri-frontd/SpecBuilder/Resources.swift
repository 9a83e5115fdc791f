import CRIAPI
import CrispCore
import CrispOCI

extension SpecBuilder {
  /// The cgroup limits of `LinuxContainerResources` (0 and "" mean "not set"), as CRI-O
  /// applies them:
  /// - CPU: shares, CFS quota (-1 = none) and period, cpuset CPUs and memory nodes.
  /// - Memory: the limit (at least `SpecOptions.minimumMemoryLimit`); swap (memory plus
  ///   swap, -1 = unlimited) is the CRI's swap limit when given (not below the memory
  ///   limit), else the memory limit itself (no swap), and only with swap accounting.
  /// - Hugepage limits with a hugetlb controller, `unified` on the unified hierarchy
  ///   only (runc refuses it on v1); otherwise left out with a note.
  /// - Pids: `SpecOptions.pidsLimit` (the CRI has no per-container value).
  static func resources(
    _ resources: Runtime_V1_LinuxContainerResources, options: SpecOptions, notes: inout [String]
  ) throws(CrispError) -> RuntimeSpec.LinuxResources {
    let field = "linux.resources"
    var result = RuntimeSpec.LinuxResources()

    var cpu = RuntimeSpec.LinuxCPU()
    if resources.cpuShares < 0 {
      throw CrispError(.invalidArgument, "\(field).cpu_shares: \(resources.cpuShares) is negative")
    }
    if resources.cpuShares > 0 { cpu.shares = UInt64(resources.cpuShares) }
    if resources.cpuQuota < -1 {
      throw CrispError(.invalidArgument, "\(field).cpu_quota: \(resources.cpuQuota) is neither -1 nor positive")
    }
    if resources.cpuQuota != 0 { cpu.quota = resources.cpuQuota }
    if resources.cpuPeriod < 0 {
      throw CrispError(.invalidArgument, "\(field).cpu_period: \(resources.cpuPeriod) is negative")
    }
    if resources.cpuPeriod > 0 { cpu.period = UInt64(resources.cpuPeriod) }
    if !resources.cpusetCpus.isEmpty {
      guard isCPUList(resources.cpusetCpus) else {
        throw CrispError(.invalidArgument, "\(field).cpuset_cpus \"\(resources.cpusetCpus)\" is not a CPU list")
      }
      cpu.cpus = resources.cpusetCpus
    }
    if !resources.cpusetMems.isEmpty {
      guard isCPUList(resources.cpusetMems) else {
        throw CrispError(.invalidArgument, "\(field).cpuset_mems \"\(resources.cpusetMems)\" is not a node list")
      }
      cpu.mems = resources.cpusetMems
    }
    if cpu != RuntimeSpec.LinuxCPU() { result.cpu = cpu }

    let limit = resources.memoryLimitInBytes
    let swap = resources.memorySwapLimitInBytes
    if limit < 0 {
      throw CrispError(.invalidArgument, "\(field).memory_limit_in_bytes: \(limit) is negative")
    }
    if limit > 0 {
      guard limit >= options.minimumMemoryLimit else {
        throw CrispError(
          .invalidArgument,
          "\(field).memory_limit_in_bytes: \(limit) is below the minimum of \(options.minimumMemoryLimit) bytes")
      }
      var memory = RuntimeSpec.LinuxMemory(limit: limit)
      if swap != 0 && swap != -1 && swap < limit {
        throw CrispError(
          .invalidArgument,
          "\(field).memory_swap_limit_in_bytes: \(swap) is below memory_limit_in_bytes (\(limit))")
      }
      if options.cgroup.memorySwap {
        memory.swap = swap != 0 ? swap : limit
      } else if swap != 0 && swap != limit {
        notes.append("memory swap limit \(swap) left out: the node has no swap accounting")
      }
      result.memory = memory
    } else if swap != 0 {
      notes.append("memory swap limit \(swap) left out: it needs a memory limit")
    }

    var hugepages: [RuntimeSpec.LinuxHugepageLimit] = []
    for (index, entry) in resources.hugepageLimits.enumerated() {
      guard isPageSize(entry.pageSize) else {
        throw CrispError(
          .invalidArgument, "\(field).hugepage_limits[\(index)].page_size \"\(entry.pageSize)\": expected like 2MB, 1GB"
        )
      }
      hugepages.append(.init(pageSize: entry.pageSize, limit: entry.limit))
    }
    if !hugepages.isEmpty {
      if options.cgroup.hugetlb {
        result.hugepageLimits = hugepages
      } else {
        notes.append("hugepage limits left out: the node has no hugetlb cgroup controller")
      }
    }

    if !resources.unified.isEmpty {
      for key in resources.unified.keys where key.isEmpty || key.contains("/") || !key.contains(".") {
        throw CrispError(.invalidArgument, "\(field).unified: \"\(key)\" is not a cgroup v2 file name")
      }
      if options.cgroup.unifiedHierarchy {
        result.unified = resources.unified
      } else {
        notes.append(
          "unified cgroup v2 resources left out on a cgroup v1 node: "
            + resources.unified.keys.sorted().joined(separator: ", ")
        )
      }
    }

    if let pids = options.pidsLimit, pids > 0 { result.pids = .init(limit: pids) }
    return result
  }

  /// The process's oom_score_adj: the CRI value (-1000...1000), raised to the runtime's
  /// own (without CAP_SYS_RESOURCE a process may not lower it), with a note then.
  static func oomScoreAdj(_ requested: Int64, minimum: Int, notes: inout [String]) throws(CrispError) -> Int {
    guard (-1000...1000).contains(requested) else {
      throw CrispError(.invalidArgument, "linux.resources.oom_score_adj: \(requested) is outside -1000...1000")
    }
    let value = Int(requested)
    if value < minimum {
      notes.append("oom_score_adj \(value) raised to \(minimum), the runtime's own (a process cannot go below it)")
      return minimum
    }
    return value
  }

  /// `0-3,5,7-8`.
  static func isCPUList(_ text: String) -> Bool {
    text.split(separator: ",", omittingEmptySubsequences: false).allSatisfy { item in
      let bounds = item.split(separator: "-", omittingEmptySubsequences: false)
      guard (1...2).contains(bounds.count), let low = UInt(bounds[0]) else { return false }
      return bounds.count == 1 || UInt(bounds[1]).map { $0 >= low } == true
    }
  }

  /// `<digits><K|M|G|T|P>B`.
  static func isPageSize(_ text: String) -> Bool {
    guard text.count >= 3, text.hasSuffix("B") else { return false }
    let body = text.dropLast()
    guard let unit = body.last, "KMGTP".contains(unit) else { return false }
    let digits = body.dropLast()
    return !digits.isEmpty && digits.allSatisfy(\.isASCII) && digits.allSatisfy(\.isNumber)
  }
}
