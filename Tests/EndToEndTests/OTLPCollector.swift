import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// A tiny OpenTelemetry collector: OTLP/HTTP on 127.0.0.1 (POST /v1/traces, protobuf
/// bodies), decoding each span's service, IDs, name, attributes and status with a
/// protobuf wire reader of its own, so that the test checks what a real collector
/// would receive, byte for byte.
final class OTLPCollector: @unchecked Sendable {
  struct Span: Sendable, CustomStringConvertible {
    var service = ""
    var traceID = ""
    var spanID = ""
    var parentSpanID = ""
    var name = ""
    /// OTLP SpanKind: 2 server, 3 client.
    var kind = 0
    var attributes: [String: String] = [:]
    /// OTLP StatusCode: 0 unset, 1 ok, 2 error.
    var statusCode = 0

    var description: String {
      "\(service) \(name) trace=\(traceID) span=\(spanID) parent=\(parentSpanID) kind=\(kind) status=\(statusCode) \(attributes)"
    }
  }

  let port: Int
  var endpoint: String { "http://127.0.0.1:\(port)" }
  private let listener: Int32
  private let lock = NSLock()
  private var spans: [Span] = []
  private var problems: [String] = []
  private var connections: [Int32] = []

  init() throws {
    let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard listener >= 0 else { throw CollectorError("socket: \(String(cString: strerror(errno)))") }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Bool in
        bind(listener, pointer, length) == 0 && listen(listener, 16) == 0
          && getsockname(listener, pointer, &length) == 0
      }
    }
    guard bound else {
      close(listener)
      throw CollectorError("bind/listen: \(String(cString: strerror(errno)))")
    }
    port = Int(UInt16(bigEndian: address.sin_port))
    self.listener = listener
    let accepting = Thread { [self] in acceptLoop() }
    accepting.start()
  }

  /// Stops accepting and closes every connection (the threads then end).
  func stop() {
    shutdown(listener, Int32(SHUT_RDWR))
    close(listener)
    lock.withLock {
      for fd in connections { shutdown(fd, Int32(SHUT_RDWR)) }
    }
  }

  var received: [Span] { lock.withLock { spans } }
  /// Requests the collector could not take (wrong path, type or body): none expected.
  var errors: [String] { lock.withLock { problems } }

  private func acceptLoop() {
    while true {
      let fd = accept(listener, nil, nil)
      if fd < 0 {
        if errno == EINTR { continue }
        return
      }
      lock.withLock { connections.append(fd) }
      Thread { [self] in serve(fd) }.start()
    }
  }

  private func serve(_ fd: Int32) {
    defer {
      lock.withLock { connections.removeAll { $0 == fd } }
      close(fd)
    }
    var buffer: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 64 * 1024)
    func fill() -> Bool {
      let n = read(fd, &chunk, chunk.count)
      if n <= 0 { return false }
      buffer += chunk[0..<n]
      return true
    }
    while true {
      // Headers.
      var headerEnd: Int?
      while headerEnd == nil {
        headerEnd = buffer.firstRange(of: Array("\r\n\r\n".utf8))?.upperBound
        if headerEnd == nil && !fill() { return }
      }
      let head = String(decoding: buffer[..<headerEnd!], as: UTF8.self)
      buffer.removeFirst(headerEnd!)
      let lines = head.split(separator: "\r\n").map(String.init)
      let requestLine = lines.first ?? ""
      var headers: [String: String] = [:]
      for line in lines.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
      }
      // Body: Content-Length or chunked.
      var body: [UInt8] = []
      if headers["transfer-encoding"]?.lowercased() == "chunked" {
        while true {
          var lineEnd: Int?
          while lineEnd == nil {
            lineEnd = buffer.firstRange(of: Array("\r\n".utf8))?.lowerBound
            if lineEnd == nil && !fill() { return }
          }
          let size = Int(String(decoding: buffer[..<lineEnd!], as: UTF8.self), radix: 16) ?? 0
          buffer.removeFirst(lineEnd! + 2)
          while buffer.count < size + 2 { if !fill() { return } }
          body += buffer[..<size]
          buffer.removeFirst(size + 2)
          if size == 0 { break }
        }
      } else {
        let length = Int(headers["content-length"] ?? "0") ?? 0
        while buffer.count < length { if !fill() { return } }
        body = Array(buffer[..<length])
        buffer.removeFirst(length)
      }
      take(requestLine: requestLine, contentType: headers["content-type"] ?? "", body: body)
      let reply = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"
      guard write(fd, reply, reply.utf8.count) == reply.utf8.count else { return }
    }
  }

  private func take(requestLine: String, contentType: String, body: [UInt8]) {
    guard requestLine.hasPrefix("POST /v1/traces ") else {
      lock.withLock { problems.append("unexpected request \(requestLine)") }
      return
    }
    guard contentType == "application/x-protobuf" else {
      lock.withLock { problems.append("unexpected content type \(contentType)") }
      return
    }
    do {
      let decoded = try Self.decodeExportRequest(body)
      lock.withLock { spans += decoded }
    } catch {
      lock.withLock { problems.append("undecodable body: \(error)") }
    }
  }

  // MARK: OTLP protobuf (opentelemetry/proto/collector/trace/v1, trace/v1, common/v1)

  static func decodeExportRequest(_ bytes: [UInt8]) throws -> [Span] {
    var spans: [Span] = []
    var request = ProtoReader(bytes[...])
    while let field = try request.next() {
      guard field.number == 1, case .bytes(let resourceSpans) = field.value else { continue }  // resource_spans
      var service = ""
      var scopes: [ArraySlice<UInt8>] = []
      var reader = ProtoReader(resourceSpans)
      while let field = try reader.next() {
        guard case .bytes(let value) = field.value else { continue }
        if field.number == 1 {  // resource
          var resource = ProtoReader(value)
          while let attribute = try resource.next() {
            guard attribute.number == 1, case .bytes(let keyValue) = attribute.value else { continue }
            let (key, text) = try decodeKeyValue(keyValue)
            if key == "service.name" { service = text }
          }
        } else if field.number == 2 {  // scope_spans
          scopes.append(value)
        }
      }
      for scope in scopes {
        var reader = ProtoReader(scope)
        while let field = try reader.next() {
          guard field.number == 2, case .bytes(let spanBytes) = field.value else { continue }  // spans
          var span = try decodeSpan(spanBytes)
          span.service = service
          spans.append(span)
        }
      }
    }
    return spans
  }

  static func decodeSpan(_ bytes: ArraySlice<UInt8>) throws -> Span {
    var span = Span()
    var reader = ProtoReader(bytes)
    while let field = try reader.next() {
      switch (field.number, field.value) {
      case (1, .bytes(let value)): span.traceID = hex(value)
      case (2, .bytes(let value)): span.spanID = hex(value)
      case (4, .bytes(let value)): span.parentSpanID = hex(value)
      case (5, .bytes(let value)): span.name = String(decoding: value, as: UTF8.self)
      case (6, .varint(let value)): span.kind = Int(value)
      case (9, .bytes(let value)):
        let (key, text) = try decodeKeyValue(value)
        span.attributes[key] = text
      case (15, .bytes(let value)):
        var status = ProtoReader(value)
        while let field = try status.next() {
          if field.number == 3, case .varint(let code) = field.value { span.statusCode = Int(code) }
        }
      default: break
      }
    }
    return span
  }

  /// A KeyValue, its AnyValue as text (string, bool, int or double).
  static func decodeKeyValue(_ bytes: ArraySlice<UInt8>) throws -> (String, String) {
    var key = ""
    var text = ""
    var reader = ProtoReader(bytes)
    while let field = try reader.next() {
      if field.number == 1, case .bytes(let value) = field.value { key = String(decoding: value, as: UTF8.self) }
      if field.number == 2, case .bytes(let anyValue) = field.value {
        var value = ProtoReader(anyValue)
        while let field = try value.next() {
          switch (field.number, field.value) {
          case (1, .bytes(let string)): text = String(decoding: string, as: UTF8.self)
          case (2, .varint(let bool)): text = bool != 0 ? "true" : "false"
          case (3, .varint(let int)): text = String(Int64(bitPattern: int))
          case (4, .fixed64(let bits)): text = String(Double(bitPattern: bits))
          default: break
          }
        }
      }
    }
    return (key, text)
  }

  private static func hex(_ bytes: ArraySlice<UInt8>) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
  }
}

struct CollectorError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}

/// The protobuf wire format: a field number and one of four value kinds.
struct ProtoReader {
  enum Value {
    case varint(UInt64)
    case fixed64(UInt64)
    case bytes(ArraySlice<UInt8>)
    case fixed32(UInt32)
  }

  private var bytes: ArraySlice<UInt8>

  init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

  mutating func next() throws -> (number: Int, value: Value)? {
    guard !bytes.isEmpty else { return nil }
    let tag = try varint()
    let number = Int(tag >> 3)
    switch tag & 7 {
    case 0: return (number, .varint(try varint()))
    case 1: return (number, .fixed64(try fixed(8)))
    case 2:
      let length = Int(try varint())
      guard length >= 0, bytes.count >= length else { throw CollectorError("truncated field \(number)") }
      let value = bytes.prefix(length)
      bytes = bytes.dropFirst(length)
      return (number, .bytes(value))
    case 5: return (number, .fixed32(UInt32(try fixed(4))))
    default: throw CollectorError("unknown wire type \(tag & 7) of field \(number)")
    }
  }

  private mutating func varint() throws -> UInt64 {
    var result: UInt64 = 0
    var shift: UInt64 = 0
    while let byte = bytes.popFirst() {
      result |= UInt64(byte & 0x7f) << shift
      if byte & 0x80 == 0 { return result }
      shift += 7
      if shift > 63 { break }
    }
    throw CollectorError("bad varint")
  }

  private mutating func fixed(_ count: Int) throws -> UInt64 {
    guard bytes.count >= count else { throw CollectorError("truncated fixed field") }
    var result: UInt64 = 0
    for (index, byte) in bytes.prefix(count).enumerated() { result |= UInt64(byte) << (8 * UInt64(index)) }
    bytes = bytes.dropFirst(count)
    return result
  }
}
