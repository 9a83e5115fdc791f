/// Where imaged keeps everything, under `<root>/images`. Temporary files live beside
/// their final place (same filesystem), so committing is one `rename`.
public struct ImageStorePaths: Sendable, Equatable {
  public let base: String

  public init(base: String) { self.base = base }

  public var database: String { base + "/images.db" }
  public var blobsDir: String { base + "/blobs/sha256" }
  public var layersDir: String { base + "/layers" }
  public var snapshotsDir: String { base + "/snapshots" }
  /// Half-written blobs and half-unpacked layers; emptied when imaged starts.
  public var tempDir: String { base + "/tmp" }
  /// The lower directory of an image without layers (overlayfs needs one).
  public var emptyLayer: String { base + "/empty" }

  public func blob(_ hex: String) -> String { blobsDir + "/" + hex }
  public func layer(chainHex: String) -> String { layersDir + "/" + chainHex }
  public func snapshot(_ containerID: String) -> String { snapshotsDir + "/" + containerID }
}
