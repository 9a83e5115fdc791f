import CRIAPI
import CrispCore
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// The files a pod's containers share: resolv.conf, hostname and hosts, under
/// `<run_root>/pods/<id>/` (gone after a reboot, as the pod's namespaces are). The
/// pod's /dev/shm tmpfs is mounted by netd beside its pinned IPC namespace: frontd
/// mounts nothing.
enum PodFiles {
  static func create(
    directory: String, config: Runtime_V1_PodSandboxConfig, hostname: String, ips: [String], hostNetwork: Bool,
    hostIPC: Bool
  ) throws(CrispError) {
    try makePrivateDirectory(directory)
    try write(directory + "/resolv.conf", resolvConf(config))
    try write(directory + "/hostname", hostname + "\n")
    try write(directory + "/hosts", hosts(hostname: hostname, ips: ips, hostNetwork: hostNetwork))
  }

  static func remove(_ directory: String) {
    try? FileManager.default.removeItem(atPath: directory)
  }

  /// The pod's DNS settings, or the node's resolv.conf when kubelet gives none.
  static func resolvConf(_ config: Runtime_V1_PodSandboxConfig) throws(CrispError) -> String {
    guard config.hasDnsConfig, !config.dnsConfig.servers.isEmpty || !config.dnsConfig.searches.isEmpty else {
      return (Files.text("/etc/resolv.conf") ?? "")
    }
    let dns = config.dnsConfig
    for value in dns.servers + dns.searches + dns.options where value.contains(where: { $0.isNewline || $0 == " " }) {
      throw CrispError(.invalidArgument, "dns_config: \"\(value)\" must not contain spaces or newlines")
    }
    var text = ""
    for server in dns.servers { text += "nameserver \(server)\n" }
    if !dns.searches.isEmpty { text += "search " + dns.searches.joined(separator: " ") + "\n" }
    if !dns.options.isEmpty { text += "options " + dns.options.joined(separator: " ") + "\n" }
    return text
  }

  static func hosts(hostname: String, ips: [String], hostNetwork: Bool) -> String {
    if hostNetwork { return (Files.text("/etc/hosts") ?? "") }
    var text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    for ip in ips { text += "\(ip)\t\(hostname)\n" }
    return text
  }

  private static func write(_ path: String, _ text: String) throws(CrispError) {
    do {
      try text.write(toFile: path, atomically: true, encoding: .utf8)
      chmod(path, 0o644)
    } catch {
      throw CrispError(.internal, "cannot write \(path): \(error)")
    }
  }
}
