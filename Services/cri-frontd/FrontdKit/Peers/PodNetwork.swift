import CrispConfig
import CrispCore
import CrispIPC

/// What the pod lifecycle needs of netd: a pod's namespaces and network, made and torn
/// down. A protocol so that the lifecycle can be tested with a fake network;
/// `NetdPeer` is the real one.
protocol PodNetwork: Sendable {
  /// Creates and pins the pod's namespaces and runs CNI ADD.
  func setUp(_ request: PodNetworkSetup.Request) async throws(CrispError) -> PodNetworkInfo
  /// Runs CNI DEL and unpins the pod's namespaces. Idempotent.
  func tearDown(podID: String) async throws(CrispError)
  /// Tears down the networks made before `listedAt` of pods not in `keeping`; answers
  /// the torn-down ones.
  func tearDownOrphans(keeping: [String], listedAt: Int64) async throws(CrispError) -> [String]
}

/// netd, over its IPC socket.
struct NetdPeer: PodNetwork {
  let client: IPCClient
  /// Deadline of a call that runs CNI plugins: longer than their own timeout.
  let timeoutMs: Int32

  static func timeoutMs(_ config: CrispConfig) -> Int32 {
    Int32(clamping: config.netd.cniPluginTimeoutMs * 2 + 5_000)
  }

  func setUp(_ request: PodNetworkSetup.Request) async throws(CrispError) -> PodNetworkInfo {
    try await FrontdMetrics.timeNetwork(.add) { () async throws(CrispError) in
      try await client.call(PodNetworkSetup.self, request, timeoutMs: timeoutMs)
    }
  }

  func tearDown(podID: String) async throws(CrispError) {
    _ = try await FrontdMetrics.timeNetwork(.del) { () async throws(CrispError) in
      try await client.call(PodNetworkTeardown.self, .init(podID: podID), timeoutMs: timeoutMs)
    }
  }

  func tearDownOrphans(keeping: [String], listedAt: Int64) async throws(CrispError) -> [String] {
    try await client.call(PodNetworkReconcile.self, .init(podIDs: keeping, listedAt: listedAt), timeoutMs: timeoutMs)
      .tornDown
  }
}
