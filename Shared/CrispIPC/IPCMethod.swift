import CrispCore

/// One request/reply call of the IPC message set: its wire name and its typed
/// request and response. Every daemon's calls are declared in `Messages/`.
public protocol IPCMethod: Sendable {
  associatedtype Request: Codable & Sendable
  associatedtype Response: Codable & Sendable
  static var name: String { get }
}

/// One notification pushed from a shim to frontd.
public protocol IPCEvent: Codable, Sendable {
  static var name: String { get }
}

/// An empty request or response body (`{}` on the wire).
public struct Empty: Codable, Sendable, Equatable {
  public init() {}
}
