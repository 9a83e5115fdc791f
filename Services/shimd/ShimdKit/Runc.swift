import CCrispSys
import CrispCore
import CrispLinux

#if canImport(FoundationEssentials)
  import FoundationEssentials
#else
  import Foundation
#endif
#if canImport(Glibc)
  import Glibc
#endif

/// Runs the OCI runtime (runc) for one container. Every run goes through the
/// supervisor, which reaps it; runc gets a minimal environment (no NOTIFY_SOCKET,
/// which runc would hand to the container).
struct Runc: Sendable {
  let path: String
  let root: String
  let containerID: String
  let systemdCgroup: Bool
  let supervisor: Supervisor

  static let environment = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]

  var globalArguments: [String] { ["--root", root] + (systemdCgroup ? ["--systemd-cgroup"] : []) }

  struct Result: Sendable {
    var status: Int32
    var output: String
    var succeeded: Bool { status == 0 }
    var exitCode: Int32 { WaitStatus.exitCode(status) }
  }

  /// Runs `runc <global> <arguments>` with stdin on /dev/null, collecting stdout and
  /// stderr together; a runc that hangs past `timeoutMs` is killed.
  func run(_ arguments: [String], timeoutMs: Int64 = 60_000) async throws(CrispError) -> Result {
    let null = try Files.openDevNull()
    let pipe: (read: Int32, write: Int32)
    do {
      pipe = try ProcessControl.pipe()
    } catch {
      close(null)
      throw error
    }
    let pid: pid_t
    do {
      pid = try supervisor.spawn(
        path, globalArguments + arguments, environment: Self.environment, stdin: null, stdout: pipe.write,
        stderr: pipe.write)
    } catch {
      close(null)
      close(pipe.read)
      close(pipe.write)
      throw error
    }
    close(null)
    close(pipe.write)
    let output = await OutputCollector.collect(
      [pipe.read], process: supervisor.processFD(pid), limit: 1 << 20, timeoutMs: timeoutMs, graceMs: 1_000
    ) {
      kill(-pid, SIGKILL)
    }
    if output.timedOut { kill(-pid, SIGKILL) }
    let status = await supervisor.wait(pid)
    let text = String(decoding: output.streams[0], as: UTF8.self)
    if output.timedOut {
      throw CrispError(
        .deadlineExceeded, "runc \(arguments.first ?? "") did not finish within \(timeoutMs) ms: \(text)")
    }
    return Result(status: status, output: text)
  }

  /// Runs runc and throws its output when it fails.
  @discardableResult
  func check(_ arguments: [String], timeoutMs: Int64 = 60_000) async throws(CrispError) -> Result {
    let result = try await run(arguments, timeoutMs: timeoutMs)
    guard result.succeeded else {
      throw CrispError(
        .internal,
        "runc \(arguments.first ?? "") failed (exit \(result.exitCode)): \(Self.trimmed(result.output))")
    }
    return result
  }

  /// The runtime keeps state for this container: its directory under `--root` (where
  /// runc and crun keep `state.json` / `status`; `runc create` refuses an id whose
  /// directory exists). A stat, where `runc state` took 15 to 40 ms of every create.
  var hasState: Bool {
    var info = stat()
    return stat(root + "/" + containerID, &info) == 0
  }

  /// Whether runc knows the container (`runc state` succeeds).
  func exists() async throws(CrispError) -> Bool {
    try await run(["state", containerID], timeoutMs: 30_000).succeeded
  }

  static func trimmed(_ text: String) -> String {
    var out = Substring(text)
    while let last = out.last, last == "\n" || last == " " { out = out.dropLast() }
    return String(out)
  }

  /// The error messages runc wrote to its JSON log (`--log-format json`).
  static func errors(inLog path: String) -> String {
    guard let text = Files.text(path) else { return "" }
    struct Entry: Decodable {
      var level: String?
      var msg: String?
    }
    var messages: [String] = []
    for line in text.split(separator: "\n") {
      guard let entry = try? JSONDecoder().decode(Entry.self, from: Data(line.utf8)),
        let message = entry.msg, entry.level == "error" || entry.level == "fatal"
      else { continue }
      messages.append(message)
    }
    return messages.joined(separator: "; ")
  }
}
