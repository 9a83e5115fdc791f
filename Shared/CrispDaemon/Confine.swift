import CrispCore
import CrispLinux
import Logging

/// Installs the daemon's seccomp filter (unless `seccomp` is off) and logs what the
/// daemon now runs with. Called once its sockets are bound, before it serves.
public func confine(
  seccomp: Bool, action: String, caps: ProcessCapabilities, profile: SeccompProfile, logger: Logger
) throws(CrispError) {
  if seccomp {
    try DaemonPrivileges.installSeccomp(profile, action: DaemonPrivileges.Action(rawValue: action) ?? .errno)
  }
  logger.info(
    "privileges",
    metadata: [
      "capabilities": "\(caps.effective.names)", "bounding": "\(caps.bounding.names)",
      "no_new_privs": "\(ProcessControl.noNewPrivileges)",
      "seccomp": seccomp
        ? "\(action): \(profile.denied.joined(separator: ",")); sockets \(profile.socketFamilies.sorted())" : "off",
    ])
}
