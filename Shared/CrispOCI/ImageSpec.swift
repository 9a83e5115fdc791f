/// OCI image-spec (and Docker schema2) documents, as registries serve them. Only the
/// fields crisp reads are modelled; the original bytes are what is stored and hashed.

public enum MediaType {
  public static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
  public static let ociIndex = "application/vnd.oci.image.index.v1+json"
  public static let ociConfig = "application/vnd.oci.image.config.v1+json"
  public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
  public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
  public static let dockerConfig = "application/vnd.docker.container.image.v1+json"

  /// What a manifest request accepts, most specific first.
  public static let acceptedManifests = [ociIndex, dockerManifestList, ociManifest, dockerManifest]

  public static func isIndex(_ type: String) -> Bool { type == ociIndex || type == dockerManifestList }
  public static func isManifest(_ type: String) -> Bool { type == ociManifest || type == dockerManifest }

  /// Layer media types crisp unpacks: OCI tar (plain, gzip, zstd), their non-distributable
  /// forms, and Docker's gzip layers. libarchive detects the compression from the bytes.
  public static func isLayer(_ type: String) -> Bool {
    let known = [
      "application/vnd.oci.image.layer.v1.tar",
      "application/vnd.oci.image.layer.v1.tar+gzip",
      "application/vnd.oci.image.layer.v1.tar+zstd",
      "application/vnd.oci.image.layer.nondistributable.v1.tar",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
      "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
      "application/vnd.docker.image.rootfs.diff.tar.gzip",
      "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ]
    return known.contains(type)
  }
}

public struct Platform: Codable, Sendable, Equatable {
  public var architecture: String
  public var os: String
  public var variant: String?

  public init(architecture: String, os: String, variant: String? = nil) {
    self.architecture = architecture
    self.os = os
    self.variant = variant
  }
}

public struct Descriptor: Codable, Sendable, Equatable {
  public var mediaType: String
  public var digest: String
  public var size: Int64
  public var platform: Platform?
  public var urls: [String]?

  public init(mediaType: String, digest: String, size: Int64, platform: Platform? = nil) {
    self.mediaType = mediaType
    self.digest = digest
    self.size = size
    self.platform = platform
  }
}

/// An OCI image manifest or a Docker schema2 manifest (same shape).
public struct ImageManifest: Codable, Sendable, Equatable {
  public var schemaVersion: Int
  public var mediaType: String?
  public var config: Descriptor
  public var layers: [Descriptor]
}

/// An OCI image index or a Docker manifest list (same shape).
public struct ImageIndex: Codable, Sendable, Equatable {
  public var schemaVersion: Int
  public var mediaType: String?
  public var manifests: [Descriptor]

  /// The manifest for `platform`: exact variant if asked for, else the entry without a
  /// variant, else any variant (as containerd's default platform matcher does for amd64).
  public func manifest(for platform: Platform) -> Descriptor? {
    let candidates = manifests.filter {
      $0.platform?.os == platform.os && $0.platform?.architecture == platform.architecture
    }
    if let variant = platform.variant, !variant.isEmpty {
      return candidates.first { $0.platform?.variant == variant }
    }
    return candidates.first { ($0.platform?.variant ?? "").isEmpty } ?? candidates.first
  }
}

/// The image config: how to run the image and which uncompressed layers make it.
public struct ImageConfigFile: Codable, Sendable, Equatable {
  public var architecture: String?
  public var os: String?
  public var variant: String?
  public var created: String?
  public var config: ExecutionConfig?
  public var rootfs: RootFS

  public struct ExecutionConfig: Codable, Sendable, Equatable {
    public var user: String?
    public var env: [String]?
    public var entrypoint: [String]?
    public var cmd: [String]?
    public var workingDir: String?
    public var labels: [String: String]?
    public var stopSignal: String?
    public var volumes: [String: EmptyObject]?
    public var exposedPorts: [String: EmptyObject]?

    enum CodingKeys: String, CodingKey {
      case user = "User"
      case env = "Env"
      case entrypoint = "Entrypoint"
      case cmd = "Cmd"
      case workingDir = "WorkingDir"
      case labels = "Labels"
      case stopSignal = "StopSignal"
      case volumes = "Volumes"
      case exposedPorts = "ExposedPorts"
    }
  }

  public struct RootFS: Codable, Sendable, Equatable {
    public var type: String
    public var diffIDs: [String]

    enum CodingKeys: String, CodingKey {
      case type
      case diffIDs = "diff_ids"
    }
  }

  /// `{}` in `Volumes` and `ExposedPorts`.
  public struct EmptyObject: Codable, Sendable, Equatable {}
}
