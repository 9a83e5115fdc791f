import CRIAPI
import CrispCore

/// A pod as frontd holds it in memory: its record, and the CRI config it was created
/// with, decoded once.
struct Sandbox: TableEntry {
  var record: PodRecord
  let config: Runtime_V1_PodSandboxConfig

  var id: String { record.id }
  var createdAt: Int64 { record.createdAt }

  init(record: PodRecord, config: Runtime_V1_PodSandboxConfig) {
    self.record = record
    self.config = config
  }

  /// From its stored record; the config decoded from the record's bytes.
  init(record: PodRecord) throws(CrispError) {
    do {
      self.init(record: record, config: try Runtime_V1_PodSandboxConfig(serializedBytes: record.config))
    } catch {
      throw CrispError(.internal, "stored config of pod \(record.id) cannot be decoded: \(error)")
    }
  }

  /// Whether the pod's containers share one PID namespace (then it has an infra process).
  var sharesPIDNamespace: Bool { config.linux.securityContext.namespaceOptions.pid == .pod }
  var hostIPC: Bool { config.linux.securityContext.namespaceOptions.ipc == .node }
  var criState: Runtime_V1_PodSandboxState { record.state == .ready ? .sandboxReady : .sandboxNotready }
}

/// A container as frontd holds it in memory: its record, and its CRI config, decoded
/// once (UpdateContainerResources changes its resources). Its live state is its
/// monitor's (`ContainerView`).
struct Container: TableEntry {
  var record: ContainerRecord
  var config: Runtime_V1_ContainerConfig

  var id: String { record.id }
  var createdAt: Int64 { record.createdAt }
  var podID: String { record.podID }

  init(record: ContainerRecord, config: Runtime_V1_ContainerConfig) {
    self.record = record
    self.config = config
  }

  init(record: ContainerRecord) throws(CrispError) {
    do {
      self.init(record: record, config: try Runtime_V1_ContainerConfig(serializedBytes: record.config))
    } catch {
      throw CrispError(.internal, "stored config of container \(record.id) cannot be decoded: \(error)")
    }
  }
}

extension Runtime_V1_PodSandboxConfig {
  func encoded() throws(CrispError) -> [UInt8] {
    do {
      return try serializedBytes()
    } catch {
      throw CrispError(.invalidArgument, "pod sandbox config cannot be encoded: \(error)")
    }
  }
}

extension Runtime_V1_ContainerConfig {
  func encoded() throws(CrispError) -> [UInt8] {
    do {
      return try serializedBytes()
    } catch {
      throw CrispError(.invalidArgument, "container config cannot be encoded: \(error)")
    }
  }
}

/// A random container or pod ID: 64 lower-case hex digits, as kubelet and crictl expect.
func newRuntimeID() -> String {
  var generator = SystemRandomNumberGenerator()
  return (0..<4).map { _ in
    let hex = String(generator.next() as UInt64, radix: 16)
    return String(repeating: "0", count: 16 - hex.count) + hex
  }.joined()
}
