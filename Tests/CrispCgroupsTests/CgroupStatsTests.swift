import CrispCgroups
import Testing

/// The cgroup readers on fixture trees laid out as the kernel does (v2 unified, v1 with
/// one hierarchy per controller and a nested own cgroup), and on the node's real one.
@Suite struct CgroupStatsTests {
  static let fixtures: String = {
    let file = #filePath
    return String(file[..<file.lastIndex(of: "/")!]) + "/Fixtures"
  }()

  static func v2Mounts() throws -> CgroupMounts {
    let root = fixtures + "/v2/cgroup"
    let mountinfo = """
      22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
      30 22 0:26 / \(root) rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
      """
    return try #require(CgroupMounts.parse(mountinfo: mountinfo, cgroupRoot: root))
  }

  static func v1Mounts() throws -> CgroupMounts {
    let root = fixtures + "/v1"
    let mountinfo = """
      31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
      33 31 0:30 / \(root)/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
      35 31 0:32 / \(root)/memory rw,relatime - cgroup cgroup rw,memory
      39 31 0:36 / \(root)/pids rw,relatime - cgroup cgroup rw,pids
      40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
      41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
      """
    return try #require(CgroupMounts.parse(mountinfo: mountinfo, cgroupRoot: "/sys/fs/cgroup"))
  }

  @Test func mountinfoParsing() throws {
    let v2 = try Self.v2Mounts()
    #expect(v2.version == .v2)
    #expect(v2.unified == Self.fixtures + "/v2/cgroup")
    // Hybrid: the v2 hierarchy beside the v1 ones is not the cgroup root: v1 it is.
    let v1 = try Self.v1Mounts()
    #expect(v1.version == .v1)
    #expect(v1.controllers["memory"] == Self.fixtures + "/v1/memory")
    #expect(v1.controllers["cpuacct"] == Self.fixtures + "/v1/cpuacct")
    #expect(v1.controllers["name=systemd"] == nil && v1.controllers["rw"] == nil)
    // Co-mounted controllers and escaped mount points.
    let comounted = try #require(
      CgroupMounts.parse(
        mountinfo: "32 31 0:29 / /sys/fs/cgroup/cpu,cpu\\040acct rw - cgroup cgroup rw,cpu,cpuacct"))
    #expect(comounted.controllers["cpu"] == "/sys/fs/cgroup/cpu,cpu acct")
    #expect(comounted.controllers["cpuacct"] == "/sys/fs/cgroup/cpu,cpu acct")
    #expect(CgroupMounts.parse(mountinfo: "22 1 8:1 / / rw - ext4 /dev/sda1 rw") == nil)
  }

  @Test func procCgroupParsing() {
    let v1 = ProcessCgroups.parse("9:name=systemd:/\n4:memory:/process_api/x\n2:cpu,cpuacct:/a\n0::/\n")
    #expect(v1.path(for: "memory", version: .v1) == "/process_api/x")
    #expect(v1.path(for: "cpuacct", version: .v1) == "/a")
    #expect(v1.path(for: "memory", version: .v2) == "/")
    let v2 = ProcessCgroups.parse("0::/kubepods.slice/x.scope\n")
    #expect(v2.path(for: "pids", version: .v2) == "/kubepods.slice/x.scope")
  }

  @Test func pathsAsRuncResolvesThem() {
    #expect(ContainerCgroup.relativePath(cgroupsPath: "/crisp/crisp-1", own: "/own") == "/crisp/crisp-1")
    #expect(ContainerCgroup.relativePath(cgroupsPath: "/a/../../b/./c", own: nil) == "/b/c")
    #expect(ContainerCgroup.relativePath(cgroupsPath: "crisp-1", own: "/process_api/x") == "/process_api/x/crisp-1")
    #expect(ContainerCgroup.relativePath(cgroupsPath: "crisp-1", own: nil) == nil)
    #expect(
      ContainerCgroup.relativePath(cgroupsPath: "kubepods-besteffort-pod1.slice:crisp:abc", own: nil)
        == "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/crisp-abc.scope")
    #expect(ContainerCgroup.relativePath(cgroupsPath: ":crisp:abc", own: nil) == "/system.slice/crisp-abc.scope")
    #expect(ContainerCgroup.relativePath(cgroupsPath: "bad--name.slice:crisp:abc", own: nil) == nil)
    #expect(ContainerCgroup.relativePath(cgroupsPath: "", own: "/") == nil)
    #expect(ContainerCgroup.parentPath("kubepods-pod1.slice") == "/kubepods.slice/kubepods-pod1.slice")
    #expect(ContainerCgroup.parentPath("/kubepods/pod1") == "/kubepods/pod1")
    #expect(ContainerCgroup.parentPath("") == nil)
  }

  @Test func v2StatsOfASystemdScope() throws {
    let cgroup = ContainerCgroup.locate(
      cgroupsPath: "kubepods-burstable.slice:crisp:abc", mounts: try Self.v2Mounts(), own: nil)
    let scope = Self.fixtures + "/v2/cgroup/kubepods.slice/kubepods-burstable.slice/crisp-abc.scope"
    #expect(cgroup == ContainerCgroup(version: .v2, cpu: scope, memory: scope, pids: scope))
    let sample = cgroup.sample()
    #expect(sample.cpuUsageNanoseconds == 2_500_000_000)
    #expect(sample.processes == 3)
    let memory = try #require(sample.memory)
    #expect(memory.usage == 104_857_600)
    #expect(memory.workingSet == 104_857_600 - 31_457_280)
    #expect(memory.rss == 62_914_560)
    #expect(memory.pageFaults == 12345 && memory.majorPageFaults == 67)
    #expect(memory.limit == 209_715_200)
    #expect(memory.available == 209_715_200 - (104_857_600 - 31_457_280))
    #expect(memory.swapUsage == 0 && memory.swapLimit == nil)
  }

  @Test func v2UnlimitedAndWithoutPidsController() throws {
    let cgroup = ContainerCgroup.locate(cgroupsPath: "/crisp/crisp-def", mounts: try Self.v2Mounts(), own: nil)
    let sample = cgroup.sample()
    #expect(sample.cpuUsageNanoseconds == 10_000)
    // No pids.current: the tasks of cgroup.procs.
    #expect(sample.processes == 1)
    let memory = try #require(sample.memory)
    // inactive_file above usage: working set 0, not an underflow.
    #expect(memory.workingSet == 0)
    #expect(memory.limit == nil && memory.available == nil)
  }

  @Test func v1StatsAcrossHierarchies() throws {
    let mounts = try Self.v1Mounts()
    let cgroup = ContainerCgroup.locate(
      cgroupsPath: "/crisp/crisp-abc", mounts: mounts, own: ProcessCgroups.parse("4:memory:/process_api/own\n"))
    #expect(cgroup.cpu == Self.fixtures + "/v1/cpuacct/crisp/crisp-abc")
    #expect(cgroup.memory == Self.fixtures + "/v1/memory/crisp/crisp-abc")
    let sample = cgroup.sample()
    #expect(sample.cpuUsageNanoseconds == 7_500_000_000)
    #expect(sample.processes == 5)
    let memory = try #require(sample.memory)
    #expect(memory.usage == 73_400_320)
    #expect(memory.workingSet == 73_400_320 - 10_485_760)
    #expect(memory.rss == 52_428_800)
    #expect(memory.pageFaults == 1500 && memory.majorPageFaults == 4)
    #expect(memory.limit == nil, "the v1 'unlimited' value")
    #expect(memory.swapUsage == nil)
  }

  @Test func v1RelativePathBelowANestedOwnCgroup() throws {
    let mounts = try Self.v1Mounts()
    let own = ProcessCgroups.parse("8:pids:/\n4:memory:/process_api/own\n2:cpuacct:/\n")
    let cgroup = ContainerCgroup.locate(cgroupsPath: "crisp-rel", mounts: mounts, own: own)
    #expect(cgroup.memory == Self.fixtures + "/v1/memory/process_api/own/crisp-rel")
    #expect(cgroup.cpu == nil && cgroup.pids == nil, "no such cgroups in those hierarchies")
    let sample = cgroup.sample()
    #expect(sample.cpuUsageNanoseconds == nil)
    #expect(sample.processes == 3)
    let memory = try #require(sample.memory)
    #expect(memory.limit == 67_108_864)
    #expect(memory.swapUsage == 69_206_016 - 1_048_576)
    #expect(memory.swapLimit == 134_217_728 - 67_108_864)
  }

  @Test func processCgroupWinsWhenThePathIsMissing() throws {
    let mounts = try Self.v1Mounts()
    let cgroup = ContainerCgroup.locate(
      cgroupsPath: "/gone", mounts: mounts, own: nil, process: ProcessCgroups.parse("4:memory:/crisp/crisp-abc\n"))
    #expect(cgroup.memory == Self.fixtures + "/v1/memory/crisp/crisp-abc")
    let nothing = ContainerCgroup.locate(cgroupsPath: "/gone", mounts: mounts, own: nil)
    #expect(nothing.isEmpty)
    #expect(nothing.sample() == CgroupSample())
  }

  @Test func sums() {
    let a = CgroupSample(
      cpuUsageNanoseconds: 5,
      memory: MemoryStats(usage: 10, workingSet: 8, rss: 4, pageFaults: 1, majorPageFaults: 0, limit: 100),
      processes: 2)
    let b = CgroupSample(cpuUsageNanoseconds: 7, memory: nil, processes: 1)
    let total = CgroupSample.sum([a, b, a])
    #expect(total.cpuUsageNanoseconds == 17)
    #expect(total.processes == 5)
    #expect(total.memory?.workingSet == 16)
    #expect(total.memory?.limit == nil)
  }

  @Test func cpuRate() {
    var rate = CPURate(usageNanoseconds: 1_000_000_000, time: 10_000_000_000)
    #expect(rate.update(usageNanoseconds: 1_000_000_000, time: 10_100_000_000) == nil, "too soon, no rate yet")
    // Half a core over two seconds.
    #expect(rate.update(usageNanoseconds: 2_000_000_000, time: 12_000_000_000) == 500_000_000)
    // Too soon again: the last rate is kept.
    #expect(rate.update(usageNanoseconds: 9_000_000_000, time: 12_500_000_000) == 500_000_000)
    #expect(rate.update(usageNanoseconds: 4_000_000_000, time: 13_000_000_000) == 2_000_000_000)
    // A counter that goes back starts over.
    #expect(rate.update(usageNanoseconds: 10, time: 14_000_000_000) == nil)
    #expect(rate.update(usageNanoseconds: 1_000_000_010, time: 16_000_000_000) == 500_000_000)
  }

  /// The node's own hierarchy: this process's cgroup reads, whichever version.
  @Test func realNode() throws {
    let mounts = try #require(CgroupMounts.current())
    let own = try #require(ProcessCgroups.read(pid: getpidValue()))
    let path = own.path(for: "memory", version: mounts.version) ?? "/"
    let cgroup = ContainerCgroup.locate(cgroupsPath: path, mounts: mounts, own: own)
    let sample = cgroup.sample()
    let memory = try #require(sample.memory)
    #expect(memory.usage > 0)
    #expect(memory.workingSet <= memory.usage)
    #expect((sample.processes ?? 0) >= 1)
  }
}

#if canImport(Glibc)
  import Glibc
  func getpidValue() -> Int32 { getpid() }
#endif
