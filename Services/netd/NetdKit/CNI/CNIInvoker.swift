import CrispCore
import CrispLinux
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
      previous = try await run(
        .add, plugin: plugin, list: list, runtime: runtime,
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
        _ = try await run(
          .del, plugin: plugin, list: list, runtime: runtime,
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
      _ = try await run(
        .check, plugin: plugin, list: list, runtime: runtime,
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
    let output = try await ChildProcess.run(
      path: path, environment: environment, stdin: Array(stdin), timeoutMs: timeoutMs)
    if output.timedOut {
      throw CrispError(
        .deadlineExceeded, "CNI plugin \(type) (\(command.rawValue)) timed out after \(timeoutMs) ms and was killed")
    }
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
    guard let object = try? JSONSerialization.jsonObject(with: Data(output.stdout)),
      let result = object as? [String: Any]
    else {
      throw CrispError(.internal, "CNI plugin \(type) returned no JSON result for ADD")
    }
    return result
  }

  /// The plugin's own error (CNI error JSON: code, msg, details), else its stderr.
  static func describeFailure(_ output: ChildProcess.Output) -> String {
    if let object = try? JSONSerialization.jsonObject(with: Data(output.stdout)) as? [String: Any],
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
