import CRIAPI
import CrispCore
import CrispIPC
import Foundation
import GRPCCore

/// A container's state as kubelet sees it: from its shim while it lives, else from
/// the exit file the shim left; with neither, exit code 255 and reason Unknown
/// (never a guessed 0).
struct ContainerView {
  var record: ContainerRecord
  var config: Runtime_V1_ContainerConfig
  var state: Runtime_V1_ContainerState
  var startedAt: Int64 = 0
  var finishedAt: Int64 = 0
  var exitCode: Int32 = 0
  var reason = ""
  var message = ""
  var pid: Int32 = 0
  /// The container's shim answered (else the state comes from its exit record, or is unknown).
  var shimAnswered = false
}

extension RuntimeService {
  func view(_ record: ContainerRecord) async throws(CrispError) -> ContainerView {
    var view = ContainerView(record: record, config: try Self.decodeContainerConfig(record), state: .containerUnknown)
    if let shim = await runtime.shims.knownState(record.id) {
      view.shimAnswered = true
      view.pid = shim.pid
      view.startedAt = shim.startedAt
      view.finishedAt = shim.finishedAt
      switch shim.state {
      case .created: view.state = .containerCreated
      case .running: view.state = .containerRunning
      case .exited:
        view.state = .containerExited
        view.exitCode = shim.exitCode
        view.reason = shim.oomKilled ? "OOMKilled" : shim.exitCode == 0 ? "Completed" : "Error"
      }
    } else if let exit = ContainerBundle(paths: runtime.paths, containerID: record.id).exitRecord() {
      view.state = .containerExited
      view.finishedAt = exit.finishedAt
      view.exitCode = exit.exitCode
      view.reason = exit.oomKilled ? "OOMKilled" : exit.exitCode == 0 ? "Completed" : "Error"
    } else {
      view.state = .containerExited
      view.exitCode = 255
      view.reason = "Unknown"
      view.message = "the container's monitor is gone and left no exit record"
    }
    return view
  }

  /// The views of many containers, in their order. Each shim is asked at the same time
  /// (up to 32 at once): kubelet lists every container every second, and one shim after
  /// the other made ListContainers 13 times slower than containerd's with 50 containers.
  func views(_ records: [ContainerRecord]) async throws(CrispError) -> [ContainerView] {
    let width = 32
    let results = await withTaskGroup(
      of: (Int, Result<ContainerView, CrispError>).self, returning: [Result<ContainerView, CrispError>?].self
    ) { group in
      var results = [Result<ContainerView, CrispError>?](repeating: nil, count: records.count)
      for (index, record) in records.enumerated() {
        if index >= width, let (done, result) = await group.next() { results[done] = result }
        group.addTask { (index, await self.viewResult(record)) }
      }
      while let (done, result) = await group.next() { results[done] = result }
      return results
    }
    var views: [ContainerView] = []
    views.reserveCapacity(records.count)
    for result in results {
      guard let result else { continue }
      views.append(try result.get())
    }
    return views
  }

  private func viewResult(_ record: ContainerRecord) async -> Result<ContainerView, CrispError> {
    do throws(CrispError) {
      return .success(try await view(record))
    } catch {
      return .failure(error)
    }
  }

  func containerStatus(request: Runtime_V1_ContainerStatusRequest, context: ServerContext) async throws
    -> Runtime_V1_ContainerStatusResponse
  {
    try await rpc { () async throws(CrispError) in
      guard let record = try runtime.resolveContainer(request.containerID) else {
        throw CrispError(.notFound, "container \"\(request.containerID)\" not found")
      }
      let view = try await view(record)
      var response = Runtime_V1_ContainerStatusResponse()
      response.status = status(of: view)
      if request.verbose {
        let bundle = ContainerBundle(paths: runtime.paths, containerID: record.id)
        var info: [String: Any] = ["pid": view.pid, "sandboxID": record.podID]
        if let spec = FileManager.default.contents(atPath: bundle.directory + "/config.json"),
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
  func status(of view: ContainerView) -> Runtime_V1_ContainerStatus {
    let record = view.record
    var status = Runtime_V1_ContainerStatus()
    status.id = record.id
    status.metadata = view.config.metadata
    status.state = view.state
    status.createdAt = record.createdAt
    status.startedAt = view.startedAt
    status.finishedAt = view.finishedAt
    status.exitCode = view.exitCode
    status.image = view.config.image
    status.imageRef = record.imageID
    status.imageID = record.imageID
    status.reason = view.reason
    status.message = view.message
    status.labels = view.config.labels
    status.annotations = view.config.annotations
    status.mounts = view.config.mounts
    status.logPath = record.logPath
    if view.config.hasLinux { status.resources.linux = view.config.linux.resources }
    if view.state == .containerRunning, view.pid > 0, let user = Self.processUser(view.pid) {
      status.user.linux = user
    }
    return status
  }

  /// The uid, gid and supplementary groups the container's first process really has, from
  /// /proc (what kubelet shows for supplementalGroupsPolicy); nil once it is gone.
  static func processUser(_ pid: Int32) -> Runtime_V1_LinuxContainerUser? {
    var user = Runtime_V1_LinuxContainerUser()
    var found = 0
    for line in readWholeFileOrEmpty("/proc/\(pid)/status").split(separator: "\n") {
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
