/// The bytes of an exec or attach session on the unix socket between a container's
/// shimd and frontd's streaming server: frames of a 1-byte channel, a 4-byte big-endian
/// payload length and the payload. Written down once, here, for both sides.
///
/// - frontd → shim: stdin, resize (JSON `{"Width":W,"Height":H}`), stdinEOF.
/// - shim → frontd: stdout, stderr (never with a terminal), and one end frame, JSON
///   `{"exitCode":N}`, or `{"error":"…"}` when the process could not start.
public enum SessionFraming {
  public static let headerSize = 5
  /// A larger payload is a protocol error: the reader closes the session.
  public static let maxPayload = 1 << 20

  public enum Channel: UInt8, Sendable {
    case stdin = 0
    case stdout = 1
    case stderr = 2
    case end = 3
    case resize = 4
    case stdinEOF = 5
  }

  public static func writeHeader(_ channel: Channel, length: Int, to pointer: UnsafeMutableRawPointer) {
    pointer.storeBytes(of: channel.rawValue, as: UInt8.self)
    pointer.storeBytes(of: UInt32(length).bigEndian, toByteOffset: 1, as: UInt32.self)
  }

  /// The channel byte and the payload length of the header at the start of `bytes`
  /// (at least `headerSize` of them).
  public static func readHeader(_ bytes: UnsafeRawBufferPointer) -> (channel: UInt8, length: Int) {
    (bytes.load(as: UInt8.self), Int(UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: 1, as: UInt32.self))))
  }

  public static func frame(_ channel: Channel, _ payload: [UInt8]) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: headerSize)
    bytes.withUnsafeMutableBytes { writeHeader(channel, length: payload.count, to: $0.baseAddress!) }
    return bytes + payload
  }

  /// The end frame of a process that ran: `{"exitCode":N}`.
  public static func end(exitCode: Int32) -> [UInt8] { frame(.end, Array("{\"exitCode\":\(exitCode)}".utf8)) }

  /// The end frame of a session whose process could not start: `{"error":"…"}`.
  public static func end(error message: String) -> [UInt8] {
    frame(.end, Array("{\"error\":\(jsonString(message))}".utf8))
  }

  /// `text` as a JSON string literal (the shim writes JSON without Foundation).
  static func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\r": out += "\\r"
      case "\t": out += "\\t"
      default:
        if scalar.value < 0x20 {
          let hex = String(scalar.value, radix: 16)
          out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        } else {
          out.unicodeScalars.append(scalar)
        }
      }
    }
    return out + "\""
  }
}
