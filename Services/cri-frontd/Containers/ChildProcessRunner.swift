import CrispCore
import CrispLinux

/// The OCI runtime run directly by frontd: only to clean up after a shim that died.
enum ChildProcessRunner {
  static func runtime(
    _ runtime: RuntimeContext, handler: String, _ arguments: [String]
  ) async throws(CrispError) -> ChildProcess.Output {
    guard let path = runtime.config.frontd.runtimePath(handler: handler) else {
      throw CrispError(.failedPrecondition, "runtime handler \"\(handler)\" is no longer configured")
    }
    return try await ChildProcess.run(
      path: path, arguments: ["--root", runtime.runtimeRoot(handler: handler)] + arguments,
      environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"], timeoutMs: 30_000)
  }
}
