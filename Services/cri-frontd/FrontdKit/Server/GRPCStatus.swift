import CrispCore
import GRPCCore

extension RPCError {
  /// The gRPC status kubelet sees for a crisp error: same code, same message.
  init(_ error: CrispError) {
    let code: RPCError.Code =
      switch error.code {
      case .invalidArgument: .invalidArgument
      case .notFound: .notFound
      case .alreadyExists: .alreadyExists
      case .failedPrecondition: .failedPrecondition
      case .unavailable: .unavailable
      case .deadlineExceeded: .deadlineExceeded
      case .unimplemented: .unimplemented
      case .permissionDenied: .permissionDenied
      case .resourceExhausted: .resourceExhausted
      case .internal: .internalError
      }
    self.init(code: code, message: error.message)
  }
}
