import CrispCore
import CrispLinux

/// runc run directly by frontd: only to clean up after a shim that died.
enum ChildProcessRunner {
  static func runc(_ runtime: RuntimeContext, _ arguments: [String]) async throws(CrispError) -> ChildProcess.Output {
    try await ChildProcess.run(
      path: runtime.config.frontd.runtimePath, arguments: ["--root", runtime.paths.runRoot + "/runc"] + arguments,
      environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"], timeoutMs: 30_000)
  }
}
