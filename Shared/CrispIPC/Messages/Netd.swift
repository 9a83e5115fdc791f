import CrispCore

/// Calls cri-frontd makes to netd: a pod's namespaces and its CNI network.

/// The pinned namespace files of a pod; empty where the pod uses the host's.
public struct PodNamespaces: Codable, Sendable, Equatable {
  public var network: String
  public var ipc: String
  public var uts: String

  public init(network: String = "", ipc: String = "", uts: String = "") {
    self.network = network
    self.ipc = ipc
    self.uts = uts
  }
}

/// One CRI port mapping, handed to CNI as the `portMappings` capability.
public struct PortMapping: Codable, Sendable, Equatable {
  /// "tcp", "udp" or "sctp".
  public var `protocol`: String
  public var containerPort: Int32
  public var hostPort: Int32
  public var hostIP: String

  public init(protocol: String = "tcp", containerPort: Int32, hostPort: Int32, hostIP: String = "") {
    self.protocol = `protocol`
    self.containerPort = containerPort
    self.hostPort = hostPort
    self.hostIP = hostIP
  }
}

/// Traffic shaping in bits per second, handed to CNI as the `bandwidth` capability.
public struct Bandwidth: Codable, Sendable, Equatable {
  public var ingressRate: Int64
  public var ingressBurst: Int64
  public var egressRate: Int64
  public var egressBurst: Int64

  public init(ingressRate: Int64 = 0, ingressBurst: Int64 = 0, egressRate: Int64 = 0, egressBurst: Int64 = 0) {
    self.ingressRate = ingressRate
    self.ingressBurst = ingressBurst
    self.egressRate = egressRate
    self.egressBurst = egressBurst
  }
}

/// The pod's DNS settings, handed to CNI as the `dns` capability.
public struct DNSSettings: Codable, Sendable, Equatable {
  public var servers: [String]
  public var searches: [String]
  public var options: [String]

  public init(servers: [String] = [], searches: [String] = [], options: [String] = []) {
    self.servers = servers
    self.searches = searches
    self.options = options
  }
}

/// What netd knows of one pod's network.
public struct PodNetworkInfo: Codable, Sendable, Equatable {
  public var podID: String
  public var namespaces: PodNamespaces
  /// Addresses without prefix length, IPv4 first (the CRI's `network.ip`), then the rest.
  public var ips: [String]
  /// The CNI network the pod joined; empty for host-network pods.
  public var network: String

  public init(podID: String, namespaces: PodNamespaces, ips: [String], network: String) {
    self.podID = podID
    self.namespaces = namespaces
    self.ips = ips
    self.network = network
  }
}

/// Creates and pins the pod's namespaces and runs CNI ADD. Setting up a pod that is
/// already set up answers its existing network.
public enum PodNetworkSetup: IPCMethod {
  public static let name = "netd.setup"
  public struct Request: Codable, Sendable, Equatable {
    public var podID: String
    public var podName: String
    public var podNamespace: String
    public var podUID: String
    public var hostNetwork: Bool
    public var hostIPC: Bool
    public var hostname: String
    /// Namespaced sysctls (`net.*` unless host network, `kernel.shm*`, `kernel.msg*`,
    /// `kernel.sem`, `fs.mqueue.*` unless host IPC).
    public var sysctls: [String: String]
    public var portMappings: [PortMapping]
    public var bandwidth: Bandwidth?
    public var dns: DNSSettings?

    public init(
      podID: String, podName: String, podNamespace: String, podUID: String, hostNetwork: Bool = false,
      hostIPC: Bool = false, hostname: String = "", sysctls: [String: String] = [:],
      portMappings: [PortMapping] = [], bandwidth: Bandwidth? = nil, dns: DNSSettings? = nil
    ) {
      self.podID = podID
      self.podName = podName
      self.podNamespace = podNamespace
      self.podUID = podUID
      self.hostNetwork = hostNetwork
      self.hostIPC = hostIPC
      self.hostname = hostname
      self.sysctls = sysctls
      self.portMappings = portMappings
      self.bandwidth = bandwidth
      self.dns = dns
    }
  }
  public typealias Response = PodNetworkInfo
}

/// Runs CNI DEL (from the cached ADD, also after a restart) and unpins the namespaces.
/// Tearing down a pod netd does not know succeeds.
public enum PodNetworkTeardown: IPCMethod {
  public static let name = "netd.teardown"
  public struct Request: Codable, Sendable, Equatable {
    public var podID: String
    public init(podID: String) { self.podID = podID }
  }
  public typealias Response = Empty
}

/// Tears down the pods frontd does not know: what a RunPodSandbox or RemovePodSandbox
/// left when netd could not be reached to undo it. frontd lists its pods after
/// `listedAt` (wall clock, ns); a pod netd set up after that may be a RunPodSandbox
/// under way, and is kept.
public enum PodNetworkReconcile: IPCMethod {
  public static let name = "netd.reconcile"
  public struct Request: Codable, Sendable, Equatable {
    public var podIDs: [String]
    public var listedAt: Int64
    public init(podIDs: [String], listedAt: Int64) {
      self.podIDs = podIDs
      self.listedAt = listedAt
    }
  }
  public struct Response: Codable, Sendable, Equatable {
    public var tornDown: [String]
    public init(tornDown: [String]) { self.tornDown = tornDown }
  }
}

/// The pod's namespaces and IPs from netd's cache; `notFound` for an unknown pod.
public enum PodNetworkStatus: IPCMethod {
  public static let name = "netd.status"
  public typealias Request = PodNetworkTeardown.Request
  public typealias Response = PodNetworkInfo
}

/// Every pod netd has set up.
public enum PodNetworkList: IPCMethod {
  public static let name = "netd.list"
  public typealias Request = Empty
  public struct Response: Codable, Sendable, Equatable {
    public var pods: [PodNetworkInfo]
    public init(pods: [PodNetworkInfo]) { self.pods = pods }
  }
}

/// Runs CNI CHECK with the inputs and result cached at ADD: fails with the plugin's
/// error when the pod's network is no longer as ADD left it.
public enum PodNetworkCheck: IPCMethod {
  public static let name = "netd.check"
  public typealias Request = PodNetworkTeardown.Request
  public typealias Response = PodNetworkInfo
}

/// Connects a TCP socket to 127.0.0.1:`port` inside the pod's network namespace (the
/// host's for a host-network pod) and hands it over on the answered unix socket
/// (mode 0600, one connection within `SessionSocket.acceptTimeoutMs`): netd sends
/// one byte `0` with the connected socket as an SCM_RIGHTS descriptor, or the byte
/// `1` followed by the UTF-8 error message (a refused port) and no descriptor.
/// An unknown pod is refused with `notFound`.
public enum NetPortForward: IPCMethod {
  public static let name = "netd.portForward"
  public struct Request: Codable, Sendable, Equatable {
    public var podID: String
    public var port: Int32

    public init(podID: String, port: Int32) {
      self.podID = podID
      self.port = port
    }

    public func validate() throws(CrispError) {
      guard (1...65535).contains(port) else {
        throw CrispError(.invalidArgument, "netd.portForward: port must be 1-65535, got \(port)")
      }
    }
  }
  public typealias Response = SessionSocket

  /// First byte of what netd sends on the socket.
  public static let connected: UInt8 = 0
  public static let failed: UInt8 = 1
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
