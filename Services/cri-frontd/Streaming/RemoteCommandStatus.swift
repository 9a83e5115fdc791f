import Foundation

/// The metav1.Status a remotecommand v4 error stream carries at the end of an exec or attach,
/// encoded as the API server's JSON (kubectl decodes it: Success, or Failure whose
/// NonZeroExitCode reason carries the code as an ExitCode cause).
public enum RemoteCommandStatus: Equatable, Sendable {
  case success
  case exitCode(Int32)
  case failure(message: String)

  public var json: String {
    switch self {
    case .success:
      return #"{"metadata":{},"status":"Success"}"#
    case .exitCode(let code):
      return
        #"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: exit status \#(code)","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"\#(code)"}]}}"#
    case .failure(let message):
      let escaped = Self.jsonString(message)
      return
        #"{"metadata":{},"status":"Failure","message":\#(escaped),"reason":"InternalError","details":{"causes":[{"message":\#(escaped)}]},"code":500}"#
    }
  }

  /// Before v4 the error stream carries only the message of a failure, nothing on success.
  public var plainText: String? {
    switch self {
    case .success: nil
    case .exitCode(let code): "command terminated with non-zero exit code: exit status \(code)"
    case .failure(let message): message
    }
  }

  static func jsonString(_ string: String) -> String {
    let data = try! JSONEncoder().encode(string)
    return String(decoding: data, as: UTF8.self)
  }
}
