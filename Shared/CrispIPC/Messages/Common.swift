/// Calls every crisp daemon answers.

/// Echoes its payload: the IPC floor for benchmarks and a liveness check by hand.
public enum Ping: IPCMethod {
  public static let name = "ping"
  public struct Request: Codable, Sendable, Equatable {
    public var payload: String
    public init(payload: String = "") { self.payload = payload }

    // `payload` may be left out when pinging by hand.
    public init(from decoder: any Decoder) throws {
      let container = try decoder.container(keyedBy: CodingKeys.self)
      payload = try container.decodeIfPresent(String.self, forKey: .payload) ?? ""
    }
  }
  public typealias Response = Request
}

/// Who answers, since when, and whether it can do its job now.
public enum Health: IPCMethod {
  public static let name = "health"
  public typealias Request = Empty
  public struct Response: Codable, Sendable, Equatable {
    public var daemon: String
    public var version: String
    public var pid: Int32
    public var uptimeSeconds: Double
    /// Whether the daemon can serve its part now (netd: a valid CNI configuration exists).
    public var ready: Bool
    /// CRI-style reason and message when not ready.
    public var reason: String?
    public var message: String?

    public init(
      daemon: String, version: String, pid: Int32, uptimeSeconds: Double, ready: Bool = true,
      reason: String? = nil, message: String? = nil
    ) {
      self.daemon = daemon
      self.version = version
      self.pid = pid
      self.uptimeSeconds = uptimeSeconds
      self.ready = ready
      self.reason = reason
      self.message = message
    }
  }
}
