/// Test hooks: methods a daemon serves only when started with `--test-hooks` (the
/// end-to-end tests do; a daemon started otherwise answers them as unknown methods).

/// Makes one system call the daemon's seccomp filter should refuse, from the daemon's
/// own process, with arguments the kernel refuses anyway (so it changes nothing even
/// without a filter), and answers how it failed.
public enum DebugSyscall: IPCMethod {
  public static let name = "debug.syscall"
  public struct Request: Codable, Sendable, Equatable {
    /// ptrace, kexec_load, kexec_file_load, init_module, finit_module, delete_module, bpf,
    /// perf_event_open, reboot, io_uring_setup, swapon, swapoff, pivot_root, mount, umount2, setns,
    /// unshare, socket:packet, socket:bluetooth, socket:netlink, socket:inet.
    public var call: String
    public init(call: String) { self.call = call }
  }
  public struct Response: Codable, Sendable, Equatable {
    public var call: String
    /// The call's return value (-1 when it failed).
    public var result: Int64
    /// errno after the call; 0 when it succeeded.
    public var errno: Int32
    /// The errno's name, e.g. "EPERM".
    public var errnoName: String

    public init(call: String, result: Int64, errno: Int32, errnoName: String) {
      self.call = call
      self.result = result
      self.errno = errno
      self.errnoName = errnoName
    }
  }
}
