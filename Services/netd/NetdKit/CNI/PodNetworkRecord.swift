import CrispCore
import CrispIPC
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// What netd keeps on disk per pod (`<root>/cni/pods/<pod>.json`): the exact network
/// configuration, arguments and runtime config ADD used, and its result, so that DEL
/// and CHECK after any restart get the same inputs. Written before ADD starts (state
/// `adding`), so a pod cut off mid-ADD can still be torn down.
struct PodNetworkRecord: @unchecked Sendable {
  enum State: String { case adding, ready }

  var podID: String
  var state: State
  var namespaces: PodNamespaces
  var hostNetwork: Bool
  var network: CNINetworkList?
  var runtime: CNIRuntime?
  var runtimeConfig: [String: Any]
  var result: [String: Any]?

  var info: PodNetworkInfo {
    PodNetworkInfo(
      podID: podID, namespaces: namespaces,
      ips: result.map(CNIInvoker.addresses(of:)) ?? [], network: network?.name ?? "")
  }

  func jsonObject() -> [String: Any] {
    var object: [String: Any] = [
      "version": 1, "podID": podID, "state": state.rawValue, "hostNetwork": hostNetwork,
      "namespaces": ["network": namespaces.network, "ipc": namespaces.ipc, "uts": namespaces.uts],
      "runtimeConfig": runtimeConfig,
    ]
    if let network { object["network"] = network.jsonObject() }
    if let runtime {
      object["runtime"] = [
        "containerID": runtime.containerID, "netns": runtime.netns, "ifName": runtime.ifName, "args": runtime.args,
      ]
    }
    if let result { object["result"] = result }
    return object
  }

  init(
    podID: String, state: State, namespaces: PodNamespaces, hostNetwork: Bool, network: CNINetworkList?,
    runtime: CNIRuntime?, runtimeConfig: [String: Any], result: [String: Any]?
  ) {
    self.podID = podID
    self.state = state
    self.namespaces = namespaces
    self.hostNetwork = hostNetwork
    self.network = network
    self.runtime = runtime
    self.runtimeConfig = runtimeConfig
    self.result = result
  }

  init(json: [String: Any], file: String) throws(CrispError) {
    guard json["version"] as? Int == 1, let podID = json["podID"] as? String,
      let state = (json["state"] as? String).flatMap(State.init(rawValue:)),
      let ns = json["namespaces"] as? [String: String]
    else {
      throw CrispError(.internal, "corrupt CNI cache record \(file)")
    }
    var network: CNINetworkList? = nil
    if let list = json["network"] as? [String: Any] {
      network = try CNINetworkList(json: list, file: list["file"] as? String ?? file)
    }
    var runtime: CNIRuntime? = nil
    if let r = json["runtime"] as? [String: String] {
      runtime = CNIRuntime(
        containerID: r["containerID"] ?? podID, netns: r["netns"] ?? "", ifName: r["ifName"] ?? "eth0",
        args: r["args"] ?? "")
    }
    self.init(
      podID: podID, state: state,
      namespaces: PodNamespaces(network: ns["network"] ?? "", ipc: ns["ipc"] ?? "", uts: ns["uts"] ?? ""),
      hostNetwork: json["hostNetwork"] as? Bool ?? false, network: network, runtime: runtime,
      runtimeConfig: json["runtimeConfig"] as? [String: Any] ?? [:], result: json["result"] as? [String: Any])
  }
}

/// The on-disk records, one file each, replaced atomically (temp file, fsync, rename).
struct PodNetworkStore: Sendable {
  let directory: String

  func path(_ podID: String) -> String { directory + "/" + podID + ".json" }

  func save(_ record: PodNetworkRecord) throws(CrispError) {
    try makeDirectories(directory, mode: 0o700)
    let data: Data
    do {
      data = try JSONSerialization.data(withJSONObject: record.jsonObject(), options: [.sortedKeys])
    } catch {
      throw CrispError(.internal, "cannot encode CNI cache record: \(error)")
    }
    let final = path(record.podID)
    let temp = final + ".tmp"
    let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { throw CrispError(.internal, "cannot write \(temp): \(Files.errnoText())") }
    let written = data.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    let synced = fsync(fd)
    close(fd)
    guard written == data.count, synced == 0, rename(temp, final) == 0 else {
      unlink(temp)
      throw CrispError(.internal, "cannot write \(final): \(Files.errnoText())")
    }
  }

  func load(_ podID: String) throws(CrispError) -> PodNetworkRecord? {
    let file = path(podID)
    guard let data = FileManager.default.contents(atPath: file) else { return nil }
    guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
      throw CrispError(.internal, "corrupt CNI cache record \(file)")
    }
    return try PodNetworkRecord(json: object, file: file)
  }

  func remove(_ podID: String) {
    unlink(path(podID))
  }

  func all() -> [PodNetworkRecord] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return names.filter { $0.hasSuffix(".json") }.sorted().compactMap { name in
      try? load(String(name.dropLast(5)))
    }
  }
}
