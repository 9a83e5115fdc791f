import CRIAPI
import CrispCore
import CrispTestSupport
import Foundation
import GRPCCore
import Testing

/// What an unprivileged host user (`nobody`, through setpriv) can reach of a running pod
/// whose root container planted a setuid copy of a shell, a device node and a secret in
/// the pod's shared memory: nothing under `root` or `run_root` but the two directories
/// themselves (containerd's CVE-2021-41103 is this class).
@Suite struct HostIsolationTests {
  static let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups", "--"]

  /// Runs a command as nobody: its status and output. Through sh: setpriv still holds
  /// root's capabilities when it execs its command, so the kernel would resolve that
  /// command's path with CAP_DAC_OVERRIDE.
  static func asNobody(_ command: [String]) throws -> (status: Int32, output: String) {
    try runProgram("/usr/bin/setpriv", nobody + ["/bin/sh", "-c", "exec \"$@\"", "sh"] + command, timeout: 20)
  }

  @Test func anUnprivilegedHostUserReachesNothingOfARunningPod() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      // On a node /var/lib and /run are open to every user: so is the test's directory.
      chmod(crisp.dir, 0o755)
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      let script =
        "cp /bin/busybox /s && chmod 4755 /s && mknod /mem c 1 1 && chmod 666 /mem"
        + " && echo secret > /dev/shm/secret && chmod 666 /dev/shm/secret && touch /ready && exec sleep 1000"
      let id = try await crisp.createContainer(
        podID: podID, name: "planter", image: image, command: ["sh", "-c", script]
      ) {
        $0.config.linux.securityContext.capabilities.addCapabilities = ["MKNOD"]
      }
      try await crisp.startContainer(id)
      try await waitUntil("the container planted its files", timeout: .seconds(20)) {
        (try? await crisp.execSync(id, ["test", "-e", "/ready"]).exitCode) == 0
      }
      let rootfs = crisp.paths.containersDir + "/\(id)/rootfs"
      #expect(FileManager.default.fileExists(atPath: rootfs + "/s"), "the planted setuid file is at \(rootfs)/s")
      let shm = crisp.paths.podSharedMemory(podID)

      let setuid = try Self.asNobody([rootfs + "/s", "id"])
      #expect(setuid.status != 0 && setuid.output.contains("Permission denied"), "\(setuid)")
      let device = try Self.asNobody(["/usr/bin/head", "-c", "1", rootfs + "/mem"])
      #expect(device.status != 0 && device.output.contains("Permission denied"), "\(device)")
      let list = try Self.asNobody(["/usr/bin/ls", crisp.paths.containersDir])
      #expect(list.status != 0, "\(list)")
      let readShm = try Self.asNobody(["/usr/bin/cat", shm + "/secret"])
      #expect(readShm.status != 0 && !readShm.output.contains("secret\n"), "\(readShm)")
      let writeShm = try Self.asNobody(["/usr/bin/touch", shm + "/planted-by-nobody"])
      #expect(writeShm.status != 0, "\(writeShm)")
      for socket in [crisp.criSocket, crisp.paths.imagedSocket, crisp.paths.netdSocket, crisp.paths.frontdSocket] {
        let connect = try Self.asNobody([
          "/usr/bin/python3", "-c",
          "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print('connected')", socket,
        ])
        #expect(connect.status != 0 && !connect.output.contains("connected"), "\(socket): \(connect)")
      }

      let open = Self.pathsOpenToOthers(under: [crisp.paths.root, crisp.paths.runRoot])
      #expect(open.isEmpty, "paths a non-root user can enter or read: \(open)")
    }
  }

  /// An image whose `/etc` links to the host's and whose `/work` links to a directory of
  /// the host's /tmp: the user name is looked up in the image (here: nowhere, a loop),
  /// never in the host's /etc/passwd, and a working directory and a mount target below
  /// `/work` land inside the container's root filesystem.
  @Test func aHostileImagesLinksLeadNowhereOnTheHost() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let image = "\(registry.address)/crisp/hostile:etc"
      try await crisp.pull(image)
      let refused = await #expect(throws: RPCError.self, "daemon is in the host's /etc/passwd only") {
        try await crisp.createContainer(podID: podID, name: "user", image: image, command: ["true"], user: "daemon")
      }
      #expect(refused?.message.contains("daemon") == true, "\(String(describing: refused))")

      let hostDirectory = try makeTemporaryDirectory(prefix: "crisp-volume")
      defer { try? FileManager.default.removeItem(atPath: hostDirectory) }
      let work = "\(registry.address)/crisp/hostile:work"
      try await crisp.pull(work)
      let id = try await crisp.createContainer(
        podID: podID, name: "links", image: work, command: ["sh", "-c", "pwd > /cwd; exec sleep 1000"]
      ) {
        $0.config.workingDir = "/work/directory"
        var volume = Runtime_V1_Mount()
        volume.containerPath = "/work/volume"
        volume.hostPath = hostDirectory
        $0.config.mounts = [volume]
      }
      try await crisp.startContainer(id)
      try await waitUntil("the container wrote its working directory", timeout: .seconds(20)) {
        (try? await crisp.execSync(id, ["cat", "/cwd"]).exitCode) == 0
      }
      #expect(!FileManager.default.fileExists(atPath: "/tmp/crisp-hostile-work"), "created on the host")
      let inside = try await crisp.execSync(id, ["ls", "/tmp/crisp-hostile-work"])
      let listed = String(decoding: inside.stdout, as: UTF8.self)
      #expect(listed.contains("directory") && listed.contains("volume"), "\(listed)")
    }
  }

  /// Directories below the roots that a user who is neither root nor in root's group can
  /// enter, and regular files such a user can read, when every directory above them lets
  /// that user through. The roots themselves are 0711: their entries can be named, not
  /// listed, and each of those must be closed in turn.
  static func pathsOpenToOthers(under roots: [String]) -> [String] {
    var open: [String] = []
    func walk(_ directory: String, depth: Int) {
      let entries = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
      for name in entries {
        let path = directory + "/" + name
        var info = stat()
        guard lstat(path, &info) == 0 else { continue }
        let type = info.st_mode & S_IFMT
        if type == S_IFDIR {
          if info.st_mode & S_IXOTH != 0 {
            open.append(path + String(format: " (%o)", info.st_mode & 0o7777))
            walk(path, depth: depth + 1)
          }
        } else if type == S_IFREG && info.st_mode & S_IROTH != 0 {
          open.append(path + String(format: " (%o)", info.st_mode & 0o7777))
        }
      }
    }
    for root in roots { walk(root, depth: 0) }
    return open
  }
}

/// Paths and annotations from a hostile CRI client: each refused with InvalidArgument and
/// a message naming the field, and nothing written where the client pointed.
@Suite struct HostileRequestTests {
  @Test func logPathsSeccompProfilesAndRuntimeAnnotationsFromAClientAreChecked() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      let outside = try makeTemporaryDirectory(prefix: "crisp-outside")
      defer { try? FileManager.default.removeItem(atPath: outside) }
      let logs = crisp.dir + "/logs"
      try FileManager.default.createDirectory(atPath: logs, withIntermediateDirectories: true)
      try FileManager.default.createSymbolicLink(atPath: logs + "/link", withDestinationPath: outside)
      try FileManager.default.createSymbolicLink(atPath: logs + "/file-link.log", withDestinationPath: outside + "/f")

      func refusal(_ name: String, _ change: @escaping (inout Runtime_V1_CreateContainerRequest) -> Void) async
        -> String
      {
        let error = await #expect(throws: RPCError.self, "\(name)") {
          try await crisp.createContainer(podID: podID, name: name, image: image, command: ["true"], configure: change)
        }
        #expect(error?.code == .invalidArgument, "\(name): \(String(describing: error))")
        return error?.message ?? ""
      }
      #expect(await refusal("climb") { $0.config.logPath = "../../escape.log" }.contains("log_path"))
      #expect(await refusal("absolute") { $0.config.logPath = outside + "/a.log" }.contains("log_path"))
      #expect(await refusal("through-link") { $0.config.logPath = "link/c.log" }.contains("symlink"))
      #expect(await refusal("file-link") { $0.config.logPath = "file-link.log" }.contains("symlink"))
      #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty, "written outside the log directory")

      #expect(mkfifo(outside + "/profile.fifo", 0o600) == 0)
      for path in [outside + "/profile.fifo", "/dev/null", "relative/profile.json"] {
        let message = await refusal("seccomp") {
          $0.config.linux.securityContext.seccomp.profileType = .localhost
          $0.config.linux.securityContext.seccomp.localhostRef = path
        }
        #expect(message.contains("seccomp") && message.contains(path), "\(message)")
      }
      #expect(try await crisp.listContainers().isEmpty, "a refused CreateContainer leaves no container")

      let id = try await crisp.createContainer(
        podID: podID, name: "annotated", image: image, command: ["true"],
        annotations: ["org.systemd.property.DeviceAllow": "'char-* rwm'", "run.oci.keep_original_groups": "1"])
      let spec = readWholeFile(crisp.paths.containersDir + "/\(id)/config.json")
      #expect(spec.contains("io.kubernetes.cri.container-name"), "the bundle's spec was read")
      #expect(!spec.contains("org.systemd.property") && !spec.contains("run.oci."), "\(spec)")
    }
  }
}

extension HostileRequestTests {
  /// A directory of the pod's log directory swapped for a symlink after the container
  /// started (by anyone who can write there): at the next rotation shimd, as root, must not
  /// follow it.
  @Test func aLogDirectorySwappedForASymlinkIsNotFollowedAtReopen() async throws {
    try await withContainerRuntime { crisp, registry, podID in
      let image = "\(registry.address)/crisp/busybox:latest"
      try await crisp.pull(image)
      let outside = try makeTemporaryDirectory(prefix: "crisp-outside")
      defer { try? FileManager.default.removeItem(atPath: outside) }
      let id = try await crisp.createContainer(podID: podID, name: "logged", image: image, command: ["sleep", "1000"]) {
        $0.config.logPath = "logged/0.log"
      }
      try await crisp.startContainer(id)
      let directory = crisp.dir + "/logs/logged"
      #expect(FileManager.default.fileExists(atPath: directory + "/0.log"))
      try FileManager.default.moveItem(atPath: directory, toPath: directory + ".rotated")
      try FileManager.default.createSymbolicLink(atPath: directory, withDestinationPath: outside)

      var request = Runtime_V1_ReopenContainerLogRequest()
      request.containerID = id
      let refused = await #expect(throws: RPCError.self) {
        _ = try await crisp.withRuntime { try await $0.reopenContainerLog(request) }
      }
      #expect(refused?.message.contains("symlink") == true, "\(String(describing: refused))")
      #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty, "written through the symlink")
    }
  }
}
