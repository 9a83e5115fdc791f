import CrispCore
import CrispIPC
import Foundation

/// Pod network setup and teardown through netd, against the same CNI plugins run
/// straight from a shell loop with `ip netns` (the floor).
enum NetworkBench {
  struct Figures {
    var setup: [Double] = []
    var teardown: [Double] = []
  }

  static func conflist(bridge: String, subnet: String, ipamDir: String) -> (list: String, plugins: [String]) {
    let bridgePlugin = """
      {"cniVersion": "1.0.0", "name": "crisp-bench", "type": "bridge", "bridge": "\(bridge)", "isGateway": true,
       "ipMasq": false, "ipam": {"type": "host-local", "ranges": [[{"subnet": "\(subnet)"}]], "dataDir": "\(ipamDir)"}}
      """
    let loopback = #"{"cniVersion": "1.0.0", "name": "crisp-bench", "type": "loopback"}"#
    let list = """
      {"cniVersion": "1.0.0", "name": "crisp-bench", "plugins": [
        {"type": "bridge", "bridge": "\(bridge)", "isGateway": true, "ipMasq": false,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": "\(subnet)"}]], "dataDir": "\(ipamDir)"}},
        {"type": "loopback"}]}
      """
    return (list, [bridgePlugin, loopback])
  }

  static func crisp(instance: BenchInstance, pods: Int) async throws -> Figures {
    let bridge = "crb" + String(format: "%06x", UInt32.random(in: 0..<0xffffff))
    let (list, _) = conflist(bridge: bridge, subnet: "10.251.0.0/16", ipamDir: instance.dir + "/ipam-crisp")
    try list.write(toFile: instance.dir + "/cni/10-bench.conflist", atomically: true, encoding: .utf8)
    defer { _ = try? run("/usr/sbin/ip", ["link", "del", bridge]) }
    let client = try IPCClient(
      peer: "netd", address: CrispPaths.ipcAddress(instance.paths.netdSocket), defaultTimeoutMs: 60_000)
    var figures = Figures()
    var ids: [String] = []
    for i in 0..<pods {
      let id = String(format: "%064x", i + 1)
      let start = ContinuousClock.now
      _ = try await client.call(
        PodNetworkSetup.self,
        .init(podID: id, podName: "bench-\(i)", podNamespace: "bench", podUID: "uid-\(i)", hostname: "bench-\(i)"))
      figures.setup.append((ContinuousClock.now - start).microseconds)
      ids.append(id)
    }
    for id in ids {
      let start = ContinuousClock.now
      _ = try await client.call(PodNetworkTeardown.self, .init(podID: id))
      figures.teardown.append((ContinuousClock.now - start).microseconds)
    }
    return figures
  }

  /// The floor: `ip netns add` + each plugin's ADD, then each DEL + `ip netns del`,
  /// timed inside one bash process.
  static func shell(dir: String, pods: Int) throws -> Figures {
    let bridge = "crs" + String(format: "%06x", UInt32.random(in: 0..<0xffffff))
    let (_, plugins) = conflist(bridge: bridge, subnet: "10.252.0.0/16", ipamDir: dir + "/ipam-shell")
    try plugins[0].write(toFile: dir + "/bridge.json", atomically: true, encoding: .utf8)
    try plugins[1].write(toFile: dir + "/loopback.json", atomically: true, encoding: .utf8)
    defer { _ = try? run("/usr/sbin/ip", ["link", "del", bridge]) }
    let script = """
      set -e
      export CNI_PATH=/usr/lib/cni CNI_IFNAME=eth0 CNI_ARGS="IgnoreUnknown=1"
      for i in $(seq 1 \(pods)); do
        ns=crisp-bench-$$-$i; export CNI_CONTAINERID=$ns CNI_NETNS=/run/netns/$ns
        t0=$(date +%s%N)
        ip netns add $ns
        CNI_COMMAND=ADD /usr/lib/cni/bridge < \(dir)/bridge.json > /dev/null
        CNI_COMMAND=ADD /usr/lib/cni/loopback < \(dir)/loopback.json > /dev/null
        echo "setup $(( $(date +%s%N) - t0 ))"
      done
      for i in $(seq 1 \(pods)); do
        ns=crisp-bench-$$-$i; export CNI_CONTAINERID=$ns CNI_NETNS=/run/netns/$ns
        t0=$(date +%s%N)
        CNI_COMMAND=DEL /usr/lib/cni/loopback < \(dir)/loopback.json
        CNI_COMMAND=DEL /usr/lib/cni/bridge < \(dir)/bridge.json
        ip netns del $ns
        echo "teardown $(( $(date +%s%N) - t0 ))"
      done
      """
    let output = try run("/bin/bash", ["-c", script])
    var figures = Figures()
    for line in output.split(separator: "\n") {
      let parts = line.split(separator: " ")
      guard parts.count == 2, let ns = Double(parts[1]) else { continue }
      if parts[0] == "setup" { figures.setup.append(ns / 1000) } else { figures.teardown.append(ns / 1000) }
    }
    return figures
  }

  @discardableResult
  static func run(_ path: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
      throw CrispError(
        .internal, "\(path) \(arguments.joined(separator: " ")) exited with \(process.terminationStatus)")
    }
    return String(decoding: data, as: UTF8.self)
  }
}
