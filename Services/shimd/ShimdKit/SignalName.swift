import CrispCore

#if canImport(Glibc)
  import Glibc
#endif

/// Signal names as the CRI and images give them (a StopSignal of `SIGTERM`, `TERM`,
/// `term`, `15`, `SIGRTMIN+3`).
enum SignalName {
  static let numbers: [String: Int32] = [
    "HUP": SIGHUP, "INT": SIGINT, "QUIT": SIGQUIT, "ILL": SIGILL, "TRAP": SIGTRAP, "ABRT": SIGABRT,
    "IOT": SIGIOT, "BUS": SIGBUS, "FPE": SIGFPE, "KILL": SIGKILL, "USR1": SIGUSR1, "SEGV": SIGSEGV,
    "USR2": SIGUSR2, "PIPE": SIGPIPE, "ALRM": SIGALRM, "TERM": SIGTERM, "STKFLT": SIGSTKFLT, "CHLD": SIGCHLD,
    "CONT": SIGCONT, "STOP": SIGSTOP, "TSTP": SIGTSTP, "TTIN": SIGTTIN, "TTOU": SIGTTOU, "URG": SIGURG,
    "XCPU": SIGXCPU, "XFSZ": SIGXFSZ, "VTALRM": SIGVTALRM, "PROF": SIGPROF, "WINCH": SIGWINCH, "IO": SIGIO,
    "POLL": SIGPOLL, "PWR": SIGPWR, "SYS": SIGSYS,
  ]
  /// The kernel's real-time range (glibc reserves 32 and 33 for itself).
  static let realtimeMin: Int32 = 34
  static let realtimeMax: Int32 = 64

  /// The signal's number; empty means SIGTERM.
  static func parse(_ text: String, field: String = "signal") throws(CrispError) -> Int32 {
    let trimmed = text.trimmed(of: " \t")
    if trimmed.isEmpty { return SIGTERM }
    if let number = Int32(trimmed) {
      guard number >= 1 && number <= realtimeMax else {
        throw CrispError(.invalidArgument, "\(field): \(number) is not a signal number (1...\(realtimeMax))")
      }
      return number
    }
    var name = trimmed.uppercased()
    if name.hasPrefix("SIG") { name = String(name.dropFirst(3)) }
    if let number = numbers[name] { return number }
    if name.hasPrefix("RTMIN") || name.hasPrefix("RTMAX") {
      let base = name.hasPrefix("RTMIN") ? realtimeMin : realtimeMax
      let rest = name.dropFirst(5)
      var offset: Int32 = 0
      if !rest.isEmpty {
        guard let value = Int32(rest), rest.first == "+" || rest.first == "-" else {
          throw CrispError(.invalidArgument, "\(field): unknown signal \"\(text)\"")
        }
        offset = value
      }
      let number = base + offset
      guard number >= realtimeMin && number <= realtimeMax else {
        throw CrispError(.invalidArgument, "\(field): \"\(text)\" is outside the real-time signals")
      }
      return number
    }
    throw CrispError(.invalidArgument, "\(field): unknown signal \"\(text)\"")
  }
}

extension String {
  func trimmed(of set: String) -> String {
    var slice = Substring(self)
    while let first = slice.first, set.contains(first) { slice = slice.dropFirst() }
    while let last = slice.last, set.contains(last) { slice = slice.dropLast() }
    return String(slice)
  }
}
