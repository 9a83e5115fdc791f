import CCrispSys
import CrispCore
import CrispIPC
import Logging

/// Methods only the tests use, served only by a daemon started with `--test-hooks`
/// (a hidden flag, never in the units; a daemon started without it answers them as
/// unknown methods). Today one: `debug.syscall`, which proves from inside each daemon's
/// process that its seccomp filter refuses what it should.
public enum TestHooks {
  /// The hidden command-line flag that turns them on.
  public static let flag = "test-hooks"

  public static func register(in router: inout IPCRouter, logger: Logger) {
    logger.warning("test hooks on (--test-hooks): debug.syscall is served; never use this in production")
    router.register(DebugSyscall.self) { request in
      let response = try probe(request.call)
      // debug: the reload tests watch this line appear with the level.
      logger.debug(
        "debug.syscall",
        metadata: ["call": "\(response.call)", "result": "\(response.result)", "errno": "\(response.errnoName)"])
      return response
    }
  }

  /// Makes the named call (see CCrispSys/debug_probe.c for the harmless arguments).
  public static func probe(_ call: String) throws(CrispError) -> DebugSyscall.Response {
    // Names come from a client: only a short ASCII token reaches C.
    guard !call.isEmpty, call.utf8.count <= 32, call.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
      throw CrispError(.invalidArgument, "debug.syscall: bad call name")
    }
    var result = 0
    let error = crisp_debug_probe(call, &result)
    guard error >= 0 else {
      throw CrispError(
        .invalidArgument, "debug.syscall: unknown call '\(call)' (known: \(calls.joined(separator: ", ")))")
    }
    return DebugSyscall.Response(
      call: call, result: Int64(result), errno: error, errnoName: String(cString: crisp_errno_name(error)))
  }

  /// Every call `debug.syscall` knows.
  public static let calls = [
    "ptrace", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf",
    "perf_event_open", "reboot", "io_uring_setup", "swapon", "swapoff", "pivot_root", "mount", "umount2", "setns",
    "unshare",
    "socket:packet", "socket:bluetooth", "socket:netlink", "socket:inet",
  ]
}
