import CCrispSys
import CrispCore
import CrispIPC
import Dispatch
import Foundation
import Streaming

/// The streaming server's backend in crisp: exec and attach are carried out by the
/// container's shimd, port forwarding by netd; each hands frontd a unix socket
/// (session framing, or a TCP socket passed with SCM_RIGHTS). frontd itself needs no
/// privilege for any of it.
final class CrispStreamingBackend: StreamingBackend {
  let sandboxes: Sandboxes
  let containers: Containers
  let netd: IPCClient
  /// How long netd may take to hand a port-forward connection over (its own connect
  /// inside the pod is bounded by 10 s).
  static let handoverTimeoutSeconds = 20

  init(sandboxes: Sandboxes, containers: Containers, netd: IPCClient) {
    self.sandboxes = sandboxes
    self.containers = containers
    self.netd = netd
  }

  func exec(containerID: String, command: [String], options: StreamOptions) async throws -> Int32 {
    guard !command.isEmpty, !command[0].isEmpty else {
      throw CrispError(.invalidArgument, "Exec: cmd must name a command")
    }
    let (id, shim) = try await runningContainer(containerID)
    let answer = try await shim.streamExec(
      .init(
        command: command, tty: options.tty, stdin: options.stdin, stdout: options.stdout, stderr: options.stderr))
    return try await Self.connect(answer.socketPath, to: "the exec session of container \(id.prefix(12))")
  }

  func attach(containerID: String, options: StreamOptions) async throws -> Int32 {
    let (id, shim) = try await runningContainer(containerID)
    let answer = try await shim.streamAttach(
      .init(tty: options.tty, stdin: options.stdin, stdout: options.stdout, stderr: options.stderr))
    return try await Self.connect(answer.socketPath, to: "the attach session of container \(id.prefix(12))")
  }

  func portForward(podID: String, port: UInt16) async throws -> Int32 {
    guard port > 0 else { throw CrispError(.invalidArgument, "PortForward: port must be 1-65535, got 0") }
    guard let pod = try sandboxes.resolve(podID)?.record else {
      throw CrispError(.notFound, "pod sandbox \"\(podID)\" not found")
    }
    guard pod.state == .ready else {
      throw CrispError(.failedPrecondition, "pod sandbox \(pod.id) is not ready (\(pod.state.rawValue))")
    }
    // netd down: the IPC client throws `unavailable` naming netd.
    let answer = try await netd.call(NetPortForward.self, .init(podID: pod.id, port: Int32(port)))
    return try await Self.blocking { () throws(CrispError) -> Int32 in
      let socket = try Self.connectBlocking(answer.socketPath, to: "netd's port-forward socket")
      defer { close(socket) }
      var timeout = timeval(tv_sec: Self.handoverTimeoutSeconds, tv_usec: 0)
      setsockopt(socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
      var payload = [UInt8](repeating: 0, count: 4096)
      var fd: Int32 = -1
      let count = payload.withUnsafeMutableBytes { crisp_recv_fd_data(socket, $0.baseAddress, $0.count, &fd) }
      guard count > 0 else {
        if fd >= 0 { close(fd) }
        let reason = count == 0 ? "it closed the connection" : Files.errnoText()
        throw CrispError(.unavailable, "netd handed over no connection to port \(port) in pod \(pod.id): \(reason)")
      }
      if payload[0] == NetPortForward.connected, fd >= 0 { return fd }
      if fd >= 0 { close(fd) }
      let message = String(decoding: payload[1..<count], as: UTF8.self)
      throw CrispError(
        .unavailable, message.isEmpty ? "netd could not connect to port \(port) in pod \(pod.id)" : message)
    }
  }

  /// The container (an ID or unique prefix) and its shim, which must run it.
  private func runningContainer(_ text: String) async throws(CrispError) -> (String, any ContainerMonitor) {
    guard let record = try containers.resolve(text)?.record else {
      throw CrispError(.notFound, "container \"\(text)\" not found")
    }
    let monitors = containers.monitors
    guard let shim = monitors.monitor(record.id), let state = await monitors.state(record.id) else {
      throw CrispError(.failedPrecondition, "container \(record.id) is not running (its shim is gone)")
    }
    guard state.state == .running else {
      throw CrispError(.failedPrecondition, "container \(record.id) is not running (\(state.state.rawValue))")
    }
    return (record.id, shim)
  }

  private static func connect(_ path: String, to what: String) async throws(CrispError) -> Int32 {
    try await blocking { () throws(CrispError) in try connectBlocking(path, to: what) }
  }

  /// A connected unix stream socket (blocking, close-on-exec).
  private static func connectBlocking(_ path: String, to what: String) throws(CrispError) -> Int32 {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(path.utf8)
    guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
      throw CrispError(.internal, "socket path \(path) is too long")
    }
    withUnsafeMutableBytes(of: &address.sun_path) { buffer in
      for (i, byte) in bytes.enumerated() { buffer[i] = byte }
    }
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw CrispError(.internal, "socket: \(Files.errnoText())") }
    let rc = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    guard rc == 0 else {
      let reason = Files.errnoText()
      close(fd)
      throw CrispError(.unavailable, "cannot connect to \(what) at \(path): \(reason)")
    }
    return fd
  }

  /// Runs blocking socket calls off Swift's cooperative pool.
  private static func blocking<T: Sendable>(
    _ body: @escaping @Sendable () throws(CrispError) -> T
  ) async throws(CrispError) -> T {
    let result: Result<T, CrispError> = await withCheckedContinuation { continuation in
      DispatchQueue.global().async {
        do throws(CrispError) {
          continuation.resume(returning: .success(try body()))
        } catch {
          continuation.resume(returning: .failure(error))
        }
      }
    }
    return try result.get()
  }
}
