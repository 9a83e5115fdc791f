import CCrispSys
import CSeccomp
import CrispCore

#if canImport(Glibc)
  import Glibc
#endif

/// A seccomp filter under construction: a default action plus per-syscall actions.
/// Built and loaded once by the thread that owns it, before a daemon starts serving.
public struct SeccompFilter: ~Copyable {
  public enum Action: Sendable, Equatable {
    case allow
    /// Fails the call with this errno (EPERM by default).
    case errno(Int32)
    case log
    case killProcess

    var raw: UInt32 {
      switch self {
      case .allow: 0x7fff_0000
      case .errno(let value): 0x0005_0000 | (UInt32(bitPattern: value) & 0xffff)
      case .log: 0x7ffc_0000
      case .killProcess: 0x8000_0000
      }
    }
  }

  private let ctx: scmp_filter_ctx

  public init(defaultAction: Action) throws(CrispError) {
    guard let ctx = seccomp_init(defaultAction.raw) else {
      throw CrispError(.internal, "seccomp_init failed")
    }
    self.ctx = ctx
  }

  deinit { seccomp_release(ctx) }

  /// Adds a rule for a syscall by name. A name this kernel or libseccomp does not know
  /// on this architecture is skipped and returned false, so one list serves all kernels.
  @discardableResult
  public mutating func add(_ action: Action, syscall name: String) throws(CrispError) -> Bool {
    let number = seccomp_syscall_resolve_name(name)
    guard number != __NR_SCMP_ERROR else { return false }
    let rv = seccomp_rule_add_array(ctx, action.raw, number, 0, nil)
    guard rv == 0 else {
      throw CrispError(.internal, "seccomp rule for \(name): \(Files.errnoText(-rv))")
    }
    return true
  }

  /// A rule matching only calls whose first argument equals `value` (socket families).
  public mutating func add(_ action: Action, syscall name: String, argument0Equals value: UInt64) throws(CrispError) {
    let number = seccomp_syscall_resolve_name(name)
    guard number != __NR_SCMP_ERROR else { return }
    let rv = crisp_seccomp_rule_arg_eq(UnsafeMutableRawPointer(ctx), action.raw, number, 0, value)
    guard rv == 0 else {
      throw CrispError(.internal, "seccomp rule for \(name)(\(value)): \(Files.errnoText(-rv))")
    }
  }

  /// Asks the kernel to log every call the filter does not allow (audit / kernel log).
  public func enableKernelLogging() throws(CrispError) {
    let rv = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_LOG, 1)
    guard rv == 0 else { throw CrispError(.internal, "seccomp logging: \(Files.errnoText(-rv))") }
  }

  /// Writes the compiled BPF program to a file descriptor (for inspection and tests).
  public func exportBPF(to fd: Int32) throws(CrispError) {
    let rv = seccomp_export_bpf(ctx, fd)
    guard rv == 0 else { throw CrispError(.internal, "seccomp_export_bpf: \(Files.errnoText(-rv))") }
  }

  /// Installs the filter on the calling process (all threads: TSYNC is libseccomp's default off, so
  /// call this before starting threads or set `synchronizeThreads`).
  public func load(synchronizeThreads: Bool = true) throws(CrispError) {
    if synchronizeThreads {
      let rv = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1)
      guard rv == 0 else { throw CrispError(.internal, "seccomp TSYNC: \(Files.errnoText(-rv))") }
    }
    let rv = seccomp_load(ctx)
    guard rv == 0 else { throw CrispError(.permissionDenied, "seccomp_load: \(Files.errnoText(-rv))") }
  }
}
