import CrispCore
import CrispTestSupport
import Foundation
import Streaming
import Synchronization

/// A StreamingBackend for the protocol tests: exec and attach run a real local process under
/// Fixtures/fake_shim.py (the session framing, written apart from the server); port forwarding
/// connects to 127.0.0.1 on the host.
final class ProcessBackend: StreamingBackend {
  let directory: String
  private let processes = Mutex<[Process]>([])
  private let counter = Mutex(0)
  /// What the last exec was asked to run.
  let lastExec = Mutex<[String]?>(nil)

  static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    .path

  init() throws {
    directory = try makeTemporaryDirectory(prefix: "crisp-streaming")
  }

  func exec(containerID: String, command: [String], options: StreamOptions) async throws -> Int32 {
    guard containerID != "missing" else { throw CrispError(.notFound, "container missing not found") }
    lastExec.withLock { $0 = command }
    return try await run(command, tty: options.tty)
  }

  func attach(containerID: String, options: StreamOptions) async throws -> Int32 {
    try await run(["sh", "-c", "read line; echo attached:$line"], tty: options.tty)
  }

  func portForward(podID: String, port: UInt16) async throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let result = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    guard result == 0 else {
      let message = String(cString: strerror(errno))
      close(fd)
      throw CrispError(.unavailable, "connect to port \(port) in pod \(podID): \(message)")
    }
    return fd
  }

  private func run(_ command: [String], tty: Bool) async throws -> Int32 {
    let number = counter.withLock { value in
      value += 1
      return value
    }
    let path = "\(directory)/s\(number).sock"
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
    process.arguments = [Self.fixtures + "/fake_shim.py", path, tty ? "tty" : "pipes", "--"] + command
    try process.run()
    processes.withLock { $0.append(process) }
    try await waitUntil("the fake shim listens on \(path)", timeout: .seconds(10)) {
      FileManager.default.fileExists(atPath: path)
    }
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
      for (index, byte) in path.utf8.enumerated() { raw[index] = byte }
    }
    let result = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    guard result == 0 else {
      close(fd)
      throw CrispError(.unavailable, "connect to the fake shim: \(String(cString: strerror(errno)))")
    }
    return fd
  }

  /// The fake shims still running (each exits with its command).
  var running: Int { processes.withLock { $0.filter(\.isRunning).count } }

  /// Exec and attach sessions started so far.
  var started: Int { counter.withLock { $0 } }

  func cleanUp() {
    processes.withLock { list in
      for process in list where process.isRunning { kill(process.processIdentifier, SIGKILL) }
      for process in list { process.waitUntilExit() }
    }
    try? FileManager.default.removeItem(atPath: directory)
  }
}
