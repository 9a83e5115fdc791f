import CrispCore
import CrispIPC
import CrispTestSupport
import Foundation
import Testing

/// `netd.portForward`: netd connects inside a pod's network namespace and hands the
/// TCP socket over a unix socket (SCM_RIGHTS), under its reduced capabilities and
/// seccomp filter.
@Suite struct NetdPortForwardTests {
  @Test func aPortForwardSocketReachesAListenerInsideThePod() async throws {
    try await withNetd { netd in
      try netd.writeBridgeConfig()
      try await netd.start()
      let id = NetdInstance.podID()
      let pod = try await netd.setup(id)
      // netd runs confined, as in production.
      let netdPid = try await netd.client.call(Health.self).pid
      #expect(readWholeFile("/proc/\(netdPid)/status").contains("Seccomp:\t2"))

      let server = try PodProcess(netns: pod.namespaces.network, python: pythonEchoServer(port: 7070, clients: 2))
      defer { server.stop() }
      #expect(server.readLine() == "ready")

      // Two connections at once, each its own TCP connection inside the pod.
      let first = try await portForward(netd, id, 7070)
      let second = try await portForward(netd, id, 7070)
      defer {
        close(first)
        close(second)
      }
      try sendAll(first, "one")
      try sendAll(second, "two")
      #expect(try receive(first) == "echo:one")
      #expect(try receive(second) == "echo:two")
      // The pod saw connections from its own loopback, not from the host.
      #expect(server.readLine() == "peer 127.0.0.1")
      #expect(server.readLine() == "peer 127.0.0.1")
      try await netd.teardown(id)
    }
  }

  @Test func aRefusedPortAndBadRequestsGiveClearErrors() async throws {
    try await withNetd { netd in
      try netd.writeBridgeConfig()
      try await netd.start()
      let id = NetdInstance.podID()
      _ = try await netd.setup(id)

      let answer = try await netd.client.call(NetPortForward.self, .init(podID: id, port: 5999))
      let mode = try FileManager.default.attributesOfItem(atPath: answer.socketPath)[.posixPermissions] as? Int
      #expect(mode == 0o600)
      #expect(answer.socketPath.hasPrefix(netd.paths.runRoot + "/"))
      let handed = try receiveHandover(answer.socketPath)
      #expect(handed.fd == -1)
      #expect(handed.payload.first == 1)
      let message = String(decoding: handed.payload.dropFirst(), as: UTF8.self)
      #expect(message.contains("port 5999") && message.contains("Connection refused"), "\(message)")
      #expect(message.contains(id))
      #expect(!FileManager.default.fileExists(atPath: answer.socketPath))

      let unknown = await #expect(throws: CrispError.self) {
        try await netd.client.call(NetPortForward.self, .init(podID: NetdInstance.podID(), port: 80))
      }
      #expect(unknown?.code == .notFound)
      let badPort = await #expect(throws: CrispError.self) {
        try await netd.client.call(NetPortForward.self, .init(podID: id, port: 0))
      }
      #expect(badPort?.code == .invalidArgument)
      #expect(badPort?.message.contains("port") == true)
      let badID = await #expect(throws: CrispError.self) {
        try await netd.client.call(NetPortForward.self, .init(podID: "../../etc", port: 80))
      }
      #expect(badID?.code == .invalidArgument)

      // Nobody connects: the socket goes away after its deadline.
      let unused = try await netd.client.call(NetPortForward.self, .init(podID: id, port: 5999))
      try await waitUntil("the unused socket is removed", timeout: .seconds(15)) {
        !FileManager.default.fileExists(atPath: unused.socketPath)
      }
      try await netd.teardown(id)
    }
  }

  // MARK: the client side, written from the contract

  func portForward(_ netd: NetdInstance, _ podID: String, _ port: Int32) async throws -> Int32 {
    let answer = try await netd.client.call(NetPortForward.self, .init(podID: podID, port: port))
    let handed = try receiveHandover(answer.socketPath)
    guard handed.payload == [0], handed.fd >= 0 else {
      throw FixtureFailure("no socket: \(String(decoding: handed.payload.dropFirst(), as: UTF8.self))")
    }
    return handed.fd
  }

  /// Connects to netd's socket and receives one message with at most one descriptor.
  func receiveHandover(_ path: String) throws -> (payload: [UInt8], fd: Int32) {
    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { buffer in
      for (i, byte) in path.utf8.enumerated() { buffer[i] = byte }
    }
    let rc = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
      }
    }
    guard rc == 0 else { throw FixtureFailure("connect \(path): \(String(cString: strerror(errno)))") }
    var timeout = timeval(tv_sec: 20, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

    // struct cmsghdr { size_t len; int level; int type; } then the descriptor, 8-byte aligned.
    let controlSize = 24
    let control = UnsafeMutableRawPointer.allocate(byteCount: controlSize, alignment: 8)
    defer { control.deallocate() }
    control.initializeMemory(as: UInt8.self, repeating: 0, count: controlSize)
    var data = [UInt8](repeating: 0, count: 4096)
    let received = data.withUnsafeMutableBytes { buffer -> Int in
      var vector = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
      return withUnsafeMutablePointer(to: &vector) { vectorPointer in
        var message = msghdr()
        message.msg_iov = vectorPointer
        message.msg_iovlen = 1
        message.msg_control = control
        message.msg_controllen = controlSize
        return recvmsg(fd, &message, 0)
      }
    }
    guard received > 0 else {
      throw FixtureFailure("recvmsg: \(received == 0 ? "EOF" : String(cString: strerror(errno)))")
    }
    var passed: Int32 = -1
    let length = control.load(as: Int.self)
    if length >= 20, control.load(fromByteOffset: 8, as: Int32.self) == SOL_SOCKET,
      control.load(fromByteOffset: 12, as: Int32.self) == 1  // SCM_RIGHTS
    {
      passed = control.load(fromByteOffset: 16, as: Int32.self)
    }
    return (Array(data[0..<received]), passed)
  }

  func sendAll(_ fd: Int32, _ text: String) throws {
    let bytes = Array(text.utf8)
    guard send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else {
      throw FixtureFailure("send: \(String(cString: strerror(errno)))")
    }
  }

  func receive(_ fd: Int32) throws -> String {
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var buffer = [UInt8](repeating: 0, count: 256)
    let n = recv(fd, &buffer, buffer.count, 0)
    guard n > 0 else { throw FixtureFailure("recv: \(n == 0 ? "EOF" : String(cString: strerror(errno)))") }
    return String(decoding: buffer[0..<n], as: UTF8.self)
  }
}

struct FixtureFailure: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}

/// Python that listens on 127.0.0.1 only (so only a connection made inside the pod
/// reaches it), prints "ready", then serves `clients` connections at once: each gets
/// "echo:" + what it sent, and the peer's address is printed.
func pythonEchoServer(port: Int, clients: Int) -> String {
  """
  import socket, threading
  s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  s.bind(("127.0.0.1", \(port))); s.listen(5); print("ready", flush=True)
  def serve(c, peer):
      print("peer %s" % peer[0], flush=True)
      data = c.recv(100); c.sendall(b"echo:" + data); c.close()
  threads = []
  for _ in range(\(clients)):
      c, peer = s.accept(); t = threading.Thread(target=serve, args=(c, peer)); t.start(); threads.append(t)
  for t in threads: t.join()
  """
}
