import CrispOCI

/// Calls cri-frontd makes to imaged: pulls, the image list, removal, and container
/// root filesystems.

/// Registry credentials as the CRI's `AuthConfig` carries them.
public struct RegistryAuth: Codable, Sendable, Equatable {
  public var username: String
  public var password: String
  /// base64("username:password"), the Docker config.json form.
  public var auth: String
  public var serverAddress: String
  public var identityToken: String
  public var registryToken: String

  public init(
    username: String = "", password: String = "", auth: String = "", serverAddress: String = "",
    identityToken: String = "", registryToken: String = ""
  ) {
    self.username = username
    self.password = password
    self.auth = auth
    self.serverAddress = serverAddress
    self.identityToken = identityToken
    self.registryToken = registryToken
  }
}

/// One stored image as the CRI shows it.
public struct ImageInfo: Codable, Sendable, Equatable {
  /// `sha256:` digest of the image config: the image ID, and what PullImage answers.
  public var id: String
  /// Fully qualified `registry/repository:tag` names.
  public var repoTags: [String]
  /// `registry/repository@sha256:` names of the manifests it was pulled by.
  public var repoDigests: [String]
  /// Compressed size of its layers plus config, as registries and crictl report it.
  public var size: UInt64
  public var config: ImageRuntimeConfig
  /// Whether kubelet's image garbage collection must leave it alone (the pause image).
  public var pinned: Bool

  public init(
    id: String, repoTags: [String], repoDigests: [String], size: UInt64, config: ImageRuntimeConfig,
    pinned: Bool = false
  ) {
    self.id = id
    self.repoTags = repoTags
    self.repoDigests = repoDigests
    self.size = size
    self.config = config
    self.pinned = pinned
  }
}

/// Pulls an image (short names, mirrors and credentials resolved by imaged) and
/// answers once it is stored and unpacked.
public enum ImagePull: IPCMethod {
  public static let name = "image.pull"
  public struct Request: Codable, Sendable, Equatable {
    public var image: String
    public var auth: RegistryAuth?
    public init(image: String, auth: RegistryAuth? = nil) {
      self.image = image
      self.auth = auth
    }
  }
  public struct Response: Codable, Sendable, Equatable {
    public var image: ImageInfo
    public init(image: ImageInfo) { self.image = image }
  }
}

/// Every stored image, or those a reference (name, name:tag, ID or ID prefix) names.
public enum ImageList: IPCMethod {
  public static let name = "image.list"
  public struct Request: Codable, Sendable, Equatable {
    public var filter: String
    public init(filter: String = "") { self.filter = filter }
  }
  public struct Response: Codable, Sendable, Equatable {
    public var images: [ImageInfo]
    public init(images: [ImageInfo]) { self.images = images }
  }
}

/// One image by name, tag, digest, ID or unique ID prefix; nil when none matches.
public enum ImageStatus: IPCMethod {
  public static let name = "image.status"
  public struct Request: Codable, Sendable, Equatable {
    public var image: String
    /// Also answer the image's whole config JSON.
    public var verbose: Bool
    public init(image: String, verbose: Bool = false) {
      self.image = image
      self.verbose = verbose
    }
  }
  public struct Response: Codable, Sendable, Equatable {
    public var image: ImageInfo?
    public var configJSON: String?
    public init(image: ImageInfo?, configJSON: String? = nil) {
      self.image = image
      self.configJSON = configJSON
    }
  }
}

/// Removes a tag (the image stays while other tags remain), or the whole image when
/// given its ID, digest or last tag. Unknown images succeed; an image a container's
/// root filesystem uses is refused with `failedPrecondition`.
public enum ImageRemove: IPCMethod {
  public static let name = "image.remove"
  public struct Request: Codable, Sendable, Equatable {
    public var image: String
    public init(image: String) { self.image = image }
  }
  public struct Response: Codable, Sendable, Equatable {
    /// Whether the image itself (not only a tag) is gone.
    public var deleted: Bool
    public init(deleted: Bool) { self.deleted = deleted }
  }
}

/// Space used by the image store, as ImageFsInfo reports it.
public enum ImageFsUsage: IPCMethod {
  public static let name = "image.fsinfo"
  public typealias Request = Empty
  public struct Response: Codable, Sendable, Equatable {
    public var mountpoint: String
    public var usedBytes: UInt64
    public var inodesUsed: UInt64
    /// Nanoseconds since the epoch when it was measured.
    public var timestamp: Int64
    public init(mountpoint: String, usedBytes: UInt64, inodesUsed: UInt64, timestamp: Int64) {
      self.mountpoint = mountpoint
      self.usedBytes = usedBytes
      self.inodesUsed = inodesUsed
      self.timestamp = timestamp
    }
  }
}

/// An overlay mount of a container's root filesystem: read-only image layers below
/// a private writable upper directory. The mounter (shimd) passes `options` as they are.
public struct RootfsMount: Codable, Sendable, Equatable {
  public var type: String
  public var source: String
  /// Top-most layer first, as overlayfs wants `lowerdir`.
  public var lowerDirs: [String]
  public var upperDir: String
  public var workDir: String
  /// Complete mount options, `lowerdir=…,upperdir=…,workdir=…,userxattr`.
  public var options: [String]

  public init(type: String, source: String, lowerDirs: [String], upperDir: String, workDir: String, options: [String]) {
    self.type = type
    self.source = source
    self.lowerDirs = lowerDirs
    self.upperDir = upperDir
    self.workDir = workDir
    self.options = options
  }
}

/// Makes (or answers again) a container's root filesystem from an image.
public enum SnapshotPrepare: IPCMethod {
  public static let name = "image.prepareSnapshot"
  public struct Request: Codable, Sendable, Equatable {
    public var containerID: String
    public var image: String
    public init(containerID: String, image: String) {
      self.containerID = containerID
      self.image = image
    }
  }
  public struct Response: Codable, Sendable, Equatable {
    public var imageID: String
    public var mount: RootfsMount
    /// The image's /etc/passwd and /etc/group ("" when it has none): user names in
    /// the container's config resolve there.
    public var passwd: String
    public var group: String
    public init(imageID: String, mount: RootfsMount, passwd: String = "", group: String = "") {
      self.imageID = imageID
      self.mount = mount
      self.passwd = passwd
      self.group = group
    }
  }
}

/// Deletes a container's writable layer; releasing an unknown container succeeds.
public enum SnapshotRelease: IPCMethod {
  public static let name = "image.releaseSnapshot"
  public struct Request: Codable, Sendable, Equatable {
    public var containerID: String
    public init(containerID: String) { self.containerID = containerID }
  }
  public typealias Response = Empty
}

/// Releases the snapshots of containers frontd does not know: what a CreateContainer or
/// RemoveContainer left when imaged could not be reached to undo it. frontd lists its
/// containers at `listedAt` (wall clock, ns); a snapshot made after that may belong to a
/// CreateContainer under way and is kept.
public enum SnapshotReconcile: IPCMethod {
  public static let name = "image.reconcileSnapshots"
  public struct Request: Codable, Sendable, Equatable {
    public var containerIDs: [String]
    public var listedAt: Int64
    public init(containerIDs: [String], listedAt: Int64) {
      self.containerIDs = containerIDs
      self.listedAt = listedAt
    }
  }
  public struct Response: Codable, Sendable, Equatable {
    public var released: [String]
    public init(released: [String]) { self.released = released }
  }
}

/// Space taken by containers' writable layers (their overlay upper directories). imaged
/// measures them because it can read every directory a container made there; frontd,
/// holding no capability, cannot.
public enum SnapshotUsage: IPCMethod {
  public static let name = "image.snapshotUsage"
  public struct Request: Codable, Sendable, Equatable {
    public var containerIDs: [String]
    public init(containerIDs: [String]) { self.containerIDs = containerIDs }
  }
  public struct Usage: Codable, Sendable, Equatable {
    public var containerID: String
    public var bytes: UInt64
    public var inodes: UInt64
    /// Wall-clock nanoseconds of the measurement.
    public var timestamp: Int64
    public init(containerID: String, bytes: UInt64, inodes: UInt64, timestamp: Int64) {
      self.containerID = containerID
      self.bytes = bytes
      self.inodes = inodes
      self.timestamp = timestamp
    }
  }
  public struct Response: Codable, Sendable, Equatable {
    /// Containers without a writable layer here are left out.
    public var usages: [Usage]
    public init(usages: [Usage]) { self.usages = usages }
  }
}
