import Foundation

/// The directory holding the built executables: the test bundle sits beside them in
/// `.build/<config>/`. `CRISP_BIN_DIR` overrides it.
public func binaryPath(_ name: String) -> String {
  if let dir = ProcessInfo.processInfo.environment["CRISP_BIN_DIR"] { return dir + "/" + name }
  let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
  return URL(fileURLWithPath: exe).deletingLastPathComponent().appendingPathComponent(name).path
}

public func makeTemporaryDirectory(prefix: String) throws -> String {
  // A canonical path: tests compare it with what the kernel reports (mountinfo).
  let base = URL(fileURLWithPath: NSTemporaryDirectory()).standardizedFileURL.resolvingSymlinksInPath().path
  var template = Array((base + "/\(prefix).XXXXXX").utf8CString)
  guard let result = mkdtemp(&template) else {
    throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
  }
  return String(cString: result)
}

public struct TimedOut: Error, CustomStringConvertible {
  let what: String
  public var description: String { "timed out waiting until \(what)" }
}

/// Polls `condition` until it holds; throws when `timeout` passes first.
public func waitUntil(
  _ what: String, timeout: Duration, every interval: Duration = .milliseconds(20),
  _ condition: () async throws -> Bool
) async throws {
  let clock = ContinuousClock()
  let deadline = clock.now + timeout
  while clock.now < deadline {
    if try await condition() { return }
    try await Task.sleep(for: interval)
  }
  if try await condition() { return }
  throw TimedOut(what: what)
}

/// Runs a program to completion and returns its exit status and combined output. A
/// program still running after `timeout` is killed (and reported as status 137), so a
/// daemon that should have refused to start fails the test instead of hanging it.
public func runProgram(
  _ path: String, _ arguments: [String], environment: [String: String]? = nil, timeout: TimeInterval = 60
) throws -> (status: Int32, output: String) {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: path)
  process.arguments = arguments
  if let environment { process.environment = environment }
  let pipe = Pipe()
  process.standardOutput = pipe
  process.standardError = pipe
  try process.run()
  let pid = process.processIdentifier
  let killer = DispatchWorkItem { kill(pid, SIGKILL) }
  DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
  let data = pipe.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  killer.cancel()
  return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Reads a whole file to its end; for /proc files, whose size stat reports as 0.
public func readWholeFile(_ path: String) -> String {
  guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
  defer { try? handle.close() }
  return String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
}

/// Starts a built crisp executable; `killIfRunning` is its cleanup.
public func startBinary(_ name: String, _ arguments: [String]) throws -> Process {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: binaryPath(name))
  process.arguments = arguments
  try process.run()
  return process
}

extension Process {
  public func killIfRunning() {
    if isRunning {
      kill(processIdentifier, SIGKILL)
      waitUntilExit()
    }
  }
}
