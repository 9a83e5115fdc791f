import CCrispSys
import CSeccomp
import CrispCore
import CrispLinux
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// The system calls a daemon refuses, and the socket families it may open.
public struct SeccompProfile: Sendable {
  public var denied: [String]
  public var socketFamilies: Set<Int32>

  /// No daemon debugs, loads kernel code, reboots, swaps or pivots its root. None uses
  /// io_uring either, whose operations (IORING_OP_SOCKET...) no seccomp filter sees.
  public static let common = [
    "ptrace", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf",
    "perf_event_open", "reboot", "swapon", "swapoff", "pivot_root", "io_uring_setup",
  ]
  static let inetFamilies: Set<Int32> = [Int32(AF_UNIX), Int32(AF_INET), Int32(AF_INET6), Int32(AF_NETLINK)]

  /// imaged talks to registries; it never enters or makes namespaces.
  public static let imaged = SeccompProfile(denied: common + ["setns", "unshare"], socketFamilies: inetFamilies)
  /// cri-frontd mounts nothing and enters no namespace (its launcher, started before
  /// this filter, does what needs that); it needs no netlink.
  public static let frontd = SeccompProfile(
    denied: common + ["mount", "umount2", "setns", "unshare"],
    socketFamilies: [Int32(AF_UNIX), Int32(AF_INET), Int32(AF_INET6)])
  /// netd makes and enters namespaces and mounts them; its CNI plugins inherit this.
  public static let netd = SeccompProfile(denied: common, socketFamilies: inetFamilies)
}

/// Each daemon's privilege drop: capabilities at start (before any thread exists, see
/// CCrispSys/startup_caps.c), a seccomp filter once its sockets are bound.
public enum DaemonPrivileges {
  /// Ensures the process holds only `keep` (and no_new_privs). The first call
  /// re-executes the daemon so that the reduction happens while it is single-threaded;
  /// in the new image it returns the sets now in force. `nil` keeps everything
  /// (a debugging choice: `capabilities = ["ALL"]`).
  public static func restrictCapabilities(to keep: Set<Capability>?) throws(CrispError) -> ProcessCapabilities {
    guard let keep else { return try ProcessCapabilities.current() }
    if let result = crisp_startup_caps_result() {
      let text = String(cString: result)
      guard text == "ok" else {
        throw CrispError(.permissionDenied, "cannot reduce capabilities at start: \(text)")
      }
      unsetenv("CRISP_CAPS_REEXEC")
      return try ProcessCapabilities.current()
    }
    guard getenv("CRISP_CAPS_REEXEC") == nil else {
      throw CrispError(.internal, "capabilities were not reduced after re-executing (start-up hook missing)")
    }
    setenv("CRISP_KEEP_CAPS", keep.map { String($0.value) }.sorted().joined(separator: ","), 1)
    setenv("CRISP_CAPS_REEXEC", "1", 1)
    let arguments = CommandLine.arguments
    // The resolved path, not /proc/self/exe: the kernel names a process after the file
    // it executes, and `ps`, `pgrep cri-frontd` and `pidof netd` would show "exe".
    let executable = ProcessControl.executable.flatMap { $0.replaced ? nil : $0.path } ?? "/proc/self/exe"
    _ = withCMutableStrings(arguments) { argv in execv(executable, argv) }
    throw CrispError(.internal, "cannot re-execute to drop capabilities: \(Files.errnoText())")
  }

  public enum Action: String, Sendable, CaseIterable {
    case errno, kill, log
  }

  /// Installs `profile` on every thread: each denied call and each socket family not
  /// listed fails with EPERM (or kills the process, or is only logged), and the kernel
  /// logs what it refuses.
  public static func installSeccomp(_ profile: SeccompProfile, action: Action) throws(CrispError) {
    let deny: SeccompFilter.Action =
      switch action {
      case .errno: .errno(EPERM)
      case .kill: .killProcess
      case .log: .log
      }
    var filter = try SeccompFilter(defaultAction: .allow)
    for name in profile.denied { try filter.add(deny, syscall: name) }
    for family in Int32(0)..<Int32(AF_MAX) where !profile.socketFamilies.contains(family) {
      try filter.add(deny, syscall: "socket", argument0Equals: UInt64(family))
    }
    try filter.enableKernelLogging()
    try filter.load(synchronizeThreads: true)
  }

  /// One line for the log: the sets in force and the filter.
  public static func describe(_ caps: ProcessCapabilities) -> String {
    "effective=[\(caps.effective.names)] bounding=[\(caps.bounding.names)] no_new_privs=\(ProcessControl.noNewPrivileges)"
  }
}
