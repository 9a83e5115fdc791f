import CrispCore

/// Checks on what frontd asks of netd: every string here ends up in a path, a
/// hostname or a /proc/sys write.
enum PodValidation {
  static func podID(_ id: String) throws(CrispError) {
    guard id.utf8.count == 64, id.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) })
    else {
      throw CrispError(.invalidArgument, "pod ID must be 64 lower-case hex characters, got \"\(id.prefix(80))\"")
    }
  }

  /// Pod name, namespace and UID go into CNI_ARGS (`K=V;K=V`): a ';' or '=' there
  /// would add arguments of the caller's choosing (host-local honours `IP=`).
  static func cniArgument(_ what: String, _ value: String) throws(CrispError) {
    guard value.utf8.count <= 253,
      value.utf8.allSatisfy({
        isAlphanumeric($0) || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "_")
      })
    else {
      throw CrispError(
        .invalidArgument, "invalid \(what) \"\(value.prefix(80))\": letters, digits, '-', '.' and '_' only")
    }
  }

  /// RFC 1123 host name as the kernel takes it (at most 64 bytes).
  static func hostname(_ name: String) throws(CrispError) {
    guard name.utf8.count <= 64,
      name.utf8.allSatisfy({ $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: ".") || isAlphanumeric($0) })
    else {
      throw CrispError(.invalidArgument, "invalid hostname \"\(name.prefix(80))\"")
    }
  }

  /// Turns a sysctl name (`net.ipv4.ip_forward`, or the slash form for names with
  /// dots in them, `net/ipv4/conf/eth0.100/forwarding`) into its path under
  /// /proc/sys, refusing what is not namespaced in the pod's own namespaces.
  static func sysctlPath(_ name: String, hostNetwork: Bool, hostIPC: Bool) throws(CrispError) -> String {
    let path = name.contains("/") ? name : String(name.map { $0 == "." ? "/" : $0 })
    let parts = path.split(separator: "/", omittingEmptySubsequences: false)
    guard !parts.isEmpty, !parts.contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }),
      path.utf8.allSatisfy({ isAlphanumeric($0) || "_-./".utf8.contains($0) })
    else {
      throw CrispError(.invalidArgument, "invalid sysctl name \"\(name.prefix(120))\"")
    }
    let ipc =
      path.hasPrefix("kernel/shm") || path.hasPrefix("kernel/msg") || path == "kernel/sem"
      || path.hasPrefix("fs/mqueue/")
    if path.hasPrefix("net/") {
      guard !hostNetwork else {
        throw CrispError(.invalidArgument, "sysctl \(name) needs the pod's own network namespace (hostNetwork is set)")
      }
    } else if ipc {
      guard !hostIPC else {
        throw CrispError(.invalidArgument, "sysctl \(name) needs the pod's own IPC namespace (hostIPC is set)")
      }
    } else {
      throw CrispError(
        .invalidArgument,
        "sysctl \(name) is not namespaced: only net.*, kernel.shm*, kernel.msg*, kernel.sem and fs.mqueue.* can be set for a pod"
      )
    }
    return path
  }

  private static func isAlphanumeric(_ byte: UInt8) -> Bool {
    (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
      || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
  }
}
