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
    let (id, stream, subscriber) = events.subscribe()
    defer { events.unsubscribe(id) }
    logger.debug("container events subscriber", metadata: ["subscriber": "\(id)"])
    for await event in stream {
      try await response.write(event)
    }
    if subscriber.dropped {
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
              events.record(.started, containerID: event.containerID, at: event.startedAt)
            case ContainerExitedEvent.name:
              let event = try received.decode(ContainerExitedEvent.self)
              events.record(.stopped, containerID: event.containerID, at: event.finishedAt)
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

  /// The CRI event for a recorded one; nil for a container frontd does not know (a
  /// pod's infra process, or an exit reported after the removal).
  func containerEvent(_ pending: ContainerEventHub.Pending) async -> Runtime_V1_ContainerEventResponse? {
    var podID = pending.podID
    if pending.kind != .deleted || podID.isEmpty {
      guard let record = try? runtime.store.container(pending.containerID) else { return nil }
      podID = record.podID
    }
    var event = Runtime_V1_ContainerEventResponse()
    event.containerID = pending.containerID
    event.containerEventType = pending.kind.criType
    event.createdAt = pending.at
    if let pod = try? runtime.store.pod(podID), let status = try? podStatus(pod) { event.podSandboxStatus = status }
    for record in (try? runtime.store.containers(podID: podID)) ?? [] {
      if let view = try? await view(record) { event.containersStatuses.append(status(of: view)) }
    }
    return event
  }
}
