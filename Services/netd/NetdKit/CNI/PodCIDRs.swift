import CrispCore
import Foundation
import Logging
import Synchronization

/// The node's pod CIDRs, as kubelet hands them over (CRI UpdateRuntimeConfig), kept in
/// `<root>/cni/pod-cidr` so that they survive a restart of netd. CNI configurations
/// whose IPAM leaves the subnet to the node (`"subnet": ""` or `"subnet":
/// "{{podCIDR}}"`, in `ipam.subnet` or in a range of `ipam.ranges`) get them when a pod
/// joins: a range set made of one such range becomes one range set per CIDR (dual
/// stack); other such ranges take the first CIDR. Configurations with a subnet of
/// their own are passed on untouched.
final class PodCIDRs: Sendable {
  static let placeholder = "{{podCIDR}}"
  private let file: String
  private let logger: Logger
  private let current: Mutex<[String]>

  init(file: String, logger: Logger) {
    self.file = file
    self.logger = logger
    let saved = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
    current = Mutex((try? Self.parse(saved)) ?? [])
  }

  var cidrs: [String] { current.withLock { $0 } }

  /// Takes kubelet's value; empty is ignored (the CRI says runtimes omit it then).
  func update(_ text: String) throws(CrispError) -> [String] {
    let cidrs = try Self.parse(text)
    guard !cidrs.isEmpty else { return self.cidrs }
    let previous = current.withLock { old -> [String] in
      defer { old = cidrs }
      return old
    }
    if previous != cidrs {
      do {
        if let slash = file.lastIndex(of: "/") { try makeDirectories(String(file[..<slash]), mode: 0o700) }
        let temp = file + ".tmp"
        try (cidrs.joined(separator: ",") + "\n").write(toFile: temp, atomically: false, encoding: .utf8)
        guard rename(temp, file) == 0 else { throw CrispError(.internal, Files.errnoText()) }
      } catch {
        logger.warning("cannot keep the pod CIDR on disk", metadata: ["file": "\(file)", "error": "\(error)"])
      }
      logger.notice("pod CIDR from kubelet", metadata: ["cidrs": "\(cidrs.joined(separator: ","))"])
    }
    return cidrs
  }

  /// `10.244.1.0/24`, `fd00::/64`, comma-separated; each checked.
  static func parse(_ text: String) throws(CrispError) -> [String] {
    var result: [String] = []
    for item in text.split(separator: ",") {
      let cidr = item.trimmingCharacters(in: .whitespacesAndNewlines)
      guard !cidr.isEmpty else { continue }
      guard isCIDR(cidr) else {
        throw CrispError(.invalidArgument, "pod CIDR \"\(cidr.prefix(80))\" is not an address/prefix-length")
      }
      result.append(cidr)
    }
    return result
  }

  static func isCIDR(_ text: String) -> Bool {
    let parts = text.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count == 2, let length = Int(parts[1]), !parts[1].hasPrefix("+") else { return false }
    var buffer = [UInt8](repeating: 0, count: 16)
    if inet_pton(AF_INET, String(parts[0]), &buffer) == 1 { return (0...32).contains(length) }
    if inet_pton(AF_INET6, String(parts[0]), &buffer) == 1 { return (0...128).contains(length) }
    return false
  }

  static func isPlaceholder(_ value: Any?) -> Bool {
    guard let subnet = value as? String else { return false }
    return subnet.isEmpty || subnet == placeholder
  }

  /// The list with the node's CIDRs put where its IPAM asks for them.
  func apply(to network: CNINetworkList) throws(CrispError) -> CNINetworkList {
    let cidrs = self.cidrs
    var changed = false
    var plugins: [[String: Any]] = []
    for plugin in network.plugins {
      guard var ipam = plugin["ipam"] as? [String: Any] else {
        plugins.append(plugin)
        continue
      }
      var wanted = false
      if ipam.keys.contains("subnet"), Self.isPlaceholder(ipam["subnet"]) {
        wanted = true
        if let first = cidrs.first { ipam["subnet"] = first }
      }
      if let sets = ipam["ranges"] as? [[[String: Any]]] {
        var newSets: [[[String: Any]]] = []
        for set in sets {
          if set.count == 1, Self.isPlaceholder(set[0]["subnet"]) {
            wanted = true
            newSets += cidrs.map { cidr in
              var range = set[0]
              range["subnet"] = cidr
              return [range]
            }
          } else {
            newSets.append(
              set.map { range in
                guard Self.isPlaceholder(range["subnet"]) else { return range }
                wanted = true
                var range = range
                if let first = cidrs.first { range["subnet"] = first }
                return range
              })
          }
        }
        ipam["ranges"] = newSets
      }
      guard wanted else {
        plugins.append(plugin)
        continue
      }
      guard !cidrs.isEmpty else {
        throw CrispError(
          .failedPrecondition,
          "CNI config \(network.file) leaves the subnet to the node's pod CIDR, which kubelet has not sent yet "
            + "(UpdateRuntimeConfig)")
      }
      changed = true
      var copy = plugin
      copy["ipam"] = ipam
      plugins.append(copy)
    }
    guard changed else { return network }
    return CNINetworkList(name: network.name, cniVersion: network.cniVersion, plugins: plugins, file: network.file)
  }
}
