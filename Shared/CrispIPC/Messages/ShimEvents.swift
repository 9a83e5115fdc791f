/// Events a shim pushes to frontd's event socket.

public struct ContainerStartedEvent: IPCEvent, Equatable {
  public static let name = "container.started"
  public var containerID: String
  public var pid: Int32
  public var startedAt: Int64

  public init(containerID: String, pid: Int32, startedAt: Int64) {
    self.containerID = containerID
    self.pid = pid
    self.startedAt = startedAt
  }
}

public struct ContainerExitedEvent: IPCEvent, Equatable {
  public static let name = "container.exited"
  public var containerID: String
  public var exitCode: Int32
  /// Nanoseconds since the epoch.
  public var finishedAt: Int64
  public var oomKilled: Bool

  public init(containerID: String, exitCode: Int32, finishedAt: Int64, oomKilled: Bool) {
    self.containerID = containerID
    self.exitCode = exitCode
    self.finishedAt = finishedAt
    self.oomKilled = oomKilled
  }
}
