import CCrispSys
import CrispCore
import CrispIPC
import CrispLinux
import Foundation
import Logging
import Synchronization

/// `netd.portForward`: a TCP connection to 127.0.0.1:<port> inside a pod's network
/// namespace, handed to frontd as a descriptor, so that frontd (which holds no
/// privilege for it) relays bytes on an ordinary socket.
///
/// netd answers with a fresh unix socket (mode 0600, under `<run_root>/portforward`);
/// once frontd connects, a short-lived thread enters the pod's namespace (setns, which
/// netd's CAP_SYS_ADMIN allows and its seccomp filter does not refuse), makes the
/// socket (AF_INET, among the families the filter allows) and connects; the socket is
/// sent with SCM_RIGHTS (byte 0), or the error as text (byte 1 and the message).
/// No thread of netd's own ever changes namespace.
final class PortForwarder: Sendable {
  let directory: String
  let networks: PodNetworks
  let logger: Logger
  private let counter = Atomic<Int>(0)
  /// How long the TCP connect inside the pod may take.
  static let connectTimeoutMs: Int32 = 10_000

  init(directory: String, networks: PodNetworks, logger: Logger) {
    self.directory = directory
    self.networks = networks
    self.logger = logger
  }

  func open(_ request: NetPortForward.Request) async throws(CrispError) -> SessionSocket {
    try PodValidation.podID(request.podID)
    try request.validate()
    let info = try await networks.status(request.podID)
    let netns = info.namespaces.network
    // Empty: a host-network pod, whose 127.0.0.1 is netd's own.
    if !netns.isEmpty && !NamespacePinner.isPinned(netns) {
      throw CrispError(
        .failedPrecondition, "the network namespace of pod \(request.podID) is gone (\(netns) is not pinned)")
    }
    try makeDirectories(directory, mode: 0o700)
    let number = counter.add(1, ordering: .relaxed).newValue
    let path = directory + "/\(request.podID.prefix(16))-\(number).sock"
    let listener = try UnixSocket.listen(path: path, mode: 0o600, backlog: 1)
    let job = Handover(
      listener: listener, path: path, netns: netns, port: UInt16(request.port), podID: request.podID, logger: logger)
    // Its own thread: it waits for frontd and for the connect, and must not hold a
    // thread of Swift's cooperative pool meanwhile.
    Thread.detachNewThread { job.run() }
    return SessionSocket(socketPath: path)
  }
}

/// One port-forward connection on its way to frontd.
private struct Handover: Sendable {
  let listener: Int32
  let path: String
  let netns: String
  let port: UInt16
  let podID: String
  let logger: Logger

  func run() {
    guard let connection = acceptOne() else {
      logger.warning("nobody took a port-forward connection", metadata: ["socket": "\(path)", "port": "\(port)"])
      return
    }
    defer { close(connection) }
    var error: Int32 = 0
    var step: Int32 = 0
    let tcp = crisp_connect_in_netns(netns, port, PortForwarder.connectTimeoutMs, &error, &step)
    var payload: [UInt8]
    if tcp >= 0 {
      payload = [NetPortForward.connected]
    } else {
      let reason = Files.errnoText(error)
      let message: String
      switch step {
      case 4: message = "connect to port \(port) in pod \(podID): \(reason)"
      case 3: message = "cannot make a TCP socket in pod \(podID): \(reason)"
      case 0: message = "cannot start the thread that enters pod \(podID)'s network namespace: \(reason)"
      default: message = "cannot enter the network namespace of pod \(podID) (\(netns)): \(reason)"
      }
      logger.info("port forward failed", metadata: ["pod": "\(podID.prefix(12))", "error": "\(message)"])
      payload = [NetPortForward.failed] + Array(message.utf8)
    }
    let sent = payload.withUnsafeBytes { crisp_send_fd(connection, tcp, $0.baseAddress, $0.count) }
    if sent != 0 {
      logger.warning(
        "cannot hand the port-forward connection over", metadata: ["error": "\(Files.errnoText())"])
    }
    if tcp >= 0 { close(tcp) }
  }

  /// The one connection, within `SessionSocket.acceptTimeoutMs`; the socket file is
  /// removed either way.
  private func acceptOne() -> Int32? {
    defer {
      unlink(path)
      close(listener)
    }
    let deadline = MonotonicClock.milliseconds() + SessionSocket.acceptTimeoutMs
    while true {
      var entry = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
      let ready = poll(&entry, 1, Int32(clamping: max(0, deadline - MonotonicClock.milliseconds())))
      if ready < 0 && errno == EINTR { continue }
      guard ready > 0 else { return nil }
      let connection = crisp_accept_cloexec(listener)
      if connection >= 0 { return connection }
      if errno != EINTR && errno != ECONNABORTED { return nil }
    }
  }
}
