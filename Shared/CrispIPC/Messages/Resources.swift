import CrispCore

/// Calls for resource usage and resource updates (the CRI's stats, UpdateContainerResources
/// and UpdateRuntimeConfig): to a container's shim, and to netd.

/// Applies new cgroup limits to the running container (`runc update --resources`).
/// `resources` is an OCI runtime-spec `LinuxResources` object in JSON, as frontd built
/// it from the CRI request. Refused with `failedPrecondition` unless the container is
/// created or running.
public enum ShimUpdateResources: IPCMethod {
  public static let name = "shim.updateResources"
  /// A sanity bound on `resources`.
  public static let maxResourcesBytes = 64 << 10

  public struct Request: Codable, Sendable, Equatable {
    public var resources: String

    public init(resources: String) { self.resources = resources }

    public func validate() throws(CrispError) {
      guard resources.utf8.first == UInt8(ascii: "{"), resources.utf8.last == UInt8(ascii: "}") else {
        throw CrispError(.invalidArgument, "shim.updateResources: resources must be a JSON object")
      }
      guard resources.utf8.count <= ShimUpdateResources.maxResourcesBytes else {
        throw CrispError(
          .invalidArgument,
          "shim.updateResources: resources of \(resources.utf8.count) bytes exceed \(ShimUpdateResources.maxResourcesBytes)"
        )
      }
    }
  }
  public typealias Response = Empty
}

/// Counters of one network interface, as `/proc/net/dev` shows them.
public struct InterfaceCounters: Codable, Sendable, Equatable {
  public var name: String
  public var rxBytes: UInt64
  public var rxPackets: UInt64
  public var rxErrors: UInt64
  public var rxDropped: UInt64
  public var txBytes: UInt64
  public var txPackets: UInt64
  public var txErrors: UInt64
  public var txDropped: UInt64

  public init(
    name: String, rxBytes: UInt64 = 0, rxPackets: UInt64 = 0, rxErrors: UInt64 = 0, rxDropped: UInt64 = 0,
    txBytes: UInt64 = 0, txPackets: UInt64 = 0, txErrors: UInt64 = 0, txDropped: UInt64 = 0
  ) {
    self.name = name
    self.rxBytes = rxBytes
    self.rxPackets = rxPackets
    self.rxErrors = rxErrors
    self.rxDropped = rxDropped
    self.txBytes = txBytes
    self.txPackets = txPackets
    self.txErrors = txErrors
    self.txDropped = txDropped
  }

  /// `/proc/net/dev`: two header lines, then `name: rx-bytes rx-packets rx-errs rx-drop
  /// fifo frame compressed multicast tx-bytes tx-packets tx-errs tx-drop …`. Lines that
  /// do not parse are skipped.
  public static func parse(procNetDev text: String) -> [InterfaceCounters] {
    var result: [InterfaceCounters] = []
    for line in text.split(separator: "\n") {
      guard let colon = line.firstIndex(of: ":") else { continue }
      let name = line[..<colon].filter { $0 != " " }
      let numbers = line[line.index(after: colon)...].split(separator: " ").compactMap { UInt64($0) }
      guard !name.isEmpty, numbers.count >= 12 else { continue }
      result.append(
        InterfaceCounters(
          name: String(name), rxBytes: numbers[0], rxPackets: numbers[1], rxErrors: numbers[2],
          rxDropped: numbers[3], txBytes: numbers[8], txPackets: numbers[9], txErrors: numbers[10],
          txDropped: numbers[11]))
    }
    return result
  }
}

/// The interface counters inside a pod's network namespace (netd enters the pinned
/// namespace on a short-lived thread and reads `/proc/thread-self/net/dev`). A
/// host-network pod has no namespace of its own: no interfaces. An unknown pod is
/// refused with `notFound`.
public enum PodNetworkStats: IPCMethod {
  public static let name = "netd.stats"
  public struct Request: Codable, Sendable, Equatable {
    public var podID: String
    public init(podID: String) { self.podID = podID }
  }
  public struct Response: Codable, Sendable, Equatable {
    /// Nanoseconds since the epoch, when the counters were read.
    public var timestamp: Int64
    /// The CNI interface pods get (`eth0`) comes first; the loopback is left out.
    public var interfaces: [InterfaceCounters]
    public init(timestamp: Int64, interfaces: [InterfaceCounters]) {
      self.timestamp = timestamp
      self.interfaces = interfaces
    }
  }
}

/// The node's pod CIDR from kubelet (CRI UpdateRuntimeConfig). netd keeps it (also
/// across restarts) and puts it into the IPAM of CNI configurations that leave their
/// subnet empty or write `{{podCIDR}}`. An empty CIDR is ignored, as the CRI says.
public enum NetUpdateRuntimeConfig: IPCMethod {
  public static let name = "netd.updateRuntimeConfig"
  public struct Request: Codable, Sendable, Equatable {
    /// `10.244.1.0/24`, or several comma-separated (dual stack).
    public var podCIDR: String
    public init(podCIDR: String) { self.podCIDR = podCIDR }
  }
  public struct Response: Codable, Sendable, Equatable {
    /// The CIDRs netd now uses.
    public var podCIDRs: [String]
    public init(podCIDRs: [String]) { self.podCIDRs = podCIDRs }
  }
}
