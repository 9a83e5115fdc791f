import CrispCore
import CrispTestSupport
import Foundation
import Logging
import Streaming
import Synchronization
import XCTest

/// Counts what the server asked the backend to do, around a ProcessBackend: "nothing runs"
/// means no call reached the backend at all.
final class CountingBackend: StreamingBackend {
  let inner: ProcessBackend
  let execs = Mutex(0)
  let attaches = Mutex(0)
  let forwards = Mutex(0)

  init(_ inner: ProcessBackend) {
    self.inner = inner
  }

  var calls: Int { execs.withLock { $0 } + attaches.withLock { $0 } + forwards.withLock { $0 } }

  func exec(containerID: String, command: [String], options: StreamOptions) async throws -> Int32 {
    execs.withLock { $0 += 1 }
    return try await inner.exec(containerID: containerID, command: command, options: options)
  }

  func attach(containerID: String, options: StreamOptions) async throws -> Int32 {
    attaches.withLock { $0 += 1 }
    return try await inner.attach(containerID: containerID, options: options)
  }

  func portForward(podID: String, port: UInt16) async throws -> Int32 {
    forwards.withLock { $0 += 1 }
    return try await inner.portForward(podID: podID, port: port)
  }
}

/// What a fixture client printed (one JSON object) and how it exited.
struct ClientResult {
  var status: Int32
  var json: [String: Any]
  var stderr: String

  subscript(key: String) -> Any? { json[key] }
  func int(_ key: String) -> Int? { (json[key] as? NSNumber)?.intValue }
  func string(_ key: String) -> String? { json[key] as? String }
  func bool(_ key: String) -> Bool? { (json[key] as? NSNumber)?.boolValue }
  /// A nested object by path, e.g. `object("channels", "1")`.
  func object(_ path: String...) -> [String: Any]? {
    var current: Any? = json
    for key in path { current = (current as? [String: Any])?[key] }
    return current as? [String: Any]
  }
  var description: String {
    let text = (try? JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])).map {
      String(decoding: $0, as: UTF8.self)
    }
    return "exit \(status): \((text ?? "?").prefix(3000)) stderr: \(stderr.suffix(2000))"
  }
}

/// The streaming server (real, in this process) with a ProcessBackend, the Python clients of
/// Fixtures (websocket-client, the independent SPDY client) and a TCP echo server. Every
/// process a test starts is SIGKILLed in tearDown, whatever happened.
class StreamingServerTestCase: XCTestCase {
  static let python = "/usr/bin/python3"

  var processBackend: ProcessBackend!
  var backend: CountingBackend!
  var server: StreamingServer!
  var directory: String { processBackend.directory }
  private let started = Mutex<[Process]>([])

  override func setUp() async throws {
    processBackend = try ProcessBackend()
    backend = CountingBackend(processBackend)
  }

  override func tearDown() async throws {
    let processes = started.withLock { list in
      defer { list.removeAll() }
      return list
    }
    for process in processes { process.killIfRunning() }
    await server?.stop()
    server = nil
    processBackend?.cleanUp()
  }

  /// Starts the server with `adjust` applied to a test configuration; returns its base URL.
  @discardableResult
  func startServer(_ adjust: (inout StreamingServerConfiguration) -> Void = { _ in }) async throws -> String {
    var configuration = StreamingServerConfiguration()
    adjust(&configuration)
    server = StreamingServer(configuration: configuration, backend: backend, logger: Logger(label: "streaming-test"))
    return try await server.start()
  }

  /// A URL for `request` (a fresh single-use token).
  func url(_ request: StreamRequest, webSocket: Bool = false) throws -> String {
    let url = try server.url(for: request)
    guard webSocket else { return url }
    return url.replacingOccurrences(of: "http://", with: "ws://").replacingOccurrences(of: "https://", with: "wss://")
  }

  /// Starts a fixture script; it is killed in tearDown if still running.
  func startFixture(_ script: String, _ arguments: [String], output: String? = nil) throws -> Process {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: Self.python)
    process.arguments = [ProcessBackend.fixtures + "/" + script] + arguments
    if let output {
      FileManager.default.createFile(atPath: output, contents: nil)
      FileManager.default.createFile(atPath: output + ".err", contents: nil)
      process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
      process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: output + ".err"))
    }
    process.standardInput = FileHandle.nullDevice
    try process.run()
    started.withLock { $0.append(process) }
    return process
  }

  private let outputs = Mutex(0)

  /// Runs a fixture client to its end (killed after `timeout`) and reads the JSON it printed.
  func runClient(_ script: String, _ arguments: [String], timeout: Duration = .seconds(120)) async throws
    -> ClientResult
  {
    let number = outputs.withLock { value in
      value += 1
      return value
    }
    let output = "\(directory)/client\(number).out"
    let process = try startFixture(script, arguments, output: output)
    return try await finish(process, output: output, timeout: timeout)
  }

  /// Starts a fixture client in the background; `finish` collects it.
  func startClient(_ script: String, _ arguments: [String]) throws -> (Process, String) {
    let number = outputs.withLock { value in
      value += 1
      return value
    }
    let output = "\(directory)/client\(number).out"
    return (try startFixture(script, arguments, output: output), output)
  }

  func finish(_ process: Process, output: String, timeout: Duration = .seconds(120)) async throws -> ClientResult {
    do {
      try await waitUntil(
        "\(process.arguments?.first ?? "client") finishes", timeout: timeout, every: .milliseconds(10)
      ) {
        !process.isRunning
      }
    } catch {
      process.killIfRunning()
      let err = readWholeFile(output + ".err")
      XCTFail("client timed out: \(readWholeFile(output)) \(err)")
      throw error
    }
    process.waitUntilExit()
    let text = readWholeFile(output)
    let err = readWholeFile(output + ".err")
    let line = text.split(separator: "\n").last.map(String.init) ?? ""
    guard let json = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else {
      XCTFail("client printed no JSON (exit \(process.terminationStatus)): \(text) \(err)")
      return ClientResult(status: process.terminationStatus, json: [:], stderr: err)
    }
    return ClientResult(status: process.terminationStatus, json: json, stderr: err)
  }

  /// Starts the TCP echo server; returns its port.
  func startEchoServer() async throws -> UInt16 {
    let portFile = directory + "/echo-port"
    _ = try startFixture("echo_server.py", [portFile])
    try await waitUntil("the echo server listens", timeout: .seconds(10)) {
      FileManager.default.fileExists(atPath: portFile)
    }
    return UInt16(try String(contentsOfFile: portFile, encoding: .utf8))!
  }

  /// A file of `size` random bytes; returns its path and sha256 (hex).
  func randomFile(_ name: String, size: Int) throws -> (path: String, sha256: String) {
    let path = directory + "/" + name
    var bytes = [UInt8](repeating: 0, count: size)
    var generator = SystemRandomNumberGenerator()
    for index in stride(from: 0, to: size, by: 8) {
      withUnsafeBytes(of: generator.next() as UInt64) { random in
        for offset in 0..<min(8, size - index) { bytes[index + offset] = random[offset] }
      }
    }
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    let (status, output) = try runProgram("/usr/bin/sha256sum", [path])
    XCTAssertEqual(status, 0, output)
    return (path, String(output.prefix(64)))
  }

  /// Decodes a v4/v5 status (JSON `Status`); returns (status, exit code cause or nil).
  func decodeStatus(_ text: String?) -> (status: String?, exitCode: String?) {
    guard let text, let json = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
      return (nil, nil)
    }
    let causes = ((json["details"] as? [String: Any])?["causes"] as? [[String: Any]]) ?? []
    let exitCode = causes.first { $0["reason"] as? String == "ExitCode" }?["message"] as? String
    return (json["status"] as? String, exitCode)
  }

  /// Fake shims still running (each runs one exec or attach).
  var runningSessions: Int { processBackend.running }
}
