import CrispCore
import Foundation
import Logging

/// The inputs every plugin of one pod's ADD, DEL or CHECK shares.
struct CNIRuntime: Sendable, Codable, Equatable {
  var containerID: String
  /// Empty once the namespace is gone (DEL after a reboot).
  var netns: String
  var ifName: String
  /// `K8S_POD_NAMESPACE=…;K8S_POD_NAME=…;…` (CNI_ARGS).
  var args: String
}

/// Runs CNI plugins (spec 1.0.0; 0.4.0 and older results are read too).
struct CNIInvoker: Sendable {
  let pluginDirs: [String]
  let timeoutMs: Int
  let logger: Logger

  enum Command: String, Sendable {
    case add = "ADD"
    case del = "DEL"
    case check = "CHECK"
  }

  func pluginPath(_ type: String) throws(CrispError) -> String {
    for dir in pluginDirs {
      let candidate = dir + "/" + type
      if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    }
    throw CrispError(
      .failedPrecondition,
      "CNI plugin \"\(type)\" not found in \(pluginDirs.joined(separator: ", "))")
  }

  /// ADD through every plugin in order, each getting the previous one's result.
  /// Returns the last result.
  func add(_ list: CNINetworkList, runtime: CNIRuntime, runtimeConfig: [String: Any]) async throws(CrispError)
    -> [String: Any]
  {
    var previous: [String: Any]? = nil
    for plugin in list.plugins {
      previous = try await run(.add, plugin: plugin, list: list, runtime: runtime,
        runtimeConfig: runtimeConfig, prevResult: previous)
    }
    return previous ?? [:]
  }

  /// DEL through every plugin in reverse order, each given the cached ADD result.
  /// Every plugin runs even if one fails; the first failure is thrown afterwards.
  func delete(_ list: CNINetworkList, runtime: CNIRuntime, runtimeConfig: [String: Any], cachedResult: [String: Any]?)
    async throws(CrispError)
  {
    var firstError: CrispError? = nil
    for plugin in list.plugins.reversed() {
      do {
        _ = try await run(.del, plugin: plugin, list: list, runtime: runtime,
          runtimeConfig: runtimeConfig, prevResult: cachedResult)
      } catch {
        if firstError == nil { firstError = error }
      }
    }
    if let firstError { throw firstError }
  }

  func check(_ list: CNINetworkList, runtime: CNIRuntime, runtimeConfig: [String: Any], cachedResult: [String: Any])
    async throws(CrispError)
  {
    for plugin in list.plugins {
      _ = try await run(.check, plugin: plugin, list: list, runtime: runtime,
        runtimeConfig: runtimeConfig, prevResult: cachedResult)
    }
  }

  private func run(
    _ command: Command, plugin: [String: Any], list: CNINetworkList, runtime: CNIRuntime,
    runtimeConfig: [String: Any], prevResult: [String: Any]?
  ) async throws(CrispError) -> [String: Any]? {
    let type = plugin["type"] as? String ?? ""
    let path = try pluginPath(type)
    var config = plugin
    config["name"] = list.name
    config["cniVersion"] = list.cniVersion
    if let prevResult { config["prevResult"] = prevResult }
    // Only the capabilities the plugin asks for, as libcni does.
    let capabilities = plugin["capabilities"] as? [String: Any] ?? [:]
    let wanted = runtimeConfig.filter { capabilities[$0.key] as? Bool == true }
    if !wanted.isEmpty { config["runtimeConfig"] = wanted }
    let stdin: Data
    do {
      stdin = try JSONSerialization.data(withJSONObject: config)
    } catch {
      throw CrispError(.internal, "cannot encode the configuration of CNI plugin \(type): \(error)")
    }

    let environment = [
      "CNI_COMMAND": command.rawValue,
      "CNI_CONTAINERID": runtime.containerID,
      "CNI_NETNS": runtime.netns,
      "CNI_IFNAME": runtime.ifName,
      "CNI_ARGS": runtime.args,
      "CNI_PATH": pluginDirs.joined(separator: ":"),
      // portmap and friends run iptables.
      "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ]
    let started = ContinuousClock.now
    let output = try await PluginProcess.run(
      path: path, environment: environment, stdin: stdin, timeoutMs: timeoutMs, name: type)
    logger.debug(
      "CNI plugin finished",
      metadata: [
        "plugin": "\(type)", "command": "\(command.rawValue)", "status": "\(output.status)",
        "elapsed": "\(ContinuousClock.now - started)",
      ])
    if output.status != 0 {
      throw CrispError(.internal, "CNI plugin \(type) failed (\(command.rawValue)): \(Self.describeFailure(output))")
    }
    guard command == .add else { return nil }
    guard let object = try? JSONSerialization.jsonObject(with: output.stdout), let result = object as? [String: Any]
    else {
      throw CrispError(.internal, "CNI plugin \(type) returned no JSON result for ADD")
    }
    return result
  }

  /// The plugin's own error (CNI error JSON: code, msg, details), else its stderr.
  static func describeFailure(_ output: PluginProcess.Output) -> String {
    if let object = try? JSONSerialization.jsonObject(with: output.stdout) as? [String: Any],
      let message = object["msg"] as? String
    {
      var text = message
      if let details = object["details"] as? String, !details.isEmpty { text += ": " + details }
      if let code = object["code"] as? Int { text += " (code \(code))" }
      return text
    }
    let stderr = String(decoding: output.stderr, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    let stdout = String(decoding: output.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    let text = stderr.isEmpty ? stdout : stderr
    return text.isEmpty ? "exit status \(output.status)" : String(text.prefix(2000))
  }

  /// The addresses of a result, without prefix lengths, IPv4 first.
  static func addresses(of result: [String: Any]) -> [String] {
    let ips = (result["ips"] as? [[String: Any]] ?? []).compactMap { entry -> String? in
      guard let address = entry["address"] as? String else { return nil }
      return String(address.split(separator: "/").first ?? "")
    }
    return ips.filter { !$0.contains(":") } + ips.filter { $0.contains(":") }
  }
}

/// One plugin execution with a deadline.
enum PluginProcess {
  struct Output: Sendable {
    var status: Int32
    var stdout: Data
    var stderr: Data
  }

  static func run(path: String, environment: [String: String], stdin: Data, timeoutMs: Int, name: String)
    async throws(CrispError) -> Output
  {
    let result: Result<Output, CrispError> = await withCheckedContinuation { continuation in
      DispatchQueue.global().async {
        continuation.resume(returning: runBlocking(path: path, environment: environment, stdin: stdin,
          timeoutMs: timeoutMs, name: name))
      }
    }
    return try result.get()
  }

  private static func runBlocking(path: String, environment: [String: String], stdin: Data, timeoutMs: Int, name: String)
    -> Result<Output, CrispError>
  {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.environment = environment
    let input = Pipe()
    let output = Pipe()
    let errors = Pipe()
    process.standardInput = input
    process.standardOutput = output
    process.standardError = errors
    do {
      try process.run()
    } catch {
      return .failure(CrispError(.internal, "cannot run CNI plugin \(name): \(error)"))
    }
    let timedOut = ManagedFlag()
    let killer = DispatchWorkItem {
      timedOut.set()
      kill(process.processIdentifier, SIGKILL)
    }
    DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(timeoutMs), execute: killer)
    // A plugin that exits without reading its config must not kill us with SIGPIPE.
    try? input.fileHandleForWriting.write(contentsOf: stdin)
    try? input.fileHandleForWriting.close()
    let errorData = ManagedData()
    let group = DispatchGroup()
    group.enter()
    DispatchQueue.global().async {
      errorData.set(errors.fileHandleForReading.readDataToEndOfFile())
      group.leave()
    }
    let out = output.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    killer.cancel()
    if timedOut.isSet {
      return .failure(CrispError(.deadlineExceeded, "CNI plugin \(name) timed out after \(timeoutMs) ms and was killed"))
    }
    return .success(Output(status: process.terminationStatus, stdout: out, stderr: errorData.get()))
  }

  private final class ManagedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
  }

  private final class ManagedData: @unchecked Sendable {
    private let lock = NSLock()
    private var value = Data()
    func set(_ data: Data) { lock.withLock { value = data } }
    func get() -> Data { lock.withLock { value } }
  }
}
