import CCrispSys
import CrispCore
import CrispIPC

#if canImport(Glibc)
  import Glibc
#endif

/// Interface counters of a pod's network namespace, for the CRI's pod stats. netd owns
/// the namespaces (frontd's seccomp filter forbids setns): a short-lived thread enters
/// the pinned namespace and reads `/proc/thread-self/net/dev`, which shows the
/// reading thread's namespace (`/sys/class/net` would show the namespace sysfs was
/// mounted in). Pods have no process of their own to read `/proc/<pid>/net/dev` from
/// (the namespaces are pinned by bind mounts), so this also works for a pod whose
/// containers have all exited.
struct PodNetworkCounters: Sendable {
  let store: PodNetworkStore
  let pinner: NamespacePinner

  func read(_ podID: String) throws(CrispError) -> PodNetworkStats.Response {
    try PodValidation.podID(podID)
    guard let record = try store.load(podID) else {
      throw CrispError(.notFound, "netd knows no pod \(podID)")
    }
    let now = WallClock.nowNanoseconds()
    let netns = record.namespaces.network
    // Host network (no namespace of its own), or a namespace gone after a reboot.
    guard !record.hostNetwork, !netns.isEmpty, NamespacePinner.isPinned(netns) else {
      return .init(timestamp: now, interfaces: [])
    }
    let text = try Self.readInNamespace(netns, file: "/proc/thread-self/net/dev")
    let interfaces = InterfaceCounters.parse(procNetDev: text).filter { $0.name != "lo" }
    let ifName = record.runtime?.ifName ?? "eth0"
    return .init(
      timestamp: now,
      interfaces: interfaces.filter { $0.name == ifName } + interfaces.filter { $0.name != ifName })
  }

  static func readInNamespace(_ netns: String, file: String) throws(CrispError) -> String {
    var buffer = [CChar](repeating: 0, count: 64 << 10)
    var error: Int32 = 0
    var step: Int32 = 0
    let count = buffer.withUnsafeMutableBufferPointer {
      crisp_read_in_netns(netns, file, $0.baseAddress, $0.count, &error, &step)
    }
    guard count >= 0 else {
      let what = ["start a thread", "open", "enter", "read", "read"][Int(min(max(step, 0), 4))]
      throw CrispError(
        .internal, "cannot \(what) the network namespace \(netns) (\(file)): \(Files.errnoText(error))")
    }
    return buffer.withUnsafeBufferPointer { raw in
      String(decoding: UnsafeRawBufferPointer(start: raw.baseAddress, count: count), as: UTF8.self)
    }
  }
}
