import CrispCore
import CrispLinux

/// The OCI runtime and umount, run by crisp-launcher for frontd: only to clean up after
/// a shim that died.
enum ChildProcessRunner {
  /// Detaches a root filesystem a dead shim left mounted; best effort.
  static func unmount(_ runtime: RuntimeContext, _ path: String) async {
    _ = try? await runtime.launcher.run(
      path: RuntimeContext.umountPath, arguments: ["--lazy", path], environment: [:], timeoutMs: 10_000)
  }

  static func runtime(
    _ runtime: RuntimeContext, handler: String, _ arguments: [String]
  ) async throws(CrispError) -> ChildProcess.Output {
    guard let path = runtime.config.frontd.runtimePath(handler: handler) else {
      throw CrispError(.failedPrecondition, "runtime handler \"\(handler)\" is no longer configured")
    }
    return try await runtime.launcher.run(
      path: path, arguments: ["--root", runtime.runtimeRoot(handler: handler)] + arguments,
      environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"], timeoutMs: 30_000)
  }
}
