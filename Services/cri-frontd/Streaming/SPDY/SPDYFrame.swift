import NIOCore

/// One SPDY/3.1 frame (draft-mbelshe-httpbis-spdy-00 with the 3.1 session flow control).
/// Header blocks are carried decoded here; `SPDYFrameCodec` compresses and decompresses them
/// with the connection's zlib streams.
public enum SPDYFrame: Equatable, Sendable {
  case data(streamID: UInt32, fin: Bool, payload: ByteBuffer)
  case synStream(SynStream)
  case synReply(streamID: UInt32, fin: Bool, headers: SPDYHeaders)
  case rstStream(streamID: UInt32, status: SPDYResetStatus)
  case settings(clearPersisted: Bool, entries: [SPDYSetting])
  case ping(id: UInt32)
  case goAway(lastGoodStreamID: UInt32, status: SPDYGoAwayStatus)
  case headers(streamID: UInt32, fin: Bool, headers: SPDYHeaders)
  /// streamID 0 is the session window (SPDY/3.1).
  case windowUpdate(streamID: UInt32, delta: UInt32)
  /// A control frame of a type this implementation does not know (CREDENTIAL, NOOP, future
  /// types): the draft says to ignore them.
  case unknownControl(type: UInt16, flags: UInt8, payload: ByteBuffer)

  public struct SynStream: Equatable, Sendable {
    public var streamID: UInt32
    public var associatedStreamID: UInt32
    public var priority: UInt8
    public var slot: UInt8
    public var fin: Bool
    public var unidirectional: Bool
    public var headers: SPDYHeaders

    public init(
      streamID: UInt32, associatedStreamID: UInt32 = 0, priority: UInt8 = 0, slot: UInt8 = 0, fin: Bool = false,
      unidirectional: Bool = false, headers: SPDYHeaders
    ) {
      self.streamID = streamID
      self.associatedStreamID = associatedStreamID
      self.priority = priority
      self.slot = slot
      self.fin = fin
      self.unidirectional = unidirectional
      self.headers = headers
    }
  }
}

/// A header block: ordered name/value pairs. Names are lowercase on the wire (the draft
/// requires it); several values of one name travel NUL-separated in one value.
public struct SPDYHeaders: Equatable, Sendable {
  public var pairs: [(name: String, value: String)]

  public init(_ pairs: [(String, String)] = []) {
    self.pairs = pairs.map { (name: $0.0.lowercased(), value: $0.1) }
  }

  /// The first value of `name` (case-insensitive).
  public subscript(name: String) -> String? {
    let lower = name.lowercased()
    return pairs.first { $0.name == lower }?.value
  }

  public static func == (lhs: SPDYHeaders, rhs: SPDYHeaders) -> Bool {
    lhs.pairs.count == rhs.pairs.count
      && zip(lhs.pairs, rhs.pairs).allSatisfy { $0.name == $1.name && $0.value == $1.value }
  }
}

public struct SPDYSetting: Equatable, Sendable {
  public var flags: UInt8
  public var id: UInt32  // 24 bits
  public var value: UInt32

  public init(flags: UInt8 = 0, id: UInt32, value: UInt32) {
    self.flags = flags
    self.id = id
    self.value = value
  }

  public static let maxConcurrentStreams: UInt32 = 4
  public static let initialWindowSize: UInt32 = 7
}

public enum SPDYResetStatus: Equatable, Sendable {
  case protocolError, invalidStream, refusedStream, unsupportedVersion, cancel, internalError
  case flowControlError, streamInUse, streamAlreadyClosed, invalidCredentials, frameTooLarge
  case other(UInt32)

  public init(code: UInt32) {
    switch code {
    case 1: self = .protocolError
    case 2: self = .invalidStream
    case 3: self = .refusedStream
    case 4: self = .unsupportedVersion
    case 5: self = .cancel
    case 6: self = .internalError
    case 7: self = .flowControlError
    case 8: self = .streamInUse
    case 9: self = .streamAlreadyClosed
    case 10: self = .invalidCredentials
    case 11: self = .frameTooLarge
    default: self = .other(code)
    }
  }

  public var code: UInt32 {
    switch self {
    case .protocolError: 1
    case .invalidStream: 2
    case .refusedStream: 3
    case .unsupportedVersion: 4
    case .cancel: 5
    case .internalError: 6
    case .flowControlError: 7
    case .streamInUse: 8
    case .streamAlreadyClosed: 9
    case .invalidCredentials: 10
    case .frameTooLarge: 11
    case .other(let code): code
    }
  }
}

public enum SPDYGoAwayStatus: Equatable, Sendable {
  case ok, protocolError, internalError
  case other(UInt32)

  public init(code: UInt32) {
    switch code {
    case 0: self = .ok
    case 1: self = .protocolError
    case 2: self = .internalError
    default: self = .other(code)
    }
  }

  public var code: UInt32 {
    switch self {
    case .ok: 0
    case .protocolError: 1
    case .internalError: 2
    case .other(let code): code
    }
  }
}

/// Why a byte sequence is not a SPDY/3 frame we accept. Any of these ends the connection
/// (GOAWAY with PROTOCOL_ERROR, then close): the peer is broken or hostile.
public enum SPDYProtocolError: Error, Equatable, CustomStringConvertible {
  case unsupportedVersion(UInt16)
  case frameTooLarge(type: String, length: Int, limit: Int)
  case badLength(type: String, length: Int)
  case badHeaderBlock(String)
  case compression(String)

  public var description: String {
    switch self {
    case .unsupportedVersion(let version): "SPDY version \(version) is not supported (only 3)"
    case .frameTooLarge(let type, let length, let limit): "\(type) frame of \(length) bytes exceeds \(limit)"
    case .badLength(let type, let length): "\(type) frame with invalid length \(length)"
    case .badHeaderBlock(let why): "invalid header block: \(why)"
    case .compression(let why): "header block compression: \(why)"
    }
  }
}

/// Control frame type numbers (SPDY/3).
enum SPDYControlType {
  static let synStream: UInt16 = 1
  static let synReply: UInt16 = 2
  static let rstStream: UInt16 = 3
  static let settings: UInt16 = 4
  static let ping: UInt16 = 6
  static let goAway: UInt16 = 7
  static let headers: UInt16 = 8
  static let windowUpdate: UInt16 = 9
}

enum SPDYFlag {
  static let fin: UInt8 = 0x01
  static let unidirectional: UInt8 = 0x02
  static let clearSettings: UInt8 = 0x01
}
