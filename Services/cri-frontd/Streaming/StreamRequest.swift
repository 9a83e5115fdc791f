/// What an Exec, Attach or PortForward RPC asked for, kept under a token until the client
/// connects to the URL the RPC returned.
public enum StreamRequest: Sendable, Equatable {
  case exec(containerID: String, command: [String], options: StreamOptions)
  case attach(containerID: String, options: StreamOptions)
  /// `ports` empty means any port the client names (kubelet sends none over SPDY).
  case portForward(podID: String, ports: [UInt16])

  /// The first path segment of the URL: /exec/<token>, /attach/<token>, /portforward/<token>.
  public var pathKind: String {
    switch self {
    case .exec: "exec"
    case .attach: "attach"
    case .portForward: "portforward"
    }
  }
}
