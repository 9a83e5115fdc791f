// TEMPORARY: replaced by the helpers' files.
public struct UnpackStats: Sendable, Equatable { public var entries: Int; public var bytes: Int64 }
public enum UnpackError: Error, Sendable, Equatable { case archive(String) }
public struct LayerUnpacker: Sendable {
  public init(destination: String) {}
  public func unpack(fromFileDescriptor fd: Int32) throws(UnpackError) -> UnpackStats { UnpackStats(entries: 0, bytes: 0) }
}
