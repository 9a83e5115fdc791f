import Foundation

/// The CNI configuration directory, read on every readiness check so that a file
/// written after start counts without a restart (as kubelet expects).
struct CNIConfigDirectory: Sendable {
  enum Readiness: Equatable {
    case ready(file: String, network: String)
    case notReady(String)
  }

  let path: String
  static let extensions: Set<String> = ["conf", "conflist", "json"]

  /// Ready when the first configuration file in lexical order (the one CRI-O and
  /// containerd would use) is a JSON object naming a network and its plugins.
  func readiness() -> Readiness {
    let names: [String]
    do {
      names = try FileManager.default.contentsOfDirectory(atPath: path)
    } catch {
      return .notReady("cni config uninitialized: cannot read \(path): no CNI configuration directory")
    }
    let candidates = names.filter { Self.extensions.contains(($0 as NSString).pathExtension) }.sorted()
    guard let first = candidates.first else {
      return .notReady("cni config uninitialized: no CNI configuration file in \(path)")
    }
    let file = path + "/" + first
    guard let data = FileManager.default.contents(atPath: file),
      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else {
      return .notReady("cni config \(file) is not a JSON object")
    }
    guard let name = object["name"] as? String, !name.isEmpty else {
      return .notReady("cni config \(file) has no network name")
    }
    let hasPlugins = (object["plugins"] as? [Any]).map { !$0.isEmpty } ?? (object["type"] is String)
    guard hasPlugins else {
      return .notReady("cni config \(file) names no plugin ('plugins' or 'type')")
    }
    return .ready(file: file, network: name)
  }
}
