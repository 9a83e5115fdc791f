import CCrispSys
import CrispCore
import CrispLinux
import CrispTestSupport
import Foundation
import Testing

@Suite struct CapabilityTests {
  @Test func namesRoundTrip() throws {
    let cap = try Capability(name: "NET_ADMIN")
    #expect(cap.description == "CAP_NET_ADMIN")
    #expect(try Capability(name: "cap_net_admin") == cap)
    #expect(try Capability(name: "CAP_NET_ADMIN") == cap)
    #expect(Capability.all.count >= 38)
  }

  @Test func unknownNamesAreRefused() {
    let error = #expect(throws: CrispError.self) { try Capability(name: "CAP_MAKE_COFFEE") }
    #expect(error?.code == .invalidArgument)
    #expect(error?.message.contains("CAP_MAKE_COFFEE") == true)
  }

  @Test func currentSetsMatchProcStatus() throws {
    let current = try ProcessCapabilities.current()
    let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
    func mask(_ field: String) -> UInt64 {
      let line = status.split(separator: "\n").first { $0.hasPrefix(field + ":") } ?? ""
      return UInt64(line.split(separator: "\t").last ?? "0", radix: 16) ?? 0
    }
    func bits(_ set: Set<Capability>) -> UInt64 { set.reduce(0) { $0 | (1 << UInt64($1.value)) } }
    #expect(bits(current.effective) == mask("CapEff"))
    #expect(bits(current.permitted) == mask("CapPrm"))
    #expect(bits(current.bounding) == mask("CapBnd"))
  }
}

@Suite struct SeccompTests {
  @Test func buildsAndExportsAFilter() throws {
    var filter = try SeccompFilter(defaultAction: .allow)
    #expect(try filter.add(.errno(EPERM), syscall: "ptrace"))
    #expect(try filter.add(.errno(EPERM), syscall: "kexec_load"))
    #expect(try filter.add(.errno(EPERM), syscall: "no_such_syscall_crisp") == false)

    let (readEnd, writeEnd) = try ProcessControl.pipe()
    defer { close(readEnd) }
    try filter.exportBPF(to: writeEnd)
    close(writeEnd)
    var buffer = [UInt8](repeating: 0, count: 65536)
    let n = read(readEnd, &buffer, buffer.count)
    // BPF instructions are 8 bytes each; a filter with rules has several.
    #expect(n >= 8 * 4)
    #expect(n % 8 == 0)
  }
}

@Suite struct ProcessControlTests {
  @Test func pipesCloseOnExec() throws {
    let (readEnd, writeEnd) = try ProcessControl.pipe()
    defer {
      close(readEnd)
      close(writeEnd)
    }
    #expect(fcntl(readEnd, F_GETFD) & FD_CLOEXEC != 0)
    #expect(fcntl(writeEnd, F_GETFD) & FD_CLOEXEC != 0)
  }

  @Test func readsSubreaperState() throws {
    // The test runner is no subreaper; reading must work without changing it.
    #expect(try ProcessControl.isChildSubreaper() == false)
  }
}

@Suite struct ChildProcessTests {
  @Test func passesStdinAndCollectsOutputAndStatus() async throws {
    let output = try await ChildProcess.run(
      path: "/bin/sh", arguments: ["-c", "cat; echo err >&2; exit 3"], environment: [:],
      stdin: Array("hello".utf8), timeoutMs: 10_000)
    #expect(String(decoding: output.stdout, as: UTF8.self) == "hello")
    #expect(String(decoding: output.stderr, as: UTF8.self) == "err\n")
    #expect(output.status == 3)
    #expect(!output.timedOut)
  }

  @Test func aTimeoutKillsTheWholeGroupEvenWhenAGrandchildHoldsThePipe() async throws {
    let clock = ContinuousClock()
    let started = clock.now
    let output = try await ChildProcess.run(
      path: "/bin/sh", arguments: ["-c", "sleep 100 & sleep 100"], environment: [:], timeoutMs: 300)
    #expect(output.timedOut)
    #expect(clock.now - started < .seconds(10))
  }

  @Test func childrenStartWithDefaultSignalDispositions() async throws {
    // Daemons ignore SIGPIPE; a child must not inherit that (ignored signals survive exec).
    let previous = signal(SIGPIPE, SIG_IGN)
    defer { signal(SIGPIPE, previous) }
    let output = try await ChildProcess.run(
      path: "/bin/sh", arguments: ["-c", "grep SigIgn /proc/self/status"], environment: [:], timeoutMs: 10_000)
    let mask = String(decoding: output.stdout, as: UTF8.self).split(separator: "\t").last.map {
      UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines), radix: 16) ?? 0
    }
    #expect(mask.map { $0 & (1 << (UInt64(SIGPIPE) - 1)) } == 0)
  }

  @Test func aMissingProgramIsAClearError() async throws {
    let error = await #expect(throws: CrispError.self) {
      try await ChildProcess.run(path: "/nonexistent/plugin", environment: [:], timeoutMs: 1_000)
    }
    #expect(error?.message.contains("/nonexistent/plugin") == true)
  }
}

@Suite struct UnixSocketTests {
  /// The socket appears at its path with its mode and group already set, the umask
  /// other threads rely on is untouched, and nothing of the private bind is left.
  @Test func aListeningSocketHasItsModeFromTheStartAndLeavesTheUmaskAlone() throws {
    let dir = try makeTemporaryDirectory(prefix: "crisp-sock")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let before = umask(0o022)
    umask(before)
    let path = dir + "/crisp.sock"
    let fd = try UnixSocket.listen(path: path, mode: 0o660, group: 4)
    defer { close(fd) }
    let after = umask(before)
    #expect(after == before, "the process umask changed")
    var info = stat()
    #expect(lstat(path, &info) == 0)
    #expect(info.st_mode & S_IFMT == S_IFSOCK)
    #expect(info.st_mode & 0o777 == 0o660)
    #expect(info.st_gid == 4)
    #expect(UnixSocket.isLive(path))
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["crisp.sock"])
    #expect(throws: CrispError.self, "a second listener on a live socket") {
      _ = try UnixSocket.listen(path: path, mode: 0o600)
    }
  }
}

/// Trees a container or a layer can make: names that are not UTF-8, depth past any
/// recursion, thousands of subdirectories, symlinks out of the tree.
@Suite struct DirectoryTreeTests {
  /// `mkdirat` and `openat` by raw name bytes.
  static func makeDirectory(_ name: [UInt8], in parent: Int32) -> Int32 {
    let cName = (name + [0]).map { CChar(bitPattern: $0) }
    #expect(mkdirat(parent, cName, 0o755) == 0)
    return openat(parent, cName, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
  }

  static func writeFile(_ name: String, bytes: Int, in directory: Int32) {
    let fd = openat(directory, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
    #expect(fd >= 0)
    let chunk = [UInt8](repeating: 0x61, count: 65536)
    var written = 0
    while written < bytes {
      written += chunk.withUnsafeBytes { write(fd, $0.baseAddress, min($0.count, bytes - written)) }
    }
    close(fd)
  }

  @Test func aNonUTF8NameAndADeepTreeAreMeasuredAndRemovedWhole() throws {
    let base = try makeTemporaryDirectory(prefix: "crisp-tree")
    defer { try? FileManager.default.removeItem(atPath: base) }
    let tree = base + "/tree"
    mkdir(tree, 0o755)
    let root = open(tree, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    let hidden = Self.makeDirectory([0xFF, 0xFE], in: root)
    Self.writeFile("data", bytes: 4 << 20, in: hidden)
    close(hidden)
    var current = Self.makeDirectory(Array("deep".utf8), in: root)
    for _ in 0..<2_100 {
      let next = Self.makeDirectory([0x64], in: current)
      close(current)
      current = next
    }
    Self.writeFile("bottom", bytes: 1 << 20, in: current)
    close(current)
    close(root)

    let usage = DirectoryTree.usage(tree)
    #expect(usage.bytes >= 5 << 20, "\(usage.bytes) bytes counted of 5 MiB written")
    #expect(usage.inodes >= 2_100)
    #expect(DirectoryTree.remove(tree))
    #expect(!FileManager.default.fileExists(atPath: tree))
  }

  @Test func thousandsOfSubdirectoriesGoAndSymlinksAreNotFollowed() throws {
    let base = try makeTemporaryDirectory(prefix: "crisp-tree")
    defer { try? FileManager.default.removeItem(atPath: base) }
    let outside = base + "/outside"
    mkdir(outside, 0o755)
    try "keep".write(toFile: outside + "/keep", atomically: false, encoding: .utf8)
    let tree = base + "/tree"
    mkdir(tree, 0o755)
    let root = open(tree, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    for index in 0..<5_000 {
      let child = Self.makeDirectory(Array("d\(index)".utf8), in: root)
      if index % 100 == 0 { Self.writeFile("f", bytes: 10, in: child) }
      close(child)
    }
    #expect(symlinkat(outside, root, "link") == 0)
    close(root)
    #expect(DirectoryTree.remove(tree))
    #expect(!FileManager.default.fileExists(atPath: tree))
    #expect(readWholeFile(outside + "/keep") == "keep")
    #expect(DirectoryTree.remove(base + "/missing"), "a missing path is removed already")
  }
}
