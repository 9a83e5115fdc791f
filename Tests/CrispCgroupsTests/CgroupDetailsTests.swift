import CrispCgroups
import Foundation
import Testing

/// `details()` (the figures only ListPodSandboxMetrics needs) on trees written as the
/// kernel lays them out, one per cgroup version, in a temporary directory.
@Suite struct CgroupDetailsTests {
  static func tree(_ files: [String: String]) throws -> String {
    let root = NSTemporaryDirectory() + "crisp-cgroup-details-\(UUID().uuidString)"
    for (path, text) in files {
      let full = root + "/" + path
      try FileManager.default.createDirectory(
        atPath: String(full[..<full.lastIndex(of: "/")!]), withIntermediateDirectories: true)
      try text.write(toFile: full, atomically: true, encoding: .utf8)
    }
    return root
  }

  @Test func v2() throws {
    let root = try Self.tree([
      "c/cpu.stat":
        "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\nnr_periods 40\nnr_throttled 7\nthrottled_usec 350000\n",
      "c/cpu.max": "50000 100000\n",
      "c/cpu.weight": "39\n",
      "c/memory.stat": "anon 1000\nfile 52428800\nfile_mapped 4096\n",
      "c/memory.events": "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
      "c/memory.peak": "99999\n",
      "c/memory.low": "0\n",
      "c/cgroup.procs": "10\n11\n",
      "c/pids.current": "5\n",
      "c/pids.max": "max\n",
    ])
    defer { try? FileManager.default.removeItem(atPath: root) }
    let dir = root + "/c"
    let details = ContainerCgroup(version: .v2, cpu: dir, memory: dir, pids: dir).details()
    #expect(details.cpuUserNanoseconds == 2_000_000_000)
    #expect(details.cpuSystemNanoseconds == 1_000_000_000)
    #expect(details.cfsPeriods == 40 && details.cfsThrottledPeriods == 7)
    #expect(details.cfsThrottledNanoseconds == 350_000_000)
    #expect(details.cpuQuota == 50_000 && details.cpuPeriod == 100_000)
    #expect(details.cpuShares == 998, "runc writes weight 39 for 1024 shares; back, integer division loses a little")
    #expect(details.cache == 52_428_800 && details.mappedFile == 4096)
    #expect(details.failcnt == 3 && details.oomKills == 1)
    #expect(details.maxUsage == 99_999 && details.memoryReservation == 0)
    #expect(details.processes == 2 && details.threads == 5)
    #expect(details.threadsMax == nil, "\"max\" is no limit")
  }

  @Test func v1WithoutQuotaAndMissingFiles() throws {
    let root = try Self.tree([
      "cpu/c/cpuacct.stat": "user 250\nsystem 50\n",
      "cpu/c/cpu.stat": "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n",
      "cpu/c/cpu.shares": "1024\n",
      "cpu/c/cpu.cfs_quota_us": "-1\n",
      "cpu/c/cpu.cfs_period_us": "100000\n",
      "memory/c/memory.stat": "cache 10\nmapped_file 2\ntotal_cache 8192\ntotal_mapped_file 4096\n",
      "memory/c/memory.failcnt": "0\n",
      "memory/c/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
      "memory/c/memory.max_usage_in_bytes": "73400320\n",
      "memory/c/memory.soft_limit_in_bytes": "9223372036854771712\n",
      "memory/c/cgroup.procs": "1\n",
    ])
    defer { try? FileManager.default.removeItem(atPath: root) }
    let details = ContainerCgroup(version: .v1, cpu: root + "/cpu/c", memory: root + "/memory/c", pids: nil).details()
    #expect(details.cpuUserNanoseconds == 2_500_000_000, "USER_HZ ticks")
    #expect(details.cpuSystemNanoseconds == 500_000_000)
    #expect(details.cfsPeriods == 0 && details.cfsThrottledNanoseconds == 0)
    #expect(details.cpuShares == 1024 && details.cpuPeriod == 100_000)
    #expect(details.cpuQuota == nil, "-1 is no quota")
    #expect(details.cache == 8192 && details.mappedFile == 4096, "the hierarchy's totals")
    #expect(details.failcnt == 0 && details.oomKills == 2)
    #expect(details.maxUsage == 73_400_320)
    #expect(details.memoryReservation == nil, "the v1 'unlimited' value")
    #expect(details.processes == 1)
    #expect(details.threads == nil && details.threadsMax == nil, "no pids cgroup")
  }
}
