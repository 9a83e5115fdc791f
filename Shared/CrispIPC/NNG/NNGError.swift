import CNNG

/// A failed NNG call: which call, and NNG's own words for the error number.
public struct NNGError: Error, Sendable, Equatable, CustomStringConvertible {
  public let code: Int32
  public let operation: String

  public init(_ code: Int32, _ operation: String) {
    self.code = code
    self.operation = operation
  }

  public var isTimeout: Bool { code == Int32(NNG_ETIMEDOUT.rawValue) }
  public var isClosed: Bool { code == Int32(NNG_ECLOSED.rawValue) }
  public var isCanceled: Bool { code == Int32(NNG_ECANCELED.rawValue) }
  public var isAddressInUse: Bool { code == Int32(NNG_EADDRINUSE.rawValue) }

  public var description: String {
    "\(operation): \(String(cString: nng_strerror(code)))"
  }
}

/// Turns an NNG return code into a thrown `NNGError`; no NNG result goes unchecked.
@inline(__always)
func nngCheck(_ result: Int32, _ operation: @autoclosure () -> String) throws(NNGError) {
  if result != 0 { throw NNGError(result, operation()) }
}
