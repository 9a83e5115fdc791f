/// The parts of an image's config a container is made from.
public struct ImageRuntimeConfig: Codable, Sendable, Equatable {
  public var user: String
  public var env: [String]
  public var entrypoint: [String]
  public var cmd: [String]
  public var workingDir: String
  public var stopSignal: String
  public var labels: [String: String]
  public var volumes: [String]

  public init(
    user: String = "", env: [String] = [], entrypoint: [String] = [], cmd: [String] = [], workingDir: String = "",
    stopSignal: String = "", labels: [String: String] = [:], volumes: [String] = []
  ) {
    self.user = user
    self.env = env
    self.entrypoint = entrypoint
    self.cmd = cmd
    self.workingDir = workingDir
    self.stopSignal = stopSignal
    self.labels = labels
    self.volumes = volumes
  }
}
