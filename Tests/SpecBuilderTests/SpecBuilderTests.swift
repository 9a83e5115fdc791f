import CRIAPI
import CrispCore
import CrispOCI
import CrispTestSupport
import Foundation
import Testing

@testable import SpecBuilder

// MARK: fixtures

/// The profile the project ships (deploy/seccomp/default.json).
private let shippedProfilePath = URL(fileURLWithPath: #filePath)
  .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
  .appendingPathComponent("deploy/seccomp/default.json").path

private let defaultProfile: ContainerSeccompProfile = {
  do {
    return try ContainerSeccompProfile.load(path: shippedProfilePath)
  } catch {
    fatalError("\(error)")
  }
}()

private let podID = String(repeating: "ab", count: 32)
private let containerID = String(repeating: "cd", count: 32)

private let passwd = """
  root:x:0:0:root:/root:/bin/sh
  daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
  app:x:1000:1000:App:/home/app:/bin/sh
  # a comment line
  broken line
  other:x:1001:1001::/home/other:/bin/sh
  """
private let group = """
  root:x:0:
  daemon:x:1:
  staff:x:50:app,other
  audio:x:63:app
  app:x:1000:
  other:x:1001:
  video:x:44:other,app,app
  """

private func options(_ change: (inout SpecOptions) -> Void = { _ in }) -> SpecOptions {
  var options = SpecOptions(defaultSeccompProfile: defaultProfile, kernelVersion: KernelVersion(major: 6, minor: 1))
  change(&options)
  return options
}

private func inputs(_ change: (inout SpecInputs) -> Void = { _ in }) -> SpecInputs {
  let config = Runtime_V1_ContainerConfig.with {
    $0.metadata.name = "web"
    $0.image.image = "docker.io/library/busybox:latest"
    $0.command = ["/bin/sh"]
    $0.args = ["-c", "true"]
    $0.linux.securityContext.namespaceOptions.pid = .container
    $0.annotations = ["io.kubernetes.container.hash": "1234"]
  }
  let sandbox = Runtime_V1_PodSandboxConfig.with {
    $0.metadata.name = "pod"
    $0.metadata.namespace = "default"
    $0.metadata.uid = "uid-1"
    $0.hostname = "pod-host"
  }
  let pod = PodContext(
    podID: podID, networkNamespacePath: "/run/crisp/ns/p/net", ipcNamespacePath: "/run/crisp/ns/p/ipc",
    utsNamespacePath: "/run/crisp/ns/p/uts", resolvConfPath: "/run/crisp/pods/p/resolv.conf",
    hostnamePath: "/run/crisp/pods/p/hostname", hostsPath: "/run/crisp/pods/p/hosts",
    shmPath: "/run/crisp/pods/p/shm", hostname: "pod-host", cgroupParent: "/kubepods/besteffort/poduid-1")
  var value = SpecInputs(
    containerID: containerID, config: config, sandboxConfig: sandbox,
    image: ImageRuntimeConfig(env: ["PATH=/usr/bin:/bin"], entrypoint: ["/entry"], cmd: ["serve"]),
    pod: pod, users: UserDatabase(passwd: passwd, group: group), options: options(), host: .none)
  change(&value)
  return value
}

private func build(_ change: (inout SpecInputs) -> Void = { _ in }) throws -> RuntimeSpec {
  try SpecBuilder.build(inputs(change))
}

/// The error a build must fail with.
private func failure(_ change: (inout SpecInputs) -> Void) -> CrispError? {
  do {
    let spec = try SpecBuilder.build(inputs(change))
    Issue.record("built a spec where an error was expected: \(spec)")
    return nil
  } catch {
    #expect(error.code == .invalidArgument, "\(error)")
    return error
  }
}

private let defaultCaps = [
  "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID",
  "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
]

// MARK: process

@Suite struct ProcessTests {
  @Test(
    arguments: [
      // command, args, image entrypoint, image cmd → process args
      ([], [], ["/entry"], ["serve"], ["/entry", "serve"]),
      (["/bin/app"], [], ["/entry"], ["serve"], ["/bin/app"]),
      ([], ["--flag"], ["/entry"], ["serve"], ["/entry", "--flag"]),
      (["/bin/app"], ["--flag"], ["/entry"], ["serve"], ["/bin/app", "--flag"]),
      ([], [], [], ["serve", "-v"], ["serve", "-v"]),
      ([], [], ["/entry", "-x"], [], ["/entry", "-x"]),
      ([], ["/bin/sh", "-c", "x"], [], ["serve"], ["/bin/sh", "-c", "x"]),
    ] as [([String], [String], [String], [String], [String])])
  func arguments(command: [String], args: [String], entrypoint: [String], cmd: [String], expected: [String]) throws {
    let spec = try build {
      $0.config.command = command
      $0.config.args = args
      $0.image.entrypoint = entrypoint
      $0.image.cmd = cmd
    }
    #expect(spec.process?.args == expected)
  }

  @Test func noCommandAtAll() {
    let error = failure {
      $0.config.command = []
      $0.config.args = []
      $0.image.entrypoint = []
      $0.image.cmd = []
    }
    #expect(error?.message.contains("no command specified") == true)
  }

  @Test func environmentMerge() throws {
    let spec = try build {
      $0.image.env = ["PATH=/opt/bin", "A=1", "B=2", "EMPTY="]
      $0.config.envs = [
        .with {
          $0.key = "B"
          $0.value = Data("3".utf8)
        },
        .with {
          $0.key = "C"
          $0.value = Data("x=y".utf8)
        },
        .with {
          $0.key = "C"
          $0.value = Data("4".utf8)
        },
      ]
    }
    #expect(spec.process?.env == ["PATH=/opt/bin", "A=1", "B=3", "EMPTY=", "C=4", "HOSTNAME=pod-host"])
  }

  @Test func environmentDefaults() throws {
    let plain = try build { $0.image.env = [] }
    #expect(plain.process?.env == ["PATH=\(SpecBuilder.defaultPath)", "HOSTNAME=pod-host"])

    let tty = try build {
      $0.image.env = ["HOSTNAME=fixed"]
      $0.config.tty = true
    }
    #expect(tty.process?.env == ["HOSTNAME=fixed", "PATH=\(SpecBuilder.defaultPath)", "TERM=xterm"])
    #expect(tty.process?.terminal == true)

    let error = failure { $0.config.envs = [.with { $0.key = "A=B" }] }
    #expect(error?.message.contains("envs[0].key") == true)
    let bytes = failure {
      $0.config.envs = [
        .with {
          $0.key = "A"
          $0.value = Data([0xff, 0xfe])
        }
      ]
    }
    #expect(bytes?.message.contains("not UTF-8") == true)
  }

  @Test(arguments: [
    ("", "", "/"),
    ("", "/srv", "/srv"),
    ("/work", "/srv", "/work"),
    ("app", "", "/app"),
    ("/a//b/", "", "/a/b"),
  ])
  func workingDirectory(config: String, image: String, expected: String) throws {
    let spec = try build {
      $0.config.workingDir = config
      $0.image.workingDir = image
    }
    #expect(spec.process?.cwd == expected)
  }

  @Test func annotationsAndRoot() throws {
    let spec = try build()
    #expect(spec.annotations?["io.kubernetes.container.hash"] == "1234")
    #expect(spec.annotations?["io.kubernetes.cri.container-type"] == "container")
    #expect(spec.annotations?["io.kubernetes.cri.sandbox-id"] == podID)
    #expect(spec.annotations?["io.kubernetes.cri.container-name"] == "web")
    #expect(spec.annotations?["io.kubernetes.cri.sandbox-namespace"] == "default")
    #expect(spec.annotations?["io.kubernetes.cri.image-name"] == "docker.io/library/busybox:latest")
    #expect(spec.root == RuntimeSpec.Root(path: "rootfs"))
    #expect(spec.ociVersion == "1.0.2")
    #expect(spec.hostname == "pod-host")
    #expect(failure { $0.containerID = "../x" }?.message.contains("container ID") == true)
  }

  /// A CRI client must not set what runc (systemd unit properties) or crun act on.
  @Test func annotationsTheRuntimeActsOnAreDropped() throws {
    let spec = try build {
      $0.config.annotations = [
        "org.systemd.property.DeviceAllow": "'char-* rwm'", "org.systemd.property.Delegate": "true",
        "run.oci.keep_original_groups": "1", "example.com/kept": "yes",
      ]
    }
    let keys = Set((spec.annotations ?? [:]).keys)
    #expect(keys.contains("example.com/kept"))
    #expect(!keys.contains { $0.hasPrefix("org.systemd.property.") || $0.hasPrefix("run.oci.") }, "\(keys)")
  }
}

/// The live node access: a path a CRI client names is read only if it is a regular file.
@Suite struct HostAccessTests {
  @Test func onlyRegularFilesAreReadAndErrorsSaySo() throws {
    let dir = NSTemporaryDirectory() + "crisp-host-\(getpid())"
    mkdir(dir, 0o700)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    #expect(mkfifo(dir + "/fifo", 0o600) == 0)
    let fifo = #expect(throws: CrispError.self) { try HostAccess.live.readFile(dir + "/fifo") }
    #expect(fifo?.message.contains("not a regular file") == true, "\(String(describing: fifo))")
    let device = #expect(throws: CrispError.self) { try HostAccess.live.readFile("/dev/zero") }
    #expect(device?.message.contains("not a regular file") == true)
    let relative = #expect(throws: CrispError.self) { try HostAccess.live.readFile("etc/passwd") }
    #expect(relative?.message.contains("absolute") == true)
    try "{}".write(toFile: dir + "/profile.json", atomically: true, encoding: .utf8)
    #expect(try HostAccess.live.readFile(dir + "/profile.json") == "{}")
  }
}

// MARK: users

@Suite struct UserTests {
  @Test func parsesTheDatabase() {
    let db = UserDatabase(passwd: passwd, group: group)
    #expect(db.users.map(\.name) == ["root", "daemon", "app", "other"])
    #expect(db.user(named: "app")?.uid == 1000)
    #expect(db.user(uid: 1001)?.name == "other")
    #expect(db.group(named: "staff")?.members == ["app", "other"])
    #expect(db.groupIDs(ofMember: "app") == [50, 63, 44])
    #expect(UserDatabase.empty.users.isEmpty)
  }

  struct Case: Sendable, CustomTestStringConvertible {
    var image = ""
    var runAsUser: Int64?
    var runAsGroup: Int64?
    var username = ""
    var uid: UInt32
    var gid: UInt32
    var testDescription: String { "image=\(image) user=\(String(describing: runAsUser)) name=\(username)" }
  }

  @Test(arguments: [
    Case(uid: 0, gid: 0),
    Case(image: "app", uid: 1000, gid: 1000),
    Case(image: "1000", uid: 1000, gid: 1000),
    Case(image: "4242", uid: 4242, gid: 0),
    Case(image: "app:staff", uid: 1000, gid: 50),
    Case(image: "1001:60", uid: 1001, gid: 60),
    Case(image: "app", runAsUser: 1001, uid: 1001, gid: 1001),
    Case(image: "app:staff", runAsUser: 7, uid: 7, gid: 0),
    Case(runAsUser: 1000, runAsGroup: 3000, uid: 1000, gid: 3000),
    Case(image: "4242", username: "other", uid: 1001, gid: 1001),
    Case(runAsGroup: 9, username: "app", uid: 1000, gid: 9),
  ])
  func resolution(_ c: Case) throws {
    let spec = try build {
      $0.image.user = c.image
      if let user = c.runAsUser { $0.config.linux.securityContext.runAsUser.value = user }
      if let group = c.runAsGroup { $0.config.linux.securityContext.runAsGroup.value = group }
      $0.config.linux.securityContext.runAsUsername = c.username
    }
    #expect(spec.process?.user.uid == c.uid)
    #expect(spec.process?.user.gid == c.gid)
    #expect(spec.process?.user.additionalGids?.first == c.gid)
  }

  @Test func unknownNamesAndBadIDs() {
    #expect(failure { $0.image.user = "nobody" }?.message.contains("\"nobody\" not found") == true)
    #expect(failure { $0.image.user = "app:wheel" }?.message.contains("\"wheel\" not found") == true)
    #expect(
      failure { $0.config.linux.securityContext.runAsUsername = "ghost" }?.message.contains("run_as_username") == true)
    #expect(
      failure {
        $0.users = .empty
        $0.image.user = "app"
      } != nil)
    #expect(failure { $0.config.linux.securityContext.runAsGroup.value = 5 }?.message.contains("run_as_group") == true)
    #expect(
      failure {
        $0.config.linux.securityContext.runAsUser.value = 1
        $0.config.linux.securityContext.runAsUsername = "app"
      }?.message.contains("only one") == true)
    #expect(failure { $0.config.linux.securityContext.runAsUser.value = -1 }?.message.contains("run_as_user") == true)
    #expect(
      failure { $0.config.linux.securityContext.supplementalGroups = [-5] }?.message.contains(
        "supplemental_groups[0]") == true)
  }

  @Test func supplementalGroups() throws {
    let merged = try build {
      $0.image.user = "app"
      $0.config.linux.securityContext.supplementalGroups = [4000, 50]
    }
    #expect(merged.process?.user.additionalGids == [1000, 50, 63, 44, 4000])

    let strict = try build {
      $0.image.user = "app"
      $0.config.linux.securityContext.supplementalGroups = [4000]
      $0.config.linux.securityContext.supplementalGroupsPolicy = .strict
    }
    #expect(strict.process?.user.additionalGids == [1000, 4000])

    // A uid without a passwd entry has no name, so no /etc/group memberships.
    let anonymous = try build {
      $0.config.linux.securityContext.runAsUser.value = 5000
      $0.config.linux.securityContext.runAsGroup.value = 5000
    }
    #expect(anonymous.process?.user.additionalGids == [5000])
  }
}

// MARK: mounts and devices

@Suite struct MountTests {
  private func mount(
    _ container: String, _ host: String, readonly: Bool = false,
    _ propagation: Runtime_V1_MountPropagation = .propagationPrivate
  ) -> Runtime_V1_Mount {
    .with {
      $0.containerPath = container
      $0.hostPath = host
      $0.readonly = readonly
      $0.propagation = propagation
    }
  }

  @Test func defaultsAndPodFiles() throws {
    let spec = try build()
    let mounts = try #require(spec.mounts)
    #expect(
      mounts.map(\.destination) == [
        "/proc", "/dev", "/sys", "/dev/pts", "/dev/mqueue", "/dev/shm", "/etc/resolv.conf", "/etc/hostname",
        "/etc/hosts", "/sys/fs/cgroup",
      ])
    let byDestination = Dictionary(uniqueKeysWithValues: mounts.map { ($0.destination, $0) })
    #expect(byDestination["/sys"]?.options?.contains("ro") == true)
    #expect(byDestination["/sys/fs/cgroup"]?.options?.contains("ro") == true)
    #expect(
      byDestination["/dev/shm"]
        == .init(
          destination: "/dev/shm", type: "bind", source: "/run/crisp/pods/p/shm", options: ["rw", "rbind", "rprivate"]))
    #expect(byDestination["/etc/resolv.conf"]?.source == "/run/crisp/pods/p/resolv.conf")
    #expect(byDestination["/etc/resolv.conf"]?.options == ["rw", "bind", "nodev", "nosuid", "noexec"])
    #expect(spec.linux?.rootfsPropagation == nil)

    let bare = try build {
      $0.pod.shmPath = ""
      $0.pod.hostsPath = ""
      $0.pod.resolvConfPath = ""
      $0.pod.hostnamePath = ""
      $0.config.linux.securityContext.readonlyRootfs = true
    }
    #expect(bare.mounts?.first { $0.destination == "/dev/shm" }?.type == "tmpfs")
    #expect(bare.mounts?.contains { $0.destination.hasPrefix("/etc/") } == false)
    #expect(bare.root?.readonly == true)
    let readonly = try build { $0.config.linux.securityContext.readonlyRootfs = true }
    #expect(readonly.mounts?.first { $0.destination == "/etc/hosts" }?.options?.first == "ro")
  }

  @Test func criMountsReplaceDefaultsAndAreOrdered() throws {
    let spec = try build {
      $0.config.mounts = [
        mount("/data/sub", "/srv/sub"),
        mount("/etc/hosts", "/var/lib/kubelet/pods/x/etc-hosts"),
        mount("/data", "/srv/data", readonly: true),
        mount("/dev/termination-log", "/var/lib/kubelet/pods/x/containers/web/abc"),
      ]
    }
    let mounts = try #require(spec.mounts)
    #expect(mounts.filter { $0.destination == "/etc/hosts" }.count == 1)
    #expect(mounts.first { $0.destination == "/etc/hosts" }?.source == "/var/lib/kubelet/pods/x/etc-hosts")
    let order = mounts.map(\.destination)
    #expect(try #require(order.firstIndex(of: "/data")) < #require(order.firstIndex(of: "/data/sub")))
    #expect(try #require(order.firstIndex(of: "/dev")) < #require(order.firstIndex(of: "/dev/termination-log")))
    #expect(mounts.first { $0.destination == "/data" }?.options == ["ro", "rbind", "rprivate"])
    #expect(mounts.first { $0.destination == "/data/sub" }?.type == "bind")
  }

  @Test(
    arguments: [
      ([Runtime_V1_MountPropagation.propagationPrivate], ["rprivate"], nil),
      ([.propagationHostToContainer], ["rslave"], "rslave"),
      ([.propagationBidirectional], ["rshared"], "rshared"),
      ([.propagationHostToContainer, .propagationBidirectional], ["rslave", "rshared"], "rshared"),
      ([.propagationBidirectional, .propagationHostToContainer], ["rshared", "rslave"], "rshared"),
    ] as [([Runtime_V1_MountPropagation], [String], String?)])
  func propagation(modes: [Runtime_V1_MountPropagation], options: [String], rootfs: String?) throws {
    let spec = try build {
      $0.config.mounts = modes.enumerated().map { mount("/m\($0.offset)", "/host/m\($0.offset)", $0.element) }
    }
    for (index, option) in options.enumerated() {
      #expect(spec.mounts?.first { $0.destination == "/m\(index)" }?.options?.last == option)
    }
    #expect(spec.linux?.rootfsPropagation == rootfs)
  }

  @Test func badMounts() {
    #expect(failure { $0.config.mounts = [mount("data", "/x")] }?.message.contains("mounts[0].container_path") == true)
    #expect(failure { $0.config.mounts = [mount("/data", "")] }?.message.contains("mounts[0].host_path") == true)
    #expect(
      failure { $0.config.mounts = [mount("/a", "/x"), mount("/a/", "/y")] }?.message.contains("mounts[1]") == true)
    #expect(
      failure {
        var image = mount("/img", "")
        image.image.image = "sha256:abc"
        $0.config.mounts = [image]
      }?.message.contains("image volume") == true)
  }

  /// `recursive_read_only`, as kubelet validates it: read-only and private, and only where
  /// the handler's runtime can (`rro`); FailedPrecondition elsewhere.
  @Test func recursiveReadOnlyMounts() throws {
    func rro(readonly: Bool = true, propagation: Runtime_V1_MountPropagation = .propagationPrivate) -> Runtime_V1_Mount
    {
      var mount = mount("/r", "/x", readonly: readonly)
      mount.recursiveReadOnly = true
      mount.propagation = propagation
      return mount
    }
    let spec = try build {
      $0.options.recursiveReadOnlyMounts = true
      $0.config.mounts = [rro()]
    }
    let built = try #require(spec.mounts?.first { $0.destination == "/r" })
    #expect(built.options?.contains("rro") == true && built.options?.contains("ro") == true, "\(built)")
    #expect(
      failure {
        $0.options.recursiveReadOnlyMounts = true
        $0.config.mounts = [rro(readonly: false)]
      }?.message.contains("needs readonly") == true)
    for propagation in [Runtime_V1_MountPropagation.propagationHostToContainer, .propagationBidirectional] {
      #expect(
        failure {
          $0.options.recursiveReadOnlyMounts = true
          $0.config.mounts = [rro(propagation: propagation)]
        }?.message.contains("PROPAGATION_PRIVATE") == true)
    }
    do {
      _ = try build { $0.config.mounts = [rro()] }
      Issue.record("built a recursive read-only mount on a handler that cannot")
    } catch let error as CrispError {
      #expect(error.code == .failedPrecondition && error.message.contains("recursive_read_only"), "\(error)")
    }
  }

  @Test func imageVolumesAreNotedOnly() throws {
    let built = try SpecBuilder.buildWithNotes(inputs { $0.image.volumes = ["/var/lib/data"] })
    #expect(built.spec.mounts?.contains { $0.destination == "/var/lib/data" } == false)
    #expect(built.notes.contains { $0.contains("/var/lib/data") })
  }

  private static let fakeHost = HostAccess(
    readFile: { (path: String) throws(CrispError) -> String in throw CrispError(.notFound, path) },
    devices: { (path: String) throws(CrispError) -> [RuntimeSpec.LinuxDevice] in
      switch path {
      case "/dev/fuse":
        return [.init(path: "/dev/fuse", type: "c", major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0)]
      case "/dev/snd":
        return [
          .init(path: "/dev/snd/timer", type: "c", major: 116, minor: 33, fileMode: 0o660, uid: 0, gid: 29),
          .init(path: "/dev/snd/seq", type: "c", major: 116, minor: 1, fileMode: 0o660, uid: 0, gid: 29),
        ]
      default: throw CrispError(.notFound, "\(path): no such device")
      }
    },
    allDevices: {
      [
        .init(path: "/dev/fuse", type: "c", major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0),
        .init(path: "/dev/loop0", type: "b", major: 7, minor: 0, fileMode: 0o660, uid: 0, gid: 6),
      ]
    })

  @Test func devices() throws {
    let spec = try build {
      $0.host = Self.fakeHost
      $0.config.devices = [
        .with {
          $0.hostPath = "/dev/fuse"
          $0.containerPath = "/dev/fuse"
          $0.permissions = "rw"
        },
        .with {
          $0.hostPath = "/dev/snd"
          $0.containerPath = "/dev/sound"
          $0.permissions = ""
        },
      ]
    }
    #expect(spec.linux?.devices?.map(\.path) == ["/dev/fuse", "/dev/sound/timer", "/dev/sound/seq"])
    #expect(
      spec.linux?.resources?.devices == [
        .init(allow: false, access: "rwm"),
        .init(allow: true, type: "c", major: 10, minor: 229, access: "rw"),
        .init(allow: true, type: "c", major: 116, minor: 33, access: "rwm"),
        .init(allow: true, type: "c", major: 116, minor: 1, access: "rwm"),
      ])

    #expect(
      failure {
        $0.host = Self.fakeHost
        $0.config.devices = [
          .with {
            $0.hostPath = "/dev/fuse"
            $0.permissions = "rx"
          }
        ]
      }?.message.contains("devices[0].permissions") == true)
    #expect(
      failure {
        $0.host = Self.fakeHost
        $0.config.devices = [.with { $0.hostPath = "/dev/nope" }]
      }?.message.contains("devices[0].host_path") == true)
  }

  @Test func cdiDevicesAreRefused() {
    #expect(
      failure { $0.config.cdiDevices = [.with { $0.name = "vendor.com/gpu=0" }] }?.message.contains("CDI") == true)
  }

  @Test func privilegedDevices() throws {
    let spec = try build {
      $0.host = Self.fakeHost
      $0.sandboxConfig.linux.securityContext.privileged = true
      $0.config.linux.securityContext.privileged = true
      $0.config.devices = [
        .with {
          $0.hostPath = "/dev/fuse"
          $0.containerPath = "/dev/fuse"
          $0.permissions = "r"
        }
      ]
    }
    #expect(spec.linux?.devices?.map(\.path) == ["/dev/fuse", "/dev/loop0"])
    #expect(spec.linux?.resources?.devices == [.init(allow: true, access: "rwm")])
  }
}

// MARK: security

@Suite struct SecurityTests {
  private func caps(_ change: (inout Runtime_V1_Capability) -> Void, uid: Int64 = 0) throws
    -> RuntimeSpec.LinuxCapabilities
  {
    let spec = try build {
      change(&$0.config.linux.securityContext.capabilities)
      $0.config.linux.securityContext.runAsUser.value = uid
    }
    return try #require(spec.process?.capabilities)
  }

  @Test func defaultCapabilities() throws {
    let result = try caps { _ in }
    #expect(result.bounding == defaultCaps)
    #expect(result.effective == defaultCaps)
    #expect(result.permitted == defaultCaps)
    #expect(result.inheritable == [])
    #expect(result.ambient == [])
  }

  @Test(
    arguments: [
      (["NET_ADMIN"], [], defaultCaps + ["CAP_NET_ADMIN"]),
      (
        ["cap_net_raw"], ["CHOWN", "KILL"],
        defaultCaps.filter { $0 != "CAP_CHOWN" && $0 != "CAP_KILL" } + ["CAP_NET_RAW"]
      ),
      ([], ["ALL"], []),
      (["NET_BIND_SERVICE"], ["ALL"], ["CAP_NET_BIND_SERVICE"]),
      (["ALL"], ["ALL"], []),
      (["ALL", "SYS_ADMIN"], ["ALL"], ["CAP_SYS_ADMIN"]),
      (["all"], ["CHOWN"], Array(KnownCapabilities.names.dropFirst())),
    ] as [([String], [String], [String])])
  func addAndDrop(add: [String], drop: [String], expected: [String]) throws {
    let result = try caps {
      $0.addCapabilities = add
      $0.dropCapabilities = drop
    }
    #expect(Set(result.bounding ?? []) == Set(expected))
    #expect(result.bounding == SpecBuilder.ordered(Set(expected)))
    #expect(result.effective == result.bounding)
  }

  @Test func nonRootUsersHaveNoEffectiveCapabilities() throws {
    let result = try caps({ $0.addCapabilities = ["NET_ADMIN"] }, uid: 1000)
    #expect(result.bounding == SpecBuilder.ordered(Set(defaultCaps + ["CAP_NET_ADMIN"])))
    #expect(result.effective == [])
    #expect(result.permitted == [])

    let ambient = try caps({ $0.addAmbientCapabilities = ["NET_BIND_SERVICE", "NET_RAW"] }, uid: 1000)
    #expect(ambient.ambient == ["CAP_NET_BIND_SERVICE", "CAP_NET_RAW"])
    #expect(ambient.effective == ambient.ambient)
    #expect(ambient.permitted == ambient.ambient)
    #expect(ambient.inheritable == ambient.ambient)
    #expect(ambient.bounding?.contains("CAP_NET_RAW") == true)
  }

  @Test func unknownCapability() {
    let error = failure { $0.config.linux.securityContext.capabilities.addCapabilities = ["FLY"] }
    #expect(error?.message.contains("add_capabilities") == true)
    #expect(error?.message.contains("FLY") == true)
  }

  @Test func capabilitiesTheRuntimeLacksAreLeftOut() throws {
    let built = try SpecBuilder.buildWithNotes(
      inputs {
        $0.options.grantableCapabilities = KnownCapabilities.names.filter { $0 != "CAP_SYS_RESOURCE" }
        $0.config.linux.securityContext.capabilities.addCapabilities = ["SYS_RESOURCE", "SYS_TIME"]
      })
    #expect(built.spec.process?.capabilities?.bounding?.contains("CAP_SYS_RESOURCE") == false)
    #expect(built.spec.process?.capabilities?.bounding?.contains("CAP_SYS_TIME") == true)
    #expect(built.notes.contains { $0.contains("CAP_SYS_RESOURCE") })

    let older = try build {
      $0.options.lastCapability = 37
      $0.config.linux.securityContext.capabilities.addCapabilities = ["ALL"]
    }
    #expect(older.process?.capabilities?.bounding?.count == 38)
    #expect(
      failure {
        $0.options.lastCapability = 37
        $0.config.linux.securityContext.capabilities.addCapabilities = ["BPF"]
      } != nil)
  }

  @Test func privileged() throws {
    let spec = try build {
      $0.sandboxConfig.linux.securityContext.privileged = true
      $0.config.linux.securityContext.privileged = true
      $0.config.linux.securityContext.capabilities.dropCapabilities = ["ALL"]
      $0.config.linux.securityContext.maskedPaths = ["/proc/kcore"]
      $0.config.linux.securityContext.seccomp.profileType = .runtimeDefault
    }
    #expect(spec.process?.capabilities?.bounding == KnownCapabilities.names)
    #expect(spec.process?.capabilities?.effective == KnownCapabilities.names)
    #expect(spec.linux?.maskedPaths == nil)
    #expect(spec.linux?.readonlyPaths == nil)
    #expect(spec.linux?.seccomp == nil)
    #expect(spec.linux?.resources?.devices == [.init(allow: true, access: "rwm")])
    #expect(spec.mounts?.first { $0.destination == "/sys" }?.options?.contains("rw") == true)
    #expect(spec.mounts?.first { $0.destination == "/sys/fs/cgroup" }?.options?.contains("rw") == true)

    let error = failure { $0.config.linux.securityContext.privileged = true }
    #expect(error?.message.contains("privileged") == true)
  }

  @Test func maskedAndReadonlyPaths() throws {
    let defaults = try build()
    #expect(defaults.linux?.maskedPaths == SpecBuilder.defaultMaskedPaths)
    #expect(defaults.linux?.readonlyPaths == SpecBuilder.defaultReadonlyPaths)
    #expect(defaults.linux?.maskedPaths?.contains("/sys/devices/virtual/powercap") == true)

    let given = try build {
      $0.config.linux.securityContext.maskedPaths = ["/proc/secret"]
      $0.config.linux.securityContext.readonlyPaths = ["/proc/ro"]
    }
    #expect(given.linux?.maskedPaths == ["/proc/secret"])
    #expect(given.linux?.readonlyPaths == ["/proc/ro"])
  }

  @Test func noNewPrivilegesAndReadonlyRoot() throws {
    let plain = try build()
    #expect(plain.process?.noNewPrivileges == false)
    #expect(plain.root?.readonly == nil)
    let locked = try build {
      $0.config.linux.securityContext.noNewPrivs = true
      $0.config.linux.securityContext.readonlyRootfs = true
    }
    #expect(locked.process?.noNewPrivileges == true)
    #expect(locked.root?.readonly == true)
  }

  @Test func appArmor() throws {
    #expect(try build().process?.apparmorProfile == nil)
    let available = { (o: inout SpecOptions) in
      o.appArmorAvailable = true
      o.appArmorDefaultProfile = "crisp-default"
    }
    #expect(try build { $0.options = options(available) }.process?.apparmorProfile == "crisp-default")
    #expect(
      try build {
        $0.options = options(available)
        $0.config.linux.securityContext.apparmor.profileType = .unconfined
      }.process?.apparmorProfile == "unconfined")
    #expect(
      try build {
        $0.options = options(available)
        $0.config.linux.securityContext.apparmor = .with {
          $0.profileType = .localhost
          $0.localhostRef = "localhost/my-profile"
        }
      }.process?.apparmorProfile == "my-profile")
    #expect(
      try build {
        $0.options = options(available)
        $0.config.linux.securityContext.apparmorProfile = "localhost/legacy"
      }.process?.apparmorProfile == "legacy")
    #expect(
      failure {
        $0.config.linux.securityContext.apparmor = .with {
          $0.profileType = .localhost
          $0.localhostRef = "p"
        }
      }?.message.contains("no AppArmor") == true)
  }
}

// MARK: seccomp

@Suite struct SeccompTests {
  private func names(_ seccomp: RuntimeSpec.LinuxSeccomp?, action: String = "SCMP_ACT_ALLOW") -> Set<String> {
    Set((seccomp?.syscalls ?? []).filter { $0.action == action }.flatMap(\.names))
  }

  @Test func runtimeDefault() throws {
    let spec = try build { $0.config.linux.securityContext.seccomp.profileType = .runtimeDefault }
    let seccomp = try #require(spec.linux?.seccomp)
    #expect(seccomp.defaultAction == "SCMP_ACT_ERRNO")
    #expect(seccomp.defaultErrnoRet == 38)
    #expect(seccomp.architectures == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
    let allowed = names(seccomp)
    #expect(allowed.contains("read"))
    #expect(allowed.contains("arch_prctl"))
    #expect(!allowed.contains("s390_pci_mmio_read"))
    #expect(!allowed.contains("sync_file_range2"))
    // CAP_SYS_ADMIN-only calls are refused without it, allowed with it.
    #expect(!allowed.contains("sethostname"))
    #expect(names(seccomp, action: "SCMP_ACT_ERRNO").contains("sethostname"))
    #expect(seccomp.syscalls?.first { $0.names == ["personality"] }?.args?.first?.op == "SCMP_CMP_EQ")

    let admin = try build {
      $0.config.linux.securityContext.seccomp.profileType = .runtimeDefault
      $0.config.linux.securityContext.capabilities.addCapabilities = ["SYS_ADMIN"]
    }
    let adminAllowed = names(admin.linux?.seccomp)
    let adminRefused = names(admin.linux?.seccomp, action: "SCMP_ACT_ERRNO")
    #expect(adminAllowed.contains("sethostname"))
    #expect(!adminRefused.contains("sethostname"))
  }

  @Test func unconfinedAndUnset() throws {
    #expect(try build { $0.config.linux.securityContext.seccomp.profileType = .unconfined }.linux?.seccomp == nil)
    #expect(try build().linux?.seccomp != nil)
    #expect(try build { $0.options.seccompDefaultWhenUnset = false }.linux?.seccomp == nil)
    #expect(
      try build { $0.config.linux.securityContext.seccompProfilePath = "unconfined" }.linux?.seccomp == nil)
    #expect(
      try build {
        $0.options.seccompDefaultWhenUnset = false
        $0.config.linux.securityContext.seccompProfilePath = "runtime/default"
      }.linux?.seccomp?.defaultAction == "SCMP_ACT_ERRNO")
  }

  @Test func localhost() throws {
    let profile = #"""
      {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
       "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                    {"names": ["chroot"], "action": "SCMP_ACT_KILL", "includes": {"minKernel": "7.0"}},
                    {"names": ["unshare"], "action": "SCMP_ACT_LOG", "includes": {"minKernel": "5.4"}}]}
      """#
    let host = HostAccess(
      readFile: { (path: String) throws(CrispError) -> String in
        guard path == "/var/lib/kubelet/seccomp/audit.json" else { throw CrispError(.notFound, "\(path): missing") }
        return profile
      },
      devices: HostAccess.none.devices, allDevices: HostAccess.none.allDevices)
    let spec = try build {
      $0.host = host
      $0.config.linux.securityContext.seccomp = .with {
        $0.profileType = .localhost
        $0.localhostRef = "/var/lib/kubelet/seccomp/audit.json"
      }
    }
    #expect(
      spec.linux?.seccomp
        == RuntimeSpec.LinuxSeccomp(
          defaultAction: "SCMP_ACT_ALLOW", architectures: ["SCMP_ARCH_X86_64"],
          syscalls: [
            .init(names: ["mkdir"], action: "SCMP_ACT_ERRNO", errnoRet: 1),
            .init(names: ["unshare"], action: "SCMP_ACT_LOG"),
          ]))

    let legacy = try build {
      $0.host = host
      $0.config.linux.securityContext.seccompProfilePath = "localhost//var/lib/kubelet/seccomp/audit.json"
    }
    #expect(legacy.linux?.seccomp?.defaultAction == "SCMP_ACT_ALLOW")

    #expect(
      failure {
        $0.host = host
        $0.config.linux.securityContext.seccomp = .with {
          $0.profileType = .localhost
          $0.localhostRef = "audit.json"
        }
      }?.message.contains("not an absolute path") == true)
    #expect(
      failure {
        $0.host = host
        $0.config.linux.securityContext.seccomp = .with {
          $0.profileType = .localhost
          $0.localhostRef = "/nope.json"
        }
      }?.message.contains("linux.security_context.seccomp") == true)
  }

  @Test func badProfiles() {
    #expect(throws: CrispError.self) { try ContainerSeccompProfile.parse("{", source: "/p") }
    let action = #expect(throws: CrispError.self) {
      try ContainerSeccompProfile.parse(#"{"defaultAction": "SCMP_ACT_NOPE"}"#, source: "/p.json")
    }
    #expect(action?.message.contains("/p.json") == true)
    #expect(throws: CrispError.self) {
      try ContainerSeccompProfile.parse(
        #"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "LIKE"}]}]}"#,
        source: "/p")
    }
    #expect(throws: CrispError.self) {
      try ContainerSeccompProfile.parse(
        #"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#,
        source: "/p")
    }
  }

  @Test func architecturesAndKernels() {
    let profile = ContainerSeccompProfile(
      defaultAction: "SCMP_ACT_ERRNO",
      archMap: [.init(architecture: "SCMP_ARCH_AARCH64", subArchitectures: ["SCMP_ARCH_ARM"])],
      syscalls: [
        .init(names: ["a"], action: "SCMP_ACT_ALLOW", includes: .init(arches: ["arm64"])),
        .init(names: ["b"], action: "SCMP_ACT_ALLOW", excludes: .init(arches: ["arm64"])),
        .init(names: ["c"], action: "SCMP_ACT_ALLOW", excludes: .init(minKernel: "5.0")),
      ])
    let arm = profile.resolved(capabilities: [], architecture: "arm64", kernel: KernelVersion("6.18.44-fc-v657"))
    #expect(arm?.architectures == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
    #expect(arm?.syscalls?.map(\.names) == [["a"]])
    let old = profile.resolved(capabilities: [], architecture: "amd64", kernel: KernelVersion("4.19"))
    #expect(old?.architectures == nil)
    #expect(old?.syscalls?.map(\.names) == [["b"], ["c"]])
    #expect(KernelVersion("6.18.44-fc-v657") == KernelVersion(major: 6, minor: 18, patch: 44))
    #expect(KernelVersion("x") == nil)
  }
}

// MARK: namespaces, sysctls, cgroups, resources

@Suite struct LinuxTests {
  @Test(
    arguments: [
      (Runtime_V1_NamespaceMode.container, RuntimeSpec.LinuxNamespace(type: .pid)),
      (.pod, RuntimeSpec.LinuxNamespace(type: .pid, path: "/proc/42/ns/pid")),
      (.target, RuntimeSpec.LinuxNamespace(type: .pid, path: "/proc/77/ns/pid")),
      (.node, nil),
    ] as [(Runtime_V1_NamespaceMode, RuntimeSpec.LinuxNamespace?)])
  func pidNamespace(mode: Runtime_V1_NamespaceMode, expected: RuntimeSpec.LinuxNamespace?) throws {
    let spec = try build {
      $0.pod.pidNamespacePath = "/proc/42/ns/pid"
      $0.targetPIDNamespacePath = "/proc/77/ns/pid"
      $0.config.linux.securityContext.namespaceOptions.pid = mode
      $0.config.linux.securityContext.namespaceOptions.targetID = "other"
    }
    let namespaces = try #require(spec.linux?.namespaces)
    #expect(namespaces.first { $0.type == .pid } == expected)
    #expect(
      namespaces.filter { $0.type != .pid } == [
        .init(type: .network, path: "/run/crisp/ns/p/net"), .init(type: .ipc, path: "/run/crisp/ns/p/ipc"),
        .init(type: .uts, path: "/run/crisp/ns/p/uts"), .init(type: .mount),
      ])
  }

  @Test func hostNamespaces() throws {
    let spec = try build {
      $0.pod.networkNamespacePath = ""
      $0.pod.ipcNamespacePath = ""
      $0.pod.utsNamespacePath = ""
      $0.options.cgroup.unifiedHierarchy = true
    }
    #expect(spec.linux?.namespaces == [.init(type: .pid), .init(type: .mount), .init(type: .cgroup)])
    #expect(spec.hostname == nil)
    #expect(spec.process?.env?.contains("HOSTNAME=pod-host") == true)
  }

  @Test func namespaceRefusals() {
    #expect(
      failure { $0.config.linux.securityContext.namespaceOptions.pid = .pod }?.message.contains("shared PID") == true)
    #expect(
      failure { $0.config.linux.securityContext.namespaceOptions.pid = .target }?.message.contains("target_id") == true)
    #expect(
      failure {
        $0.config.linux.securityContext.namespaceOptions.usernsOptions = .with {
          $0.mode = .pod
          $0.uids = [
            .with {
              $0.hostID = 100000
              $0.length = 65536
            }
          ]
        }
      }?.message.contains("user namespaces") == true)
    #expect(
      failure {
        $0.sandboxConfig.linux.securityContext.namespaceOptions.usernsOptions.mode = .pod
      }?.message.contains("pod sandbox") == true)
    #expect(
      (try? build { $0.config.linux.securityContext.namespaceOptions.usernsOptions.mode = .node }) != nil)
  }

  @Test func sysctls() throws {
    let spec = try build {
      $0.sandboxConfig.linux.sysctls = [
        "net.ipv4.ip_unprivileged_port_start": "0", "kernel.shmmax": "1000", "fs.mqueue.msg_max": "20",
        "net/ipv4/conf/eth0.100/forwarding": "1", "kernel.sem": "250 32000 32 128",
      ]
    }
    #expect(
      spec.linux?.sysctl == [
        "net.ipv4.ip_unprivileged_port_start": "0", "kernel.shmmax": "1000", "fs.mqueue.msg_max": "20",
        "net.ipv4.conf.eth0/100.forwarding": "1", "kernel.sem": "250 32000 32 128",
      ])
  }

  @Test(
    arguments: [
      ("net.core.somaxconn", \PodContext.networkNamespacePath, "host network"),
      ("kernel.shmall", \PodContext.ipcNamespacePath, "host IPC"),
      ("kernel.msgmax", \PodContext.ipcNamespacePath, "host IPC"),
      ("kernel.sem", \PodContext.ipcNamespacePath, "host IPC"),
      ("fs.mqueue.queues_max", \PodContext.ipcNamespacePath, "host IPC"),
      ("kernel.domainname", \PodContext.utsNamespacePath, "host UTS"),
    ] as [(String, WritableKeyPath<PodContext, String> & Sendable, String)])
  func sysctlRefusedInHostNamespaces(
    name: String, path: WritableKeyPath<PodContext, String> & Sendable, message: String
  ) {
    let error = failure {
      $0.pod[keyPath: path] = ""
      $0.sandboxConfig.linux.sysctls = [name: "1"]
    }
    #expect(error?.message.contains(message) == true)
    #expect(error?.message.contains(name) == true)
  }

  @Test func nonNamespacedSysctl() {
    #expect(
      failure { $0.sandboxConfig.linux.sysctls = ["vm.swappiness": "1"] }?.message.contains("not a namespaced") == true)
  }

  @Test(arguments: [
    (CgroupDriver.cgroupfs, "/kubepods/besteffort/poduid-1", "/kubepods/besteffort/poduid-1/crisp-\(containerID)"),
    (.cgroupfs, "", "/crisp/crisp-\(containerID)"),
    (.cgroupfs, "kubepods//x/", "/kubepods/x/crisp-\(containerID)"),
    (.systemd, "kubepods-besteffort-poduid_1.slice", "kubepods-besteffort-poduid_1.slice:crisp:\(containerID)"),
    (
      .systemd, "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-poduid_1.slice",
      "kubepods-besteffort-poduid_1.slice:crisp:\(containerID)"
    ),
    (.systemd, "", "system.slice:crisp:\(containerID)"),
  ])
  func cgroupsPath(driver: CgroupDriver, parent: String, expected: String) throws {
    let spec = try build {
      $0.options.cgroupDriver = driver
      $0.pod.cgroupParent = parent
    }
    #expect(spec.linux?.cgroupsPath == expected)
  }

  @Test func cgroupParentMismatch() {
    #expect(
      failure { $0.pod.cgroupParent = "kubepods.slice" }?.message.contains("cgroup driver is cgroupfs") == true)
    #expect(
      failure {
        $0.options.cgroupDriver = .systemd
        $0.pod.cgroupParent = "/kubepods/besteffort"
      }?.message.contains("not a systemd slice") == true)
  }

  @Test(arguments: [
    (0, -1000, 0, false),
    (-997, -1000, -997, false),
    (-997, 0, 0, true),
    (1000, -999, 1000, false),
    (-999, -500, -500, true),
  ])
  func oomScoreAdj(requested: Int64, minimum: Int, expected: Int, noted: Bool) throws {
    let built = try SpecBuilder.buildWithNotes(
      inputs {
        $0.options.minimumOOMScoreAdj = minimum
        $0.config.linux.resources.oomScoreAdj = requested
      })
    #expect(built.spec.process?.oomScoreAdj == expected)
    #expect(built.notes.contains { $0.contains("oom_score_adj") } == noted)
  }

  @Test func oomScoreAdjRange() {
    #expect(failure { $0.config.linux.resources.oomScoreAdj = 1001 }?.message.contains("oom_score_adj") == true)
  }

  @Test func resources() throws {
    let spec = try build {
      $0.options.pidsLimit = 1024
      $0.config.linux.resources = .with {
        $0.cpuShares = 512
        $0.cpuQuota = 50000
        $0.cpuPeriod = 100000
        $0.cpusetCpus = "0-1,3"
        $0.cpusetMems = "0"
        $0.memoryLimitInBytes = 256 << 20
        $0.hugepageLimits = [
          .with {
            $0.pageSize = "2MB"
            $0.limit = 1 << 30
          }
        ]
      }
    }
    let resources = try #require(spec.linux?.resources)
    #expect(
      resources.cpu == .init(shares: 512, quota: 50000, period: 100000, cpus: "0-1,3", mems: "0"))
    #expect(resources.memory == .init(limit: 256 << 20, swap: 256 << 20))
    #expect(resources.hugepageLimits == [.init(pageSize: "2MB", limit: 1 << 30)])
    #expect(resources.pids == .init(limit: 1024))
    #expect(resources.unified == nil)

    let empty = try build()
    #expect(empty.linux?.resources?.cpu == nil)
    #expect(empty.linux?.resources?.memory == nil)
    #expect(empty.linux?.resources?.pids == nil)
  }

  @Test func resourcesTheNodeCannotApply() throws {
    let built = try SpecBuilder.buildWithNotes(
      inputs {
        $0.options.cgroup = CgroupFeatures(unifiedHierarchy: false, memorySwap: false, hugetlb: false)
        $0.config.linux.resources = .with {
          $0.memoryLimitInBytes = 64 << 20
          $0.memorySwapLimitInBytes = 128 << 20
          $0.hugepageLimits = [
            .with {
              $0.pageSize = "1GB"
              $0.limit = 1 << 30
            }
          ]
          $0.unified = ["memory.high": "1000000"]
        }
      })
    let resources = try #require(built.spec.linux?.resources)
    #expect(resources.memory == .init(limit: 64 << 20))
    #expect(resources.hugepageLimits == nil)
    #expect(resources.unified == nil)
    #expect(built.notes.count == 3)

    let v2 = try build {
      $0.options.cgroup = CgroupFeatures(unifiedHierarchy: true, memorySwap: true, hugetlb: true)
      $0.config.linux.resources = .with {
        $0.memoryLimitInBytes = 64 << 20
        $0.memorySwapLimitInBytes = -1
        $0.unified = ["memory.high": "1000000"]
      }
    }
    #expect(v2.linux?.resources?.memory == .init(limit: 64 << 20, swap: -1))
    #expect(v2.linux?.resources?.unified == ["memory.high": "1000000"])
  }

  @Test func badResources() {
    #expect(
      failure { $0.config.linux.resources.memoryLimitInBytes = 1 << 20 }?.message.contains("memory_limit_in_bytes")
        == true)
    #expect(
      failure {
        $0.config.linux.resources.memoryLimitInBytes = 64 << 20
        $0.config.linux.resources.memorySwapLimitInBytes = 32 << 20
      }?.message.contains("memory_swap_limit_in_bytes") == true)
    #expect(failure { $0.config.linux.resources.cpuQuota = -5 }?.message.contains("cpu_quota") == true)
    #expect(failure { $0.config.linux.resources.cpusetCpus = "0-a" }?.message.contains("cpuset_cpus") == true)
    #expect(
      failure { $0.config.linux.resources.hugepageLimits = [.with { $0.pageSize = "2M" }] }?.message.contains(
        "page_size") == true)
    #expect(failure { $0.config.linux.resources.unified = ["../x": "1"] }?.message.contains("unified") == true)
  }
}

// MARK: JSON

@Suite struct EncodingTests {
  @Test func specKeyNames() throws {
    let spec = try build {
      $0.config.linux.securityContext.noNewPrivs = true
      $0.config.linux.resources.oomScoreAdj = 100
      $0.config.linux.resources.memoryLimitInBytes = 64 << 20
      $0.config.mounts = [
        .with {
          $0.containerPath = "/m"
          $0.hostPath = "/h"
          $0.propagation = .propagationHostToContainer
        }
      ]
      $0.config.linux.securityContext.seccomp.profileType = .runtimeDefault
    }
    let bytes = try SpecBuilder.encode(spec)
    let json = String(decoding: bytes, as: UTF8.self)
    for key in [
      "\"ociVersion\":\"1.0.2\"", "\"noNewPrivileges\":true", "\"oomScoreAdj\":100", "\"additionalGids\":[",
      "\"cgroupsPath\":\"/kubepods/besteffort/poduid-1/crisp-", "\"rootfsPropagation\":\"rslave\"",
      "\"maskedPaths\":[", "\"readonlyPaths\":[", "\"defaultErrnoRet\":38", "\"defaultAction\":\"SCMP_ACT_ERRNO\"",
      "\"errnoRet\":1", "\"valueTwo\":0", "\"namespaces\":[", "\"type\":\"network\"",
      "\"path\":\"/run/crisp/ns/p/net\"",
      "\"destination\":\"/proc\"", "\"bounding\":[\"CAP_CHOWN\"", "\"limit\":67108864", "\"swap\":67108864",
      "\"devices\":[{\"access\":\"rwm\",\"allow\":false}]", "\"cwd\":\"/\"", "\"root\":{\"path\":\"rootfs\"}",
      "\"args\":[\"/bin/sh\",\"-c\",\"true\"]",
    ] {
      #expect(json.contains(key), "\(key) missing from \(json)")
    }
    // Nil fields are left out, not written as null.
    for absent in ["null", "selinuxLabel", "apparmorProfile", "hooks", "uidMappings", "mountLabel", "consoleSize"] {
      #expect(!json.contains(absent), "\(absent) in \(json)")
    }
    #expect(try JSONDecoder().decode(RuntimeSpec.self, from: Data(bytes)) == spec)
    // The `mount` namespace has no path key at all.
    #expect(json.contains("{\"type\":\"mount\"}"))
  }

  @Test func decodesRuncsOwnSpec() throws {
    let json = #"""
      {"ociVersion": "1.0.2-dev", "process": {"terminal": true, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
       "env": ["PATH=/bin"], "cwd": "/", "capabilities": {"bounding": ["CAP_KILL"]},
       "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}], "noNewPrivileges": true},
       "root": {"path": "rootfs", "readonly": true}, "hostname": "runc",
       "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
       "linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}]},
       "namespaces": [{"type": "pid"}, {"type": "network"}],
       "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]}}
      """#
    let spec = try JSONDecoder().decode(RuntimeSpec.self, from: Data(json.utf8))
    #expect(spec.process?.rlimits == [.init(type: "RLIMIT_NOFILE", hard: 1024, soft: 1024)])
    #expect(spec.linux?.namespaces?.map(\.type) == [.pid, .network])
    #expect(spec.root?.readonly == true)
  }

  @Test func shippedProfileParses() throws {
    #expect(defaultProfile.defaultAction == "SCMP_ACT_ERRNO")
    #expect(defaultProfile.archMap?.first?.architecture == "SCMP_ARCH_X86_64")
    #expect((defaultProfile.syscalls ?? []).count > 30)
  }
}

// MARK: real runc

private let runcPath = "/usr/sbin/runc"
private let busyboxPath = "/bin/busybox"

/// What this process holds, in /proc/self/status's hex.
private func ownCapabilityMask(_ field: String) -> UInt64 {
  let status = readWholeFile("/proc/self/status")
  let line = status.split(separator: "\n").first { $0.hasPrefix(field + ":") } ?? ""
  return UInt64(line.split(separator: "\t").last ?? "", radix: 16) ?? 0
}

private func hex16(_ mask: UInt64) -> String {
  let digits = String(mask, radix: 16)
  return String(repeating: "0", count: 16 - digits.count) + digits
}

@Suite(
  .serialized,
  .enabled(
    if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: runcPath)
      && FileManager.default.isExecutableFile(atPath: busyboxPath)))
struct RuncTests {
  /// Builds a spec for a busybox container, runs it with runc and returns runc's
  /// status and the container's output.
  private func run(_ change: (inout SpecInputs) -> Void) throws -> (status: Int32, output: String) {
    let dir = try makeTemporaryDirectory(prefix: "specbuilder-runc")
    let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 16)
    let id = "spectest-" + suffix
    let cgroupParent = "/crisp-spectest-" + suffix
    defer {
      _ = try? runProgram(runcPath, ["--root", dir + "/state", "delete", "--force", id], timeout: 30)
      removeCgroups(parent: cgroupParent)
      try? FileManager.default.removeItem(atPath: dir)
    }
    let files = FileManager.default
    try files.createDirectory(atPath: dir + "/bundle/rootfs/bin", withIntermediateDirectories: true)
    try files.copyItem(atPath: busyboxPath, toPath: dir + "/bundle/rootfs/bin/busybox")
    try files.createDirectory(atPath: dir + "/pod/shm", withIntermediateDirectories: true)
    try "nameserver 127.0.0.1\n".write(toFile: dir + "/pod/resolv.conf", atomically: true, encoding: .utf8)
    try "spectest\n".write(toFile: dir + "/pod/hostname", atomically: true, encoding: .utf8)
    try "127.0.0.1 localhost\n".write(toFile: dir + "/pod/hosts", atomically: true, encoding: .utf8)

    let ownOOM = Int(readWholeFile("/proc/self/oom_score_adj").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    var uts = utsname()
    uname(&uts)
    let release = withUnsafeBytes(of: uts.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    var value = inputs {
      $0.containerID = id
      $0.config.command = ["/bin/busybox", "sh", "-c", "grep Cap /proc/self/status; id"]
      $0.config.args = []
      $0.config.linux.resources.oomScoreAdj = -997
      $0.config.linux.resources.memoryLimitInBytes = 64 << 20
      $0.users = .empty
      $0.pod = PodContext(
        podID: podID, resolvConfPath: dir + "/pod/resolv.conf", hostnamePath: dir + "/pod/hostname",
        hostsPath: dir + "/pod/hosts", shmPath: dir + "/pod/shm", hostname: "spectest", cgroupParent: cgroupParent)
      $0.host = .live
      $0.options = options {
        $0.cgroup = CgroupFeatures.detect()
        $0.grantableCapabilities = KnownCapabilities.names(inMask: ownCapabilityMask("CapPrm"))
        $0.lastCapability =
          Int(readWholeFile("/proc/sys/kernel/cap_last_cap").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 40
        $0.minimumOOMScoreAdj = ownOOM
        $0.kernelVersion = KernelVersion(release)
        $0.pidsLimit = 100
      }
    }
    change(&value)
    let spec = try SpecBuilder.build(value)
    try Data(SpecBuilder.encode(spec, pretty: true)).write(to: URL(fileURLWithPath: dir + "/bundle/config.json"))
    return try runProgram(
      runcPath, ["--root", dir + "/state", "run", "--bundle", dir + "/bundle", id], timeout: 60)
  }

  /// runc removes the container's cgroup; the test's parent is left in every hierarchy.
  private func removeCgroups(parent: String) {
    let root = "/sys/fs/cgroup"
    let hierarchies =
      ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).map { root + "/" + $0 } + [root]
    for hierarchy in hierarchies {
      let path = hierarchy + parent
      for child in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] where child.hasPrefix("crisp-") {
        rmdir(path + "/" + child)
      }
      rmdir(path)
    }
  }

  @Test func defaultContainer() throws {
    let result = try run { _ in }
    #expect(result.status == 0, "\(result.output)")
    let expected = KnownCapabilities.mask(defaultCaps) & ownCapabilityMask("CapPrm")
    #expect(result.output.contains("CapEff:\t\(hex16(expected))"), "\(result.output)")
    #expect(result.output.contains("CapBnd:\t\(hex16(expected))"), "\(result.output)")
    #expect(result.output.contains("CapInh:\t0000000000000000"), "\(result.output)")
    #expect(result.output.contains("uid=0 gid=0"), "\(result.output)")
  }

  @Test func privilegedContainer() throws {
    let result = try run {
      $0.sandboxConfig.linux.securityContext.privileged = true
      $0.config.linux.securityContext.privileged = true
    }
    #expect(result.status == 0, "\(result.output)")
    let all = ownCapabilityMask("CapPrm")
    #expect(result.output.contains("CapEff:\t\(hex16(all))"), "\(result.output)")
    #expect(hex16(all) != hex16(KnownCapabilities.mask(defaultCaps)))
  }

  /// Also what else the spec asked for: seccomp filter mode, no_new_privs, the
  /// clamped oom_score_adj, the memory limit.
  @Test func nonRootContainer() throws {
    let memoryFile =
      CgroupFeatures.detect().unifiedHierarchy
      ? "/sys/fs/cgroup/memory.max" : "/sys/fs/cgroup/memory/memory.limit_in_bytes"
    let ownOOM = readWholeFile("/proc/self/oom_score_adj").trimmingCharacters(in: .whitespacesAndNewlines)
    let result = try run {
      $0.config.command = [
        "/bin/busybox", "sh", "-c",
        "grep -E 'Cap|Seccomp:|NoNewPrivs' /proc/self/status; id; echo oom=$(cat /proc/self/oom_score_adj);"
          + " echo mem=$(cat \(memoryFile))",
      ]
      $0.config.linux.securityContext.runAsUser.value = 1000
      $0.config.linux.securityContext.runAsGroup.value = 1000
      $0.config.linux.securityContext.supplementalGroups = [4000]
      $0.config.linux.securityContext.noNewPrivs = true
    }
    #expect(result.status == 0, "\(result.output)")
    #expect(result.output.contains("CapEff:\t0000000000000000"), "\(result.output)")
    #expect(result.output.contains("uid=1000 gid=1000 groups=1000,4000"), "\(result.output)")
    #expect(result.output.contains("Seccomp:\t2"), "\(result.output)")
    #expect(result.output.contains("NoNewPrivs:\t1"), "\(result.output)")
    #expect(result.output.contains("oom=\(max(-997, Int(ownOOM) ?? 0))"), "\(result.output)")
    #expect(result.output.contains("mem=\(64 << 20)"), "\(result.output)")
  }
}
