import CrispCore
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// The shim's own log: stderr when it runs in the foreground, `<bundle>/shimd.log`
/// when detached (its stdio is /dev/null then). One write(2) per line.
struct ShimLogHandler: LogHandler {
  var metadata: Logger.Metadata = [:]
  var logLevel: Logger.Level {
    get { CrispLogging.level }
    set { CrispLogging.level = newValue }
  }
  let label: String
  let fd: Int32

  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  func log(event: LogEvent) {
    var line: [UInt8] = []
    CRILogWriter.appendTimestamp(WallClock.nowNanoseconds(), to: &line)
    var text = " " + event.level.rawValue.uppercased() + " " + label + ": " + event.message.description
    var merged = metadata
    if let extra = event.metadata { merged.merge(extra) { _, new in new } }
    for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
      let string = value.description
      let plain = !string.isEmpty && !string.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" || $0 == "\n" })
      text +=
        " \(key)="
        + (plain
          ? string
          : "\"" + string.replacingAll("\\", "\\\\").replacingAll("\"", "\\\"").replacingAll("\n", "\\n") + "\"")
    }
    line += text.utf8
    line.append(UInt8(ascii: "\n"))
    _ = line.withUnsafeBytes { Files.writeAll(fd, $0) }
  }

  static func bootstrap(level: Logger.Level, fd: Int32) -> Logger {
    CrispLogging.level = level
    LoggingSystem.bootstrap { label in ShimLogHandler(label: label, fd: fd) }
    return Logger(label: "shimd")
  }
}

extension String {
  func replacingAll(_ target: Character, _ replacement: String) -> String {
    guard contains(target) else { return self }
    var out = ""
    for character in self {
      if character == target { out += replacement } else { out.append(character) }
    }
    return out
  }
}
