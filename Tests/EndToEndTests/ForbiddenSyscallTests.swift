import CrispCore
import CrispIPC
import CrispLinux
import CrispTestSupport
import Foundation
import Testing

/// Each daemon's own process, asked over IPC (`debug.syscall`, served only with
/// --test-hooks) to make the calls issue #7 forbids it: its seccomp filter answers
/// EPERM, the kernel logs the refusal, and the daemon serves on. The probes carry
/// arguments the kernel refuses anyway (CCrispSys/debug_probe.c), so without a filter
/// they fail with another errno and change nothing.
@Suite struct ForbiddenSyscallTests {
  typealias Daemon = CrispInstance.Daemon

  /// What no daemon may call (issue #7, item 2), and the socket families beyond
  /// AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK.
  static let everyDaemon = [
    "ptrace", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "bpf",
    "perf_event_open", "reboot", "swapon", "swapoff", "pivot_root", "io_uring_setup", "socket:packet",
    "socket:bluetooth",
  ]
  static let refused: [Daemon: [String]] = [
    .imaged: everyDaemon + ["setns", "unshare"],
    .netd: everyDaemon,
    .frontd: everyDaemon + ["mount", "umount2", "setns", "unshare", "socket:netlink"],
  ]
  /// Calls a daemon needs, which its filter lets through: they fail for the kernel's
  /// own reasons (their arguments), never with EPERM, whatever the capabilities.
  static let allowed: [Daemon: [String]] = [
    .imaged: ["socket:inet", "socket:netlink", "mount", "umount2"],
    .netd: ["socket:inet", "socket:netlink", "mount", "umount2", "setns", "unshare"],
    .frontd: ["socket:inet"],
  ]

  /// Starts all three daemons with test hooks and waits until each answers.
  static func startWithHooks(_ crisp: CrispInstance) async throws {
    try crisp.start(.imaged, arguments: ["--test-hooks"])
    try crisp.start(.netd, arguments: ["--test-hooks"])
    try crisp.start(.frontd, arguments: ["--test-hooks"])
    try await crisp.waitForCRI()
    for daemon in Daemon.allCases {
      try await waitUntil("\(daemon.rawValue) answers over IPC", timeout: .seconds(20)) {
        (try? await client(crisp, daemon).call(Health.self)) != nil
      }
    }
  }

  static func client(_ crisp: CrispInstance, _ daemon: Daemon) throws -> IPCClient {
    let socket =
      switch daemon {
      case .imaged: crisp.paths.imagedSocket
      case .netd: crisp.paths.netdSocket
      case .frontd: crisp.paths.frontdSocket
      }
    return try IPCClient(peer: daemon.rawValue, address: CrispPaths.ipcAddress(socket), defaultTimeoutMs: 3_000)
  }

  static func probe(_ crisp: CrispInstance, _ daemon: Daemon, _ call: String) async throws -> DebugSyscall.Response {
    let client = try client(crisp, daemon)
    defer { client.close() }
    return try await client.call(DebugSyscall.self, .init(call: call))
  }

  /// The daemon still does its job: health over IPC, and for frontd a CRI call.
  static func expectServing(_ crisp: CrispInstance, _ daemon: Daemon) async throws {
    let client = try client(crisp, daemon)
    defer { client.close() }
    let health = try await client.call(Health.self)
    #expect(health.pid == crisp.pid(daemon), "\(daemon.rawValue) answers from the process that was probed")
    if daemon == .frontd {
      let version = try await crisp.withRuntime { try await $0.version(.init()) }
      #expect(version.runtimeName == "crisp")
    }
  }

  @Test func theDefaultFiltersRefuseTheForbiddenCallsWithEPERM() async throws {
    try await withCrisp { crisp in
      try await Self.startWithHooks(crisp)
      for daemon in Daemon.allCases {
        for call in Self.refused[daemon]! {
          let answer = try await Self.probe(crisp, daemon, call)
          #expect(answer.errnoName == "EPERM", "\(daemon.rawValue) \(call): \(answer)")
          #expect(answer.result == -1, "\(daemon.rawValue) \(call)")
        }
        for call in Self.allowed[daemon]! {
          let answer = try await Self.probe(crisp, daemon, call)
          #expect(answer.errno != 0 && answer.errnoName != "EPERM", "\(daemon.rawValue) \(call) passes: \(answer)")
        }
        try await Self.expectServing(crisp, daemon)
        #expect(crisp.log(daemon).contains("test hooks on"), "\(daemon.rawValue) says its hooks are on")
      }
    }
  }

  #if arch(x86_64)
    static let ptraceNumber = 101
  #elseif arch(arm64)
    static let ptraceNumber = 117
  #endif

  /// The kernel logs each refusal (the filters carry SECCOMP_FILTER_FLAG_LOG): an audit
  /// record (type 1326, SECCOMP) naming the daemon's pid and the call's number, in the
  /// kernel log when no audit daemon takes it. printk rate-limits those records, so the
  /// call is repeated until its record shows up.
  @Test func theKernelLogsEachDaemonsRefusal() async throws {
    let kmsg = KernelLog()
    try #require(kmsg.readable, "/dev/kmsg must be readable to see the kernel's seccomp records")
    try await withCrisp { crisp in
      try await Self.startWithHooks(crisp)
      for daemon in Daemon.allCases {
        let pid = try #require(crisp.pid(daemon))
        try await waitUntil(
          "the kernel logs \(daemon.rawValue)'s refused ptrace", timeout: .seconds(15), every: .milliseconds(500)
        ) {
          let answer = try await Self.probe(crisp, daemon, "ptrace")
          #expect(answer.errnoName == "EPERM")
          return kmsg.records().contains {
            $0.contains("type=1326") && $0.contains(" pid=\(pid) ") && $0.contains(" syscall=\(Self.ptraceNumber) ")
          }
        }
      }
    }
  }

  /// With every capability, a call reaches the kernel's own argument checks (a
  /// capability check would answer EPERM first): the filter's EPERM is then the only
  /// EPERM. With the filter on, every forbidden call is refused; with `seccomp = false`
  /// none is, which proves the test above can fail.
  @Test(arguments: [true, false])
  func withEveryCapabilityOnlyTheFilterAnswersEPERM(seccomp: Bool) async throws {
    try await withCrisp(
      extraConfig: "seccomp = \(seccomp)", imagedConfig: #"capabilities = ["ALL"]"#
    ) { crisp in
      try crisp.writeFrontdConfig(#"capabilities = ["ALL"]"#)
      let config = try String(contentsOfFile: crisp.configPath, encoding: .utf8)
      try config.replacingOccurrences(of: "[netd]\n", with: "[netd]\ncapabilities = [\"ALL\"]\n")
        .write(toFile: crisp.configPath, atomically: true, encoding: .utf8)
      try await Self.startWithHooks(crisp)
      for daemon in Daemon.allCases {
        let status = ProcessStatus(pid: try #require(crisp.pid(daemon)))
        #expect(status.fields["Seccomp"] == (seccomp ? "2" : "0"), "\(daemon.rawValue)")
        #expect(
          status.capabilityMask("CapEff") == ProcessStatus(pid: getpid()).capabilityMask("CapEff"),
          "\(daemon.rawValue) keeps every capability")
        for call in Self.refused[daemon]! {
          let answer = try await Self.probe(crisp, daemon, call)
          if seccomp {
            #expect(answer.errnoName == "EPERM", "\(daemon.rawValue) \(call): \(answer)")
          } else {
            #expect(answer.errno != 0 && answer.errnoName != "EPERM", "\(daemon.rawValue) \(call): \(answer)")
          }
        }
        try await Self.expectServing(crisp, daemon)
      }
    }
  }

  /// `seccomp_action = "kill"` kills the daemon at its first forbidden call (SIGSYS);
  /// `"log"` lets the call through (the kernel only logs it).
  @Test(arguments: ["kill", "log"])
  func theConfiguredActionIsTaken(action: String) async throws {
    try await withCrisp(extraConfig: "seccomp_action = \"\(action)\"") { crisp in
      try crisp.start(.imaged, arguments: ["--test-hooks"])
      try await waitUntil("imaged answers", timeout: .seconds(20)) {
        (try? await Self.client(crisp, .imaged).call(Health.self)) != nil
      }
      #expect(crisp.log(.imaged).contains("\(action): ptrace,"), "the filter is logged with its action")
      if action == "kill" {
        let error = await #expect(throws: CrispError.self) { try await Self.probe(crisp, .imaged, "ptrace") }
        #expect(error?.code == .unavailable || error?.code == .deadlineExceeded, "\(String(describing: error))")
        let status = try await crisp.stop(.imaged, signal: 0)
        #expect(status == SIGSYS, "imaged died of SIGSYS, not \(status)")
      } else {
        let answer = try await Self.probe(crisp, .imaged, "ptrace")
        #expect(answer.errnoName == "ESRCH", "ptrace reached the kernel: \(answer)")
        try await Self.expectServing(crisp, .imaged)
      }
    }
  }

  /// Without --test-hooks the method does not exist: a production daemon never makes
  /// these calls for anyone.
  @Test func withoutTheFlagNoDaemonServesDebugSyscall() async throws {
    try await withCrisp { crisp in
      try await crisp.startAll()
      for daemon in Daemon.allCases {
        let error = await #expect(throws: CrispError.self) { try await Self.probe(crisp, daemon, "ptrace") }
        #expect(error?.code == .unimplemented, "\(daemon.rawValue): \(String(describing: error))")
        #expect(error?.message.contains("unknown method 'debug.syscall'") == true)
        #expect(!crisp.log(daemon).contains("test hooks on"))
      }
    }
  }

  @Test func anUnknownOrBadCallNameIsRefused() async throws {
    try await withCrisp { crisp in
      try crisp.start(.imaged, arguments: ["--test-hooks"])
      try await waitUntil("imaged answers", timeout: .seconds(20)) {
        (try? await Self.client(crisp, .imaged).call(Health.self)) != nil
      }
      for call in ["execve", "", "ptrace\n", String(repeating: "a", count: 100)] {
        let error = await #expect(throws: CrispError.self) { try await Self.probe(crisp, .imaged, call) }
        #expect(error?.code == .invalidArgument, "\(call.debugDescription): \(String(describing: error))")
      }
      try await Self.expectServing(crisp, .imaged)
    }
  }
}

/// The kernel's log, read from /dev/kmsg (one record per read).
struct KernelLog {
  var readable: Bool {
    let fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    if fd >= 0 { close(fd) }
    return fd >= 0
  }

  /// Every record still in the ring buffer.
  func records() -> [String] {
    let fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var records: [String] = []
    var buffer = [UInt8](repeating: 0, count: 8192)
    while true {
      let count = read(fd, &buffer, buffer.count)
      if count > 0 {
        records.append(String(decoding: buffer[..<count], as: UTF8.self))
      } else if count < 0 && errno == EPIPE {
        continue  // records overwritten while reading: go on with the next
      } else {
        return records
      }
    }
  }
}
