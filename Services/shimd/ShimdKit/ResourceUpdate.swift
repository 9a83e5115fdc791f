import CrispCore
import CrispIPC

#if canImport(Glibc)
  import Glibc
#endif

extension ContainerShim {
  /// `runc update --resources <file>`: new cgroup limits for the live container, on
  /// either cgroup version (runc writes the files its cgroup manager knows). The
  /// request's JSON goes to a private file in the bundle, removed afterwards.
  func updateResources(_ request: ShimUpdateResources.Request) async throws(CrispError) -> Empty {
    try request.validate()
    let phase = try currentPhase()
    guard phase == .created || phase == .running else {
      throw CrispError(
        .failedPrecondition, "container \(settings.id) is \(phase.rawValue): its resources cannot change")
    }
    let file = bundle.path + "/.update-\(nextExecNumber()).json"
    defer { unlink(file) }
    try Files.writeAtomically(file, Array(request.resources.utf8), mode: 0o600)
    let result = try await runc.run(["update", "--resources", file, settings.id], timeoutMs: 30_000)
    guard result.succeeded else {
      let output = Runc.trimmed(result.output)
      // runc refuses values the kernel refuses (a limit below current usage on v1...).
      throw CrispError(.invalidArgument, "runc update failed (exit \(result.exitCode)): \(output)")
    }
    logger.info("resources updated", metadata: ["resources": "\(request.resources)"])
    return Empty()
  }
}
