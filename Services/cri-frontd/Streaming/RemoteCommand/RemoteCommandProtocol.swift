import Foundation

/// The remotecommand sub-protocols (k8s.io/apimachinery/pkg/util/remotecommand): over SPDY
/// negotiated with X-Stream-Protocol-Version, over WebSocket with Sec-WebSocket-Protocol.
public enum RemoteCommandProtocol: String, Sendable, CaseIterable {
  case v1 = "channel.k8s.io"
  case v2 = "v2.channel.k8s.io"
  case v3 = "v3.channel.k8s.io"
  case v4 = "v4.channel.k8s.io"
  case v5 = "v5.channel.k8s.io"

  /// Server preference is irrelevant: the client's order decides (as kubelet's negotiation).
  static let spdy: [RemoteCommandProtocol] = [.v4, .v3, .v2, .v1]
  static let webSocket: [RemoteCommandProtocol] = [.v5, .v4, .v1]

  /// v3 added the resize stream.
  var supportsResize: Bool { self != .v1 && self != .v2 }
  /// v4 turned the error stream into a JSON Status.
  var statusIsJSON: Bool { self == .v4 || self == .v5 }

  /// The first of the client's offers that we speak.
  static func negotiate(_ offers: [String], among supported: [RemoteCommandProtocol]) -> RemoteCommandProtocol? {
    for offer in offers {
      if let match = supported.first(where: { $0.rawValue == offer.trimmingCharacters(in: .whitespaces) }) {
        return match
      }
    }
    return nil
  }
}

/// Output streams of a remotecommand session, towards the client.
enum RemoteCommandOutput {
  case stdout, stderr
}

/// A terminal size as remotecommand clients send it: JSON `{"Width":W,"Height":H}`, one object
/// after another on the resize stream.
struct ResizeParser {
  private var buffer: [UInt8] = []

  /// Feeds bytes; returns the sizes of every complete object so far. Malformed objects are
  /// skipped; an unbounded object (no closing brace within 4 KiB) is dropped.
  mutating func feed(_ bytes: some Sequence<UInt8>) -> [TerminalSize] {
    buffer.append(contentsOf: bytes)
    var sizes: [TerminalSize] = []
    while let end = objectEnd() {
      let object = Array(buffer[..<end])
      buffer.removeFirst(end)
      if let size = Self.parse(object) { sizes.append(size) }
    }
    if buffer.count > 4096 { buffer.removeAll() }
    return sizes
  }

  private func objectEnd() -> Int? {
    var depth = 0
    var inString = false
    var escaped = false
    var started = false
    for (index, byte) in buffer.enumerated() {
      if inString {
        if escaped {
          escaped = false
        } else if byte == UInt8(ascii: "\\") {
          escaped = true
        } else if byte == UInt8(ascii: "\"") {
          inString = false
        }
        continue
      }
      switch byte {
      case UInt8(ascii: "\""): inString = true
      case UInt8(ascii: "{"):
        depth += 1
        started = true
      case UInt8(ascii: "}"):
        depth -= 1
        if started && depth == 0 { return index + 1 }
      default: break
      }
    }
    return nil
  }

  static func parse(_ object: [UInt8]) -> TerminalSize? {
    guard
      let json = try? JSONSerialization.jsonObject(with: Data(object.drop { $0 != UInt8(ascii: "{") }))
        as? [String: Any]
    else { return nil }
    // encoding/json matches keys case-insensitively; kubectl writes "Width"/"Height".
    func value(_ key: String) -> UInt16? {
      guard let entry = json.first(where: { $0.key.lowercased() == key }), let number = entry.value as? NSNumber,
        number.intValue >= 0, number.intValue <= Int(UInt16.max)
      else { return nil }
      return UInt16(number.intValue)
    }
    guard let width = value("width"), let height = value("height") else { return nil }
    return TerminalSize(width: width, height: height)
  }
}
