import CRIAPI
import CrispCore
import CrispIPC
import GRPCCore

/// GetContainerEvents: a stream of CONTAINER_CREATED / STARTED / STOPPED / DELETED
/// events, each with the pod's status and the statuses of its containers.
extension RuntimeService {
  func getContainerEvents(
    request: Runtime_V1_GetEventsRequest, response: RPCWriter<Runtime_V1_ContainerEventResponse>,
    context: ServerContext
  ) async throws {
    let subscription = events.subscribe()
    defer { events.unsubscribe(subscription.id) }
    logger.debug("container events subscriber", metadata: ["subscriber": "\(subscription.id)"])
    for await event in subscription.elements {
      try await response.write(event)
    }
    if subscription.dropped {
      throw RPCError(
        code: .resourceExhausted,
        message:
          "GetContainerEvents: this subscriber fell \(events.bufferSize) events behind and was dropped; subscribe again"
      )
    }
  }

  /// Runs until frontd stops: records the shims' pushed starts and exits, and builds
  /// and hands out every recorded event.
  func runContainerEvents(_ receiver: IPCEventReceiver) async {
    await withDiscardingTaskGroup { tasks in
      tasks.addTask {
        while let received = await receiver.next() {
          do {
            switch received.name {
            case ContainerStartedEvent.name:
              let event = try received.decode(ContainerStartedEvent.self)
              // A pod's infra process, or a container removed meanwhile: no event.
              guard let record = containers.records.get(event.containerID)?.record else { continue }
              events.record(.started, record, at: event.startedAt)
            case ContainerExitedEvent.name:
              let event = try received.decode(ContainerExitedEvent.self)
              guard let record = containers.records.get(event.containerID)?.record else { continue }
              // The shim knows when it started (its own start event may still be on its way).
              let answer = await monitors.state(record.id)
              if let answer, answer.state == .exited { monitors.observe(record.id, answer) }
              let startedAt = answer?.startedAt ?? 0
              let exit = ShimContainerState(
                state: .exited, pid: 0, createdAt: record.createdAt, startedAt: startedAt, finishedAt: event.finishedAt,
                exitCode: event.exitCode, oomKilled: event.oomKilled)
              events.record(.stopped, record, at: event.finishedAt, exit: exit)
            default:
              logger.debug("unknown shim event", metadata: ["event": "\(received.name)"])
            }
          } catch {
            logger.warning("bad shim event", metadata: ["error": "\(error)"])
          }
        }
        events.close()
      }
      tasks.addTask { await events.run { await containerEvent($0) } }
    }
  }

  /// The CRI event for a recorded one. Statuses are read when the event is built; the
  /// event's own container shows the state the event reports (it may have moved on, or
  /// be gone, by then).
  func containerEvent(_ pending: ContainerEventHub.Pending) async -> Runtime_V1_ContainerEventResponse? {
    var event = Runtime_V1_ContainerEventResponse()
    event.containerID = pending.containerID
    event.containerEventType = pending.kind.criType
    event.createdAt = pending.at
    if let sandbox = sandboxes.records.get(pending.podID) {
      event.podSandboxStatus = Self.status(of: sandbox)
    }
    let listed = containers.records.all { $0.podID == pending.podID }
    var statuses = await containers.views(listed).map { Self.status(of: $0) }
    if pending.kind != .deleted {
      if !statuses.contains(where: { $0.id == pending.containerID }), let record = pending.record,
        let container = try? Container(record: record)
      {
        statuses.append(Self.status(of: await containers.view(container)))
      }
      if let index = statuses.firstIndex(where: { $0.id == pending.containerID }) {
        Self.show(pending, in: &statuses[index])
      }
    } else {
      statuses.removeAll { $0.id == pending.containerID }
    }
    event.containersStatuses = statuses
    return event
  }

  /// The event's own container in the state the event reports.
  static func show(_ pending: ContainerEventHub.Pending, in status: inout Runtime_V1_ContainerStatus) {
    switch pending.kind {
    case .created:
      status.state = .containerCreated
      status.startedAt = 0
      status.finishedAt = 0
      status.exitCode = 0
      status.reason = ""
      status.message = ""
    case .started:
      status.state = .containerRunning
      if status.startedAt == 0 { status.startedAt = pending.at }
      status.finishedAt = 0
      status.exitCode = 0
      status.reason = ""
      status.message = ""
    case .stopped:
      status.state = .containerExited
      if let exit = pending.exit {
        status.finishedAt = exit.finishedAt
        status.exitCode = exit.exitCode
        status.reason = exit.oomKilled ? "OOMKilled" : exit.exitCode == 0 ? "Completed" : "Error"
        status.message = ""
      }
    case .deleted: break
    }
  }
}
