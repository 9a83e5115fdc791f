import Foundation
import Synchronization

/// A CNI network of a test's own: its bridge name, a private /24 and a host-local
/// IPAM directory, so that tests run in parallel and never touch the node's network.
struct TestBridge: Sendable {
  let name: String
  let subnetPrefix: String
  let ipamDir: String

  private static let counter = Atomic<Int>(0)

  init(ipamDir: String) {
    self.ipamDir = ipamDir
    let n = Self.counter.add(1, ordering: .relaxed).newValue
    let random = UInt32.random(in: 0..<0xffffff)
    name = "crt" + String(format: "%06x", random)
    // The third octet varies per test in this run.
    subnetPrefix = "10.\(200 + Int(random % 40)).\((n * 7 + Int(random >> 8)) % 250 + 1)"
  }

  var subnet: String { subnetPrefix + ".0/24" }

  /// bridge + host-local + (portmap) + loopback.
  func conflist(portmap: Bool = false, extraPlugins: [String] = []) -> String {
    var plugins = [
      """
      {"type": "bridge", "bridge": "\(name)", "isGateway": true, "ipMasq": false,
       "ipam": {"type": "host-local", "ranges": [[{"subnet": "\(subnet)"}]], "dataDir": "\(ipamDir)"}}
      """
    ]
    if portmap { plugins.append(#"{"type": "portmap", "capabilities": {"portMappings": true}}"#) }
    plugins += extraPlugins
    plugins.append(#"{"type": "loopback"}"#)
    return """
      {"cniVersion": "1.0.0", "name": "crisp-test", "plugins": [\(plugins.joined(separator: ","))]}
      """
  }

  /// IPs host-local has handed out and not yet released (files named by address).
  func leasedIPs() -> [String] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: ipamDir + "/crisp-test")) ?? []
    return names.filter { $0.hasPrefix(subnetPrefix + ".") }
  }
}
