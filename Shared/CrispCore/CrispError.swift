/// The error every crisp layer speaks: a code that maps 1:1 to a gRPC status
/// (so frontd can hand an IPC failure to kubelet unchanged) and a message for a person.
public struct CrispError: Error, Sendable, Equatable, CustomStringConvertible {
  public enum Code: String, Sendable, Codable, CaseIterable {
    case invalidArgument
    case notFound
    case alreadyExists
    case failedPrecondition
    case unavailable
    case deadlineExceeded
    case unimplemented
    case permissionDenied
    case resourceExhausted
    case `internal`
  }

  public var code: Code
  public var message: String

  public init(_ code: Code, _ message: String) {
    self.code = code
    self.message = message
  }

  public var description: String { message }
}
