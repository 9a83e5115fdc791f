import CRIAPI
import CrispCore
import CrispIPC
import Foundation
import GRPCCore

extension RuntimeService {
  func containerStatus(request: Runtime_V1_ContainerStatusRequest, context: ServerContext) async throws
    -> Runtime_V1_ContainerStatusResponse
  {
    try await rpc { () async throws(CrispError) in
      let view = await containers.view(try container(request.containerID))
      var response = Runtime_V1_ContainerStatusResponse()
      response.status = Self.status(of: view)
      if request.verbose {
        let bundle = launcher.bundle(view.container.id)
        var info: [String: Any] = ["pid": view.phase.pid, "sandboxID": view.container.podID]
        if let spec = FileManager.default.contents(atPath: bundle.layout.config),
          let json = try? JSONSerialization.jsonObject(with: spec)
        {
          info["runtimeSpec"] = json
        }
        if let data = try? JSONSerialization.data(withJSONObject: info, options: [.sortedKeys]) {
          response.info["info"] = String(decoding: data, as: UTF8.self)
        }
      }
      return response
    }
  }

  /// The CRI status of a container (ContainerStatus, and the container events).
  static func status(of view: ContainerView) -> Runtime_V1_ContainerStatus {
    let record = view.record
    var status = Runtime_V1_ContainerStatus()
    status.id = record.id
    status.metadata = view.config.metadata
    status.state = view.state
    status.createdAt = record.createdAt
    switch view.phase {
    case .created: break
    case .running(_, let startedAt): status.startedAt = startedAt
    case .exited(let exit):
      status.startedAt = exit.startedAt
      status.finishedAt = exit.finishedAt
      status.exitCode = exit.exitCode
      status.reason = exit.reason
    case .unknown:
      status.exitCode = 255
      status.reason = "Unknown"
      status.message = "the container's monitor is gone and left no exit record"
    }
    status.image = view.config.image
    status.imageRef = record.imageID
    status.imageID = record.imageID
    status.labels = view.config.labels
    status.annotations = view.config.annotations
    status.mounts = view.config.mounts
    status.logPath = record.logPath
    if view.config.hasLinux { status.resources.linux = view.config.linux.resources }
    if case .running(let pid, _) = view.phase, pid > 0, let user = processUser(pid) {
      status.user.linux = user
    }
    return status
  }

  /// The uid, gid and supplementary groups the container's first process really has, from
  /// /proc (what kubelet shows for supplementalGroupsPolicy); nil once it is gone.
  static func processUser(_ pid: Int32) -> Runtime_V1_LinuxContainerUser? {
    var user = Runtime_V1_LinuxContainerUser()
    var found = 0
    for line in (Files.text("/proc/\(pid)/status") ?? "").split(separator: "\n") {
      let fields = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
      guard let key = fields.first else { continue }
      switch key {
      case "Uid:":
        guard fields.count > 1, let uid = Int64(fields[1]) else { return nil }
        user.uid = uid
        found += 1
      case "Gid:":
        guard fields.count > 1, let gid = Int64(fields[1]) else { return nil }
        user.gid = gid
        found += 1
      case "Groups:":
        user.supplementalGroups = fields.dropFirst().compactMap { Int64($0) }
        found += 1
      default: continue
      }
    }
    return found == 3 ? user : nil
  }
}
