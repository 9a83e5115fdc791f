/// A content digest as OCI writes it: `sha256:<64 lowercase hex>`. Only sha256 is
/// accepted, since that is what registries and image IDs use and what crisp verifies.
public struct Digest: Sendable, Hashable, Codable, CustomStringConvertible {
  public let hex: String

  public init?(_ text: String) {
    guard text.hasPrefix("sha256:") else { return nil }
    let hex = text.dropFirst(7)
    guard hex.utf8.count == 64, hex.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else {
      return nil
    }
    self.hex = String(hex)
  }

  public init(hex: String) {
    self.hex = hex
  }

  public var description: String { "sha256:" + hex }

  public init(from decoder: any Decoder) throws {
    let text = try decoder.singleValueContainer().decode(String.self)
    guard let digest = Digest(text) else {
      throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: "bad digest '\(text)'"))
    }
    self = digest
  }

  public func encode(to encoder: any Encoder) throws {
    var container = encoder.singleValueContainer()
    try container.encode(description)
  }

  /// Lowercase hex of raw digest bytes.
  public static func hexString<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    for byte in bytes {
      out.append(digits[Int(byte >> 4)])
      out.append(digits[Int(byte & 0x0f)])
    }
    return String(decoding: out, as: UTF8.self)
  }
}
