import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// What a crisp instance under `runRoot` may leave when frontd died before it could
/// remove its pods (shims outlive frontd by design): containers in every runtime root
/// (`<run_root>/runc`, `<run_root>/runtimes/<name>`) are killed and deleted, and the
/// shims SIGKILLed. Mounts and directories are the caller's to remove after this.
public enum RuntimeLeftovers {
  public static func killAll(runRoot: String, runc: String = "/usr/sbin/runc") {
    var roots = [runRoot + "/runc"]
    let handlers = (try? FileManager.default.contentsOfDirectory(atPath: runRoot + "/runtimes")) ?? []
    roots += handlers.map { runRoot + "/runtimes/" + $0 }
    for root in roots where FileManager.default.fileExists(atPath: root) {
      guard let listed = try? runProgram(runc, ["--root", root, "list", "-q"]), listed.status == 0 else { continue }
      for id in listed.output.split(separator: "\n").map(String.init) where !id.isEmpty {
        _ = try? runProgram(runc, ["--root", root, "kill", id, "KILL"])
        _ = try? runProgram(runc, ["--root", root, "delete", "--force", id])
      }
    }
    for pid in shims(runRoot: runRoot) { kill(pid, SIGKILL) }
  }

  /// shimd processes whose command line names `runRoot`.
  public static func shims(runRoot: String) -> [Int32] {
    processIDs { $0.contains("shimd") && $0.contains(runRoot) }
  }
}

/// Processes whose command line (arguments joined by spaces, with a trailing space) matches.
public func processIDs(where matches: (String) -> Bool) -> [Int32] {
  let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
  return entries.compactMap { entry in
    guard let pid = Int32(entry) else { return nil }
    let cmdline = ((try? String(contentsOfFile: "/proc/\(entry)/cmdline", encoding: .utf8)) ?? "")
      .replacingOccurrences(of: "\0", with: " ")
    return matches(cmdline) ? pid : nil
  }
}
