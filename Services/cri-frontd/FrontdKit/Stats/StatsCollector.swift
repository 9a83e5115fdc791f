import CRIAPI
import CrispCgroups
import CrispCore
import CrispIPC
import CrispOCI
import Foundation
import Synchronization

/// What frontd keeps between stats calls: where each container's cgroup and writable
/// layer are (read once from its bundle), the last CPU reading of each container and
/// pod (for nano-cores), and the writable-layer cache. A stats call then costs a few
/// small cgroup file reads per container and no IPC but for pod network counters and,
/// once per TTL, writable layers.
final class StatsCollector: Sendable {
  /// A container's fixed facts, from its bundle's `config.json` and `rootfs.json`.
  struct Facts: Sendable {
    var cgroupsPath: String
    var upperDir: String?
    var cgroup: ContainerCgroup?
  }

  private let facts = Mutex<[String: Facts]>([:])
  private let rates = Mutex<[String: CPURate]>([:])
  private let node = Mutex<(mounts: CgroupMounts, own: ProcessCgroups?)?>(nil)
  let writableLayers = WritableLayerUsage()

  /// The node's hierarchies and frontd's own cgroups (anchors of relative paths), read once.
  private func hierarchy() -> (mounts: CgroupMounts, own: ProcessCgroups?)? {
    if let known = node.withLock({ $0 }) { return known }
    guard let mounts = CgroupMounts.current() else { return nil }
    let found = (mounts: mounts, own: ProcessCgroups.read(pid: getpid()))
    node.withLock { $0 = found }
    return found
  }

  func facts(for containerID: String, bundle: ContainerBundle) -> Facts {
    if let known = facts.withLock({ $0[containerID] }) { return known }
    var found = Facts(cgroupsPath: "", upperDir: nil)
    if let data = FileManager.default.contents(atPath: bundle.layout.config),
      let spec = try? JSONDecoder().decode(RuntimeSpec.self, from: data)
    {
      found.cgroupsPath = spec.linux?.cgroupsPath ?? ""
    }
    if let data = FileManager.default.contents(atPath: bundle.directory + "/rootfs.json"),
      let rootfs = try? JSONDecoder().decode(RootfsMount.self, from: data)
    {
      found.upperDir = rootfs.upperDir
    }
    facts.withLock { $0[containerID] = found }
    return found
  }

  /// The container's cgroup reading; the location is found again when the cgroup
  /// vanished (runc makes it at create; a deleted container has none).
  func sample(containerID: String, facts: Facts) -> CgroupSample? {
    guard let (mounts, own) = hierarchy() else { return nil }
    if let cgroup = facts.cgroup {
      let sample = cgroup.sample()
      if sample.memory != nil || sample.cpuUsageNanoseconds != nil { return sample }
    }
    let cgroup = ContainerCgroup.locate(cgroupsPath: facts.cgroupsPath, mounts: mounts, own: own)
    guard !cgroup.isEmpty else { return nil }
    self.facts.withLock { $0[containerID]?.cgroup = cgroup }
    return cgroup.sample()
  }

  /// A pod's own cgroup (`cgroup_parent`, as kubelet sets it), when it exists.
  func podSample(cgroupParent: String) -> CgroupSample? {
    guard let (mounts, own) = hierarchy(), let path = ContainerCgroup.parentPath(cgroupParent) else { return nil }
    let cgroup = ContainerCgroup.locate(cgroupsPath: path, mounts: mounts, own: own)
    return cgroup.isEmpty ? nil : cgroup.sample()
  }

  /// Nano-cores of `key` (a container ID, or `pod/<id>`) from its cumulative counter.
  func nanoCores(_ key: String, usage: UInt64) -> UInt64? {
    let now = monotonicNanoseconds()
    return rates.withLock { rates in
      guard var rate = rates[key] else {
        rates[key] = CPURate(usageNanoseconds: usage, time: now)
        return nil
      }
      let value = rate.update(usageNanoseconds: usage, time: now)
      rates[key] = rate
      return value
    }
  }

  /// Forgets containers and pods that no longer exist.
  func keep(containers: Set<String>, pods: Set<String>) {
    facts.withLock { facts in
      for id in facts.keys where !containers.contains(id) { facts.removeValue(forKey: id) }
    }
    rates.withLock { rates in
      for key in rates.keys where !containers.contains(key) && !pods.contains(String(key.dropFirst(4))) {
        rates.removeValue(forKey: key)
      }
    }
    writableLayers.keep(only: containers)
  }
}

/// CLOCK_MONOTONIC in nanoseconds: intervals between CPU readings.
func monotonicNanoseconds() -> UInt64 {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
