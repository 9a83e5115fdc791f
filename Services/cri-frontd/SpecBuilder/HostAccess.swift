import CrispCore
import CrispOCI
import FoundationEssentials

#if canImport(Glibc)
  import Glibc
#endif

/// The few things the spec builder reads from the node, gathered here so that
/// `SpecBuilder.build` depends only on its inputs: tests pass fakes, frontd `.live`.
/// - `readFile`: a `Localhost` seccomp profile.
/// - `devices`: the device nodes at a CRI device's host path (the node itself, or every
///   node below a directory), symlinks followed; `path` is the host path of each node.
/// - `allDevices`: every device node of the host's `/dev`, for privileged containers.
public struct HostAccess: Sendable {
  public var readFile: @Sendable (String) throws(CrispError) -> String
  public var devices: @Sendable (String) throws(CrispError) -> [RuntimeSpec.LinuxDevice]
  public var allDevices: @Sendable () -> [RuntimeSpec.LinuxDevice]

  public init(
    readFile: @escaping @Sendable (String) throws(CrispError) -> String,
    devices: @escaping @Sendable (String) throws(CrispError) -> [RuntimeSpec.LinuxDevice],
    allDevices: @escaping @Sendable () -> [RuntimeSpec.LinuxDevice]
  ) {
    self.readFile = readFile
    self.devices = devices
    self.allDevices = allDevices
  }

  /// Reads nothing: every file and device is missing, the host has no devices.
  public static let none = HostAccess(
    readFile: { (path: String) throws(CrispError) -> String in
      throw CrispError(.notFound, "\(path): no such file")
    },
    devices: { (path: String) throws(CrispError) -> [RuntimeSpec.LinuxDevice] in
      throw CrispError(.notFound, "\(path): no such device")
    },
    allDevices: { [] })

  /// The real node.
  public static let live = HostAccess(
    readFile: { (path: String) throws(CrispError) -> String in try readRegularFile(path) },
    devices: { (path: String) throws(CrispError) -> [RuntimeSpec.LinuxDevice] in
      try liveDevices(at: path)
    },
    allDevices: { liveHostDevices() })

  /// O_PATH (Linux, x86_64 and arm64), which Glibc's Swift overlay does not export.
  static let openPath: Int32 = 0o10_000_000

  /// A regular file of at most 4 MiB: a path a CRI client names may be a FIFO (the read
  /// would block frontd), a device or anything else on the node.
  static func readRegularFile(_ path: String) throws(CrispError) -> String {
    guard path.hasPrefix("/") else { throw CrispError(.invalidArgument, "\(path): not an absolute path") }
    // O_PATH first: opening a device runs its driver's open (a watchdog arms, a tape
    // rewinds) before any fstat could refuse it. The regular file is then reopened
    // through the descriptor, so it is the same file that was checked.
    let handle = open(path, Self.openPath | O_CLOEXEC)
    guard handle >= 0 else {
      throw CrispError(.notFound, "\(path): cannot read: \(Files.errnoText())")
    }
    defer { close(handle) }
    var info = stat()
    guard fstat(handle, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
      throw CrispError(.invalidArgument, "\(path): not a regular file")
    }
    let fd = open("/proc/self/fd/\(handle)", O_RDONLY | O_CLOEXEC | O_NOCTTY)
    guard fd >= 0 else {
      throw CrispError(.notFound, "\(path): cannot read: \(Files.errnoText())")
    }
    defer { close(fd) }
    let limit = 4 << 20
    guard info.st_size <= limit else {
      throw CrispError(.invalidArgument, "\(path): \(info.st_size) bytes, more than \(limit)")
    }
    return String(decoding: readBytes(fd, count: Int(info.st_size)), as: UTF8.self)
  }

  /// Subdirectories of /dev that hold no device a container should get (runc's list).
  static let skippedDevDirectories: Set<String> = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"]

  static func node(at path: String, followLinks: Bool) -> (device: RuntimeSpec.LinuxDevice?, isDirectory: Bool)? {
    var info = stat()
    guard (followLinks ? stat(path, &info) : lstat(path, &info)) == 0 else { return nil }
    let format = info.st_mode & S_IFMT
    if format == S_IFDIR { return (nil, true) }
    let type: String
    switch format {
    case S_IFCHR: type = "c"
    case S_IFBLK: type = "b"
    default: return (nil, false)
    }
    // glibc's gnu_dev_major/gnu_dev_minor, which Swift does not import.
    let rdev = UInt64(info.st_rdev)
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & ~UInt64(0xfff))
    let minor = (rdev & 0xff) | ((rdev >> 12) & ~UInt64(0xff))
    let device = RuntimeSpec.LinuxDevice(
      path: path, type: type, major: Int64(major), minor: Int64(minor),
      fileMode: UInt32(info.st_mode & 0o7777), uid: info.st_uid, gid: info.st_gid)
    return (device, false)
  }

  static func liveDevices(at path: String) throws(CrispError) -> [RuntimeSpec.LinuxDevice] {
    guard let found = node(at: path, followLinks: true) else {
      throw CrispError(.notFound, "\(path): \(Files.errnoText())")
    }
    if let device = found.device { return [device] }
    guard found.isDirectory else { throw CrispError(.invalidArgument, "\(path) is not a device node") }
    return walk(path, skipping: [])
  }

  static func liveHostDevices() -> [RuntimeSpec.LinuxDevice] {
    walk("/dev", skipping: skippedDevDirectories).filter { $0.path != "/dev/console" }
  }

  /// Device nodes below `directory`, sorted by path; symlinks are not followed.
  static func walk(_ directory: String, skipping: Set<String>) -> [RuntimeSpec.LinuxDevice] {
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
    var found: [RuntimeSpec.LinuxDevice] = []
    for entry in entries.sorted() where !skipping.contains(entry) {
      let path = directory + "/" + entry
      guard let node = node(at: path, followLinks: false) else { continue }
      if let device = node.device {
        found.append(device)
      } else if node.isDirectory {
        found += walk(path, skipping: [])
      }
    }
    return found
  }
}

/// What the node's cgroup setup offers, which decides the resources runc can apply.
public struct CgroupFeatures: Sendable, Equatable {
  /// The unified (v2-only) hierarchy: `unified` resources apply, and containers get a
  /// cgroup namespace. False on v1 and hybrid hosts, where runc uses the v1 controllers.
  public var unifiedHierarchy: Bool
  /// Swap accounting (`memory.memsw.*` on v1, `memory.swap.max` on v2).
  public var memorySwap: Bool
  /// A hugetlb controller runc uses.
  public var hugetlb: Bool

  public init(unifiedHierarchy: Bool, memorySwap: Bool, hugetlb: Bool) {
    self.unifiedHierarchy = unifiedHierarchy
    self.memorySwap = memorySwap
    self.hugetlb = hugetlb
  }

  /// What `/sys/fs/cgroup` shows.
  public static func detect(root: String = "/sys/fs/cgroup") -> CgroupFeatures {
    func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }
    if exists(root + "/cgroup.controllers") {
      let controllers = (try? String(contentsOfFile: root + "/cgroup.controllers", encoding: .utf8)) ?? ""
      let list = controllers.split(whereSeparator: \.isWhitespace)
      // The root cgroup has no memory.swap.max: look in this process's own cgroup.
      let own =
        ((try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? "")
        .split(whereSeparator: \.isNewline).first { $0.hasPrefix("0::") }.map { String($0.dropFirst(3)) } ?? "/"
      return CgroupFeatures(
        unifiedHierarchy: true, memorySwap: exists(root + own + "/memory.swap.max"), hugetlb: list.contains("hugetlb"))
    }
    return CgroupFeatures(
      unifiedHierarchy: false, memorySwap: exists(root + "/memory/memory.memsw.limit_in_bytes"),
      hugetlb: exists(root + "/hugetlb"))
  }
}
