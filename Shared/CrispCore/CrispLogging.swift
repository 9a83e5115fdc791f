import Logging
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// A swift-log handler that writes one line per record to stderr with a single
/// write(2), so lines from concurrent tasks never interleave. Under systemd
/// (`JOURNAL_STREAM` set) it prefixes the sd-daemon priority (`<6>`) and leaves the
/// timestamp to journald; otherwise it prints an RFC 3339 UTC timestamp.
public struct CrispLogHandler: LogHandler {
  public var metadata: Logger.Metadata = [:]
  /// One level for the whole daemon, changed at run time on SIGHUP.
  public var logLevel: Logger.Level {
    get { CrispLogging.level }
    set { CrispLogging.level = newValue }
  }
  private let label: String
  private let journald: Bool

  public init(label: String, level: Logger.Level) {
    self.label = label
    self.journald = getenv("JOURNAL_STREAM") != nil
  }

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  public func log(event: LogEvent) {
    var line = ""
    if journald {
      line += "<\(Self.syslogPriority(event.level))>"
    } else {
      line += Self.timestamp() + " " + event.level.rawValue.uppercased() + " "
    }
    line += label + ": " + event.message.description
    var merged = metadata
    if let extra = event.metadata { merged.merge(extra) { _, new in new } }
    for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
      line += " \(key)=\(Self.quoted(value.description))"
    }
    line += "\n"
    var bytes = Array(line.utf8)
    bytes.withUnsafeMutableBytes { buffer in
      var offset = 0
      while offset < buffer.count {
        let n = write(2, buffer.baseAddress! + offset, buffer.count - offset)
        if n <= 0 { if n < 0 && errno == EINTR { continue } else { return } }
        offset += n
      }
    }
  }

  static func syslogPriority(_ level: Logger.Level) -> Int {
    switch level {
    case .trace, .debug: 7
    case .info: 6
    case .notice: 5
    case .warning: 4
    case .error: 3
    case .critical: 2
    }
  }

  static func quoted(_ value: String) -> String {
    if !value.isEmpty && !value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\n" }) {
      return value
    }
    var out = "\""
    for ch in value {
      switch ch {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      default: out.append(ch)
      }
    }
    return out + "\""
  }

  static func timestamp() -> String {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    var tmValue = tm()
    var seconds = ts.tv_sec
    gmtime_r(&seconds, &tmValue)
    var buffer = [CChar](repeating: 0, count: 32)
    let n = strftime(&buffer, buffer.count, "%Y-%m-%dT%H:%M:%S", &tmValue)
    let millis = Int(ts.tv_nsec / 1_000_000)
    let base = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    let ms = String(millis)
    return base + "." + String(repeating: "0", count: 3 - ms.count) + ms + "Z"
  }
}

extension Logger.Level {
  /// Parses the names used in crisp.toml and `--log-level`.
  public init?(configName: String) {
    switch configName.lowercased() {
    case "trace": self = .trace
    case "debug": self = .debug
    case "info": self = .info
    case "notice": self = .notice
    case "warning", "warn": self = .warning
    case "error": self = .error
    case "critical", "fatal": self = .critical
    default: return nil
    }
  }
}

public enum CrispLogging {
  private static let currentLevel = Atomic<UInt8>(2)
  private static let levels = Logger.Level.allCases

  /// The level every logger of this process logs at.
  public static var level: Logger.Level {
    get { levels[Int(currentLevel.load(ordering: .relaxed))] }
    set { currentLevel.store(UInt8(levels.firstIndex(of: newValue) ?? 2), ordering: .relaxed) }
  }

  /// Installs `CrispLogHandler` once per process and returns the daemon's logger.
  public static func bootstrap(daemon: String, level: Logger.Level) -> Logger {
    Self.level = level
    LoggingSystem.bootstrap { label in CrispLogHandler(label: label, level: level) }
    var logger = Logger(label: daemon)
    logger.logLevel = level
    return logger
  }
}
