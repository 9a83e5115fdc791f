import CCrispSys
import CrispCore

#if canImport(Glibc)
  import Glibc
#endif

/// prctl and friends that Glibc's Swift overlay hides.
public enum ProcessControl {
  /// Orphaned descendants are re-parented to this process (shimd reaps its container).
  public static func setChildSubreaper(_ on: Bool = true) throws(CrispError) {
    guard crisp_set_child_subreaper(on ? 1 : 0) == 0 else { throw lastError("PR_SET_CHILD_SUBREAPER") }
  }

  public static func isChildSubreaper() throws(CrispError) -> Bool {
    var on: Int32 = 0
    guard crisp_get_child_subreaper(&on) == 0 else { throw lastError("PR_GET_CHILD_SUBREAPER") }
    return on != 0
  }

  public static func setNoNewPrivileges() throws(CrispError) {
    guard crisp_set_no_new_privs() == 0 else { throw lastError("PR_SET_NO_NEW_PRIVS") }
  }

  public static var noNewPrivileges: Bool { crisp_get_no_new_privs() == 1 }

  /// A pipe whose both ends close on exec.
  public static func pipe() throws(CrispError) -> (read: Int32, write: Int32) {
    var fds: [Int32] = [-1, -1]
    guard crisp_pipe2_cloexec(&fds) == 0 else { throw lastError("pipe2") }
    return (fds[0], fds[1])
  }

  /// The absolute path of this process's executable, whatever the working directory and
  /// argv[0] were (`make run` starts the daemons as `.build/release/...`), and whether
  /// the file has been replaced or removed since it was executed (an upgrade).
  public static var executable: (path: String, replaced: Bool)? {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard count > 0 else { return nil }
    let link = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard link.hasPrefix("/") else { return nil }
    let deleted = " (deleted)"
    return link.hasSuffix(deleted) ? (String(link.dropLast(deleted.count)), true) : (link, false)
  }

  /// The directory of this process's executable: where its sibling executables are, also
  /// after an upgrade replaced them all.
  public static var executableDirectory: String? {
    executable.map { String($0.path[..<$0.path.lastIndex(of: "/")!]) }.map { $0.isEmpty ? "/" : $0 }
  }

  static func lastError(_ call: String) -> CrispError {
    CrispError(.internal, "\(call): \(Files.errnoText())")
  }
}
