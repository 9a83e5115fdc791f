import CCrispSys
import CrispCore
import CrispLinux
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// Installs the daemon's seccomp filter (unless `seccomp` is off) and logs what the
/// daemon now runs with. Called once its sockets are bound, before it serves.
public func confine(
  seccomp: Bool, action: DaemonPrivileges.Action, caps: ProcessCapabilities, profile: SeccompProfile, logger: Logger
) throws(CrispError) {
  // Every daemon runs as uid 0, and the kernel lets a process of the same uid whose
  // capabilities include the target's read and write the target's memory
  // (/proc/<pid>/mem, process_vm_writev): any root process could take over frontd,
  // which holds none, and with it the launcher. Not dumpable, only CAP_SYS_PTRACE may.
  guard crisp_set_dumpable(0) == 0, crisp_dumpable_when_crashing() == 0 else {
    throw CrispError(.internal, "PR_SET_DUMPABLE: \(Files.errnoText())")
  }
  // systemd starts services with 1024 descriptors (its hard limit is far higher), and a
  // daemon holds some per container: frontd a socket to each shim and a pidfd on each
  // running container. Raising the soft limit to the hard one needs no privilege.
  var files = rlimit()
  if getrlimit(RLIMIT_NOFILE_CONSTANT, &files) == 0, files.rlim_cur < files.rlim_max {
    files.rlim_cur = files.rlim_max
    _ = setrlimit(RLIMIT_NOFILE_CONSTANT, &files)
  }
  if seccomp {
    try DaemonPrivileges.installSeccomp(profile, action: action)
  }
  logger.info(
    "privileges",
    metadata: [
      "capabilities": "\(caps.effective.names)", "bounding": "\(caps.bounding.names)",
      "no_new_privs": "\(ProcessControl.noNewPrivileges)", "open_files": "\(files.rlim_cur)",
      "dumpable": "\(crisp_get_dumpable() == 1)",
      "seccomp": seccomp
        ? "\(action.rawValue): \(profile.denied.joined(separator: ",")); sockets \(profile.socketFamilies.sorted())"
        : "off",
    ])
}

// Glibc imports RLIMIT_NOFILE as an enum case of __rlimit_resource on Linux.
private let RLIMIT_NOFILE_CONSTANT = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
