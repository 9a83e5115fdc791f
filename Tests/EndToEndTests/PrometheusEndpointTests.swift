import CRIAPI
import CrispTestSupport
import Foundation
import GRPCCore
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// frontd's `/metrics` (metrics_port): real daemons, real CRI calls, the endpoint read
/// with a plain HTTP/1.1 client over a socket of the test's own. Counts are compared as
/// differences between two scrapes, so the harness's own calls do not matter.
@Suite struct PrometheusEndpointTests {
  @Test func familiesCountWhatWasDone() async throws {
    let port = try Self.freePort()
    try await withContainerRuntime(frontdConfig: "metrics_port = \(port)") { crisp, registry, podID in
      #expect(crisp.log(.frontd).contains("http://127.0.0.1:\(port)/metrics"))
      let before = try Scrape(try Self.get("/metrics", port: port))

      for _ in 0..<3 { _ = try await crisp.withRuntime { try await $0.version(.init()) } }
      for _ in 0..<2 {
        let missing = await #expect(throws: RPCError.self) {
          try await crisp.containerStatus(String(repeating: "d", count: 64))
        }
        #expect(missing?.code == .notFound)
      }
      let image = "\(registry.address)/crisp/busybox:latest"
      let imageID = try await crisp.pull(image)
      let second = try await crisp.runPod(PodSandboxTests.podConfig(name: "second"))
      try await crisp.stopPod(second)
      let container = try await crisp.createContainer(
        podID: podID, name: "sleeper", image: image, command: ["sleep", "1000"])
      try await crisp.startContainer(container)

      let text = try Self.get("/metrics", port: port)
      let after = try Scrape(text)
      func delta(_ name: String, _ labels: [String: String] = [:]) -> Double {
        (after.value(name, labels) ?? 0) - (before.value(name, labels) ?? 0)
      }
      // Per-method latency histograms and error counts by code.
      #expect(delta("crisp_cri_request_duration_seconds_count", ["method": "Version"]) == 3)
      #expect(delta("crisp_cri_request_duration_seconds_count", ["method": "ContainerStatus"]) == 2)
      #expect(delta("crisp_cri_request_duration_seconds_count", ["method": "RunPodSandbox"]) == 1)
      #expect(delta("crisp_cri_request_duration_seconds_count", ["method": "PullImage"]) == 1)
      #expect(delta("crisp_cri_request_errors_total", ["method": "ContainerStatus", "code": "NotFound"]) == 2)
      #expect(after.series("crisp_cri_request_errors_total").allSatisfy { $0.labels["method"] != "Version" })
      let versions = after.value("crisp_cri_request_duration_seconds_count", ["method": "Version"]) ?? 0
      #expect(
        after.value("crisp_cri_request_duration_seconds_bucket", ["method": "Version", "le": "+Inf"]) == versions)
      #expect((after.value("crisp_cri_request_duration_seconds_sum", ["method": "Version"]) ?? 0) > 0)

      // The pull: its duration and the image's size.
      var status = Runtime_V1_ImageStatusRequest()
      status.image.image = imageID
      let size = try await crisp.withImages { try await $0.imageStatus(status) }.image.size
      #expect(size > 0)
      #expect(delta("crisp_image_pull_duration_seconds_count", ["result": "success"]) == 1)
      #expect(delta("crisp_image_pull_bytes_total") == Double(size))

      // Pod network setup and teardown by netd.
      #expect(delta("crisp_cni_duration_seconds_count", ["operation": "ADD", "result": "success"]) == 1)
      #expect(delta("crisp_cni_duration_seconds_count", ["operation": "DEL", "result": "success"]) == 1)

      // Gauges computed at the scrape from the store and the shims.
      #expect(after.value("crisp_containers", ["state": "running"]) == 1)
      #expect(after.value("crisp_containers", ["state": "exited"]) == 0)
      #expect(after.value("crisp_pods", ["state": "ready"]) == 1)
      #expect(after.value("crisp_pods", ["state": "notready"]) == 1)
      #expect(after.value("crisp_shims", [:]) == 1)

      for (family, type) in [
        ("crisp_cri_request_duration_seconds", "histogram"), ("crisp_cri_request_errors_total", "counter"),
        ("crisp_image_pull_duration_seconds", "histogram"), ("crisp_image_pull_bytes_total", "counter"),
        ("crisp_cni_duration_seconds", "histogram"), ("crisp_shims", "gauge"), ("crisp_containers", "gauge"),
        ("crisp_pods", "gauge"),
      ] {
        #expect(text.contains("# TYPE \(family) \(type)\n"), "\(family) is a \(type)")
        #expect(text.contains("# HELP \(family) "), "\(family) has help")
      }

      // Removing everything shows in the next scrape.
      try await crisp.removePod(podID)
      try await crisp.removePod(second)
      try await waitUntil("the gauges drop to 0", timeout: .seconds(20), every: .milliseconds(200)) {
        let empty = try Scrape(try Self.get("/metrics", port: port))
        return empty.value("crisp_containers", ["state": "running"]) == 0
          && empty.value("crisp_pods", ["state": "ready"]) == 0 && empty.value("crisp_pods", ["state": "notready"]) == 0
          && empty.value("crisp_shims", [:]) == 0
      }

      // Only GET (and HEAD) of /metrics.
      #expect(try Self.get("/other", port: port, statusLine: true).hasPrefix("HTTP/1.1 404"))
      #expect(try Self.get("/metrics", port: port, method: "POST", statusLine: true).hasPrefix("HTTP/1.1 405"))
    }
  }

  @Test func offByDefault() async throws {
    try await withCrisp { crisp in
      try crisp.writeCNIConfig()
      try await crisp.startAll()
      _ = try await crisp.withRuntime { try await $0.version(.init()) }
      #expect(!crisp.log(.frontd).contains("/metrics"))
      let pid = try #require(crisp.pid(.frontd))
      #expect(Self.listeningTCPPorts(pid: pid).count == 1, "only the streaming server listens on TCP")
    }
  }

  // MARK: a plain HTTP/1.1 client

  /// The body of a GET (or the whole answer, with `statusLine`), read until the server closes.
  static func get(_ path: String, port: Int, method: String = "GET", statusLine: Bool = false) throws -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    defer { close(fd) }
    var timeout = timeval(tv_sec: 10, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
      }
    }
    guard connected == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .ECONNREFUSED) }
    let request = Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nContent-Length: 0\r\n\r\n".utf8)
    guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == request.count else {
      throw POSIXError(.EIO)
    }
    var answer: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
      let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
      if n < 0 && errno == EINTR { continue }
      guard n > 0 else {
        if n < 0 { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        break
      }
      answer += chunk[0..<n]
    }
    let text = String(decoding: answer, as: UTF8.self)
    if statusLine { return text }
    guard text.hasPrefix("HTTP/1.1 200"), let split = text.range(of: "\r\n\r\n") else {
      throw POSIXError(.EBADMSG)
    }
    let headers = text[..<split.lowerBound].lowercased()
    #expect(headers.contains("content-type: text/plain; version=0.0.4"))
    return String(text[split.upperBound...])
  }

  static func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
      }
    }
    guard bound else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    return Int(UInt16(bigEndian: address.sin_port))
  }

  /// Local ports the process listens on (TCP, IPv4 and IPv6), from its sockets' inodes.
  static func listeningTCPPorts(pid: Int32) -> [Int] {
    let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
    let inodes = Set(
      fds.compactMap { fd -> String? in
        let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)")
        guard let target, target.hasPrefix("socket:[") else { return nil }
        return String(target.dropFirst(8).dropLast())
      })
    var ports: [Int] = []
    for table in ["tcp", "tcp6"] {
      let text = (try? String(contentsOfFile: "/proc/\(pid)/net/\(table)", encoding: .utf8)) ?? ""
      for line in text.split(separator: "\n").dropFirst() {
        let fields = line.split(separator: " ")
        // sl local remote st ... inode (field 9); state 0A is LISTEN.
        guard fields.count > 9, fields[3] == "0A", inodes.contains(String(fields[9])) else { continue }
        if let port = fields[1].split(separator: ":").last.flatMap({ Int($0, radix: 16) }) { ports.append(port) }
      }
    }
    return ports
  }
}

/// Prometheus' text format, parsed enough to look series up: `name{k="v",…} value`.
struct Scrape {
  struct Series {
    var name: String
    var labels: [String: String]
    var value: Double
  }

  var all: [Series] = []

  init(_ text: String) throws {
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
      guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
        throw POSIXError(.EBADMSG)
      }
      let key = line[..<space]
      guard let brace = key.firstIndex(of: "{") else {
        all.append(Series(name: String(key), labels: [:], value: value))
        continue
      }
      var labels: [String: String] = [:]
      // Label values here never hold quotes or commas.
      for pair in key[key.index(after: brace)..<key.index(before: key.endIndex)].split(separator: ",") {
        let parts = pair.split(separator: "=", maxSplits: 1)
        guard parts.count == 2 else { throw POSIXError(.EBADMSG) }
        labels[String(parts[0])] = String(parts[1].dropFirst().dropLast())
      }
      all.append(Series(name: String(key[..<brace]), labels: labels, value: value))
    }
  }

  func series(_ name: String) -> [Series] { all.filter { $0.name == name } }

  /// The value of the series with exactly these labels (a histogram's `le` included).
  func value(_ name: String, _ labels: [String: String]) -> Double? {
    all.first { $0.name == name && $0.labels == labels }?.value
  }
}
