import CrispCore
import Foundation

/// A CNI network configuration list as loaded from disk. Plugin configurations are
/// kept as the JSON objects the operator wrote: crisp passes them to plugins as is.
struct CNINetworkList: @unchecked Sendable {
  let name: String
  let cniVersion: String
  /// Each plugin's configuration object (immutable after loading).
  let plugins: [[String: Any]]
  let file: String

  var pluginTypes: [String] { plugins.map { $0["type"] as? String ?? "" } }

  /// The list as JSON, to store with a pod so DEL uses exactly what ADD used.
  func jsonObject() -> [String: Any] {
    ["name": name, "cniVersion": cniVersion, "plugins": plugins, "file": file]
  }

  init(name: String, cniVersion: String, plugins: [[String: Any]], file: String) {
    self.name = name
    self.cniVersion = cniVersion
    self.plugins = plugins
    self.file = file
  }

  /// Reads a list (or a single plugin's `.conf`) from parsed JSON.
  init(json: [String: Any], file: String) throws(CrispError) {
    guard let name = json["name"] as? String, !name.isEmpty else {
      throw CrispError(.failedPrecondition, "CNI config \(file) has no network name")
    }
    let version = json["cniVersion"] as? String ?? ""
    var plugins: [[String: Any]]
    if let list = json["plugins"] {
      guard let array = list as? [[String: Any]], !array.isEmpty else {
        throw CrispError(.failedPrecondition, "CNI config \(file): 'plugins' must be a non-empty list of objects")
      }
      plugins = array
    } else if json["type"] is String {
      plugins = [json]
    } else {
      throw CrispError(.failedPrecondition, "CNI config \(file) names no plugin ('plugins' or 'type')")
    }
    for (index, plugin) in plugins.enumerated() {
      guard let type = plugin["type"] as? String, !type.isEmpty, !type.contains("/"), type != "..", type != "."
      else {
        throw CrispError(.failedPrecondition, "CNI config \(file): plugin \(index) has no valid 'type'")
      }
    }
    plugins = plugins.map { plugin in
      var plugin = plugin
      plugin.removeValue(forKey: "name")
      plugin.removeValue(forKey: "cniVersion")
      return plugin
    }
    self.init(name: name, cniVersion: version, plugins: plugins, file: file)
  }
}

/// The CNI configuration directory. It is read again on every use, so a file written
/// after start is picked up without a restart (and a removed one stops counting).
struct CNIConfigDirectory: Sendable {
  let path: String
  /// A network name to pick; empty takes the first file in lexical order.
  let defaultNetwork: String
  static let extensions: Set<String> = ["conf", "conflist", "json"]

  /// The network pods join, or why there is none (for `NetworkReady`'s message).
  func load() -> Result<CNINetworkList, CrispError> {
    let names: [String]
    do {
      names = try FileManager.default.contentsOfDirectory(atPath: path)
    } catch {
      return .failure(CrispError(.failedPrecondition, "cni config uninitialized: cannot read directory \(path)"))
    }
    let candidates = names.filter { Self.extensions.contains(($0 as NSString).pathExtension) }.sorted()
    guard !candidates.isEmpty else {
      return .failure(CrispError(.failedPrecondition, "cni config uninitialized: no CNI configuration file in \(path)"))
    }
    var problems: [String] = []
    for candidate in candidates {
      let file = path + "/" + candidate
      do {
        let list = try Self.read(file)
        if defaultNetwork.isEmpty || list.name == defaultNetwork { return .success(list) }
      } catch {
        problems.append(error.message)
      }
    }
    if !defaultNetwork.isEmpty {
      problems.insert("no configuration in \(path) names network \"\(defaultNetwork)\"", at: 0)
    }
    return .failure(CrispError(.failedPrecondition, "no valid CNI configuration: " + problems.joined(separator: "; ")))
  }

  static func read(_ file: String) throws(CrispError) -> CNINetworkList {
    guard let data = FileManager.default.contents(atPath: file) else {
      throw CrispError(.failedPrecondition, "cannot read CNI config \(file)")
    }
    guard let object = try? JSONSerialization.jsonObject(with: data), let json = object as? [String: Any] else {
      throw CrispError(.failedPrecondition, "CNI config \(file) is not a JSON object")
    }
    return try CNINetworkList(json: json, file: file)
  }
}
