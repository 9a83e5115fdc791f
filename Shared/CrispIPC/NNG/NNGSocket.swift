import CNNG

/// One NNG socket. `nng_socket` is a plain integer handle, so this is a value type;
/// `close()` is the single owner's job.
public struct NNGSocket: Sendable {
  public enum Kind: Sendable {
    case req, rep, push, pull
  }

  public let raw: nng_socket
  public let kind: Kind

  public init(_ kind: Kind) throws(NNGError) {
    var socket = nng_socket()
    let rv: Int32
    switch kind {
    case .req: rv = nng_req0_open(&socket)
    case .rep: rv = nng_rep0_open(&socket)
    case .push: rv = nng_push0_open(&socket)
    case .pull: rv = nng_pull0_open(&socket)
    }
    try nngCheck(rv, "open \(kind) socket")
    // NNG reads a message of any size into memory before crisp sees it: the transport
    // drops (and disconnects) a peer sending more than crisp would accept anyway.
    let header = 1024
    let limit = kind == .req ? IPCProtocol.maxReplyBytes : IPCProtocol.maxMessageBytes
    let set = nng_socket_set_size(socket, NNG_OPT_RECVMAXSZ, limit + header)
    guard set == 0 else {
      _ = nng_close(socket)
      throw NNGError(set, "set the receive limit of a \(kind) socket")
    }
    self.raw = socket
    self.kind = kind
  }

  /// The largest message this socket accepts from a peer (NNG_OPT_RECVMAXSZ).
  public var receiveLimit: Int {
    var size = 0
    _ = nng_socket_get_size(raw, NNG_OPT_RECVMAXSZ, &size)
    return size
  }

  /// Listens on an `ipc://` address whose socket file gets `mode` (0600: only root
  /// may talk to a crisp daemon). NNG removes a stale socket file that nobody serves.
  public func listen(_ address: String, mode: Int32 = 0o600) throws(NNGError) {
    var listener = nng_listener()
    try nngCheck(nng_listener_create(&listener, raw, address), "listen on \(address)")
    if address.hasPrefix("ipc://") {
      do {
        try nngCheck(nng_listener_set_int(listener, NNG_OPT_IPC_PERMISSIONS, mode), "set mode of \(address)")
      } catch {
        _ = nng_listener_close(listener)
        throw error
      }
    }
    do {
      try nngCheck(nng_listener_start(listener, 0), "listen on \(address)")
    } catch {
      _ = nng_listener_close(listener)
      throw error
    }
  }

  /// Dials in the background: the peer may come up later, and NNG reconnects after
  /// the peer restarts, so a daemon restart never needs a new socket here.
  public func dial(_ address: String) throws(NNGError) {
    try nngCheck(nng_dial(raw, address, nil, Int32(NNG_FLAG_NONBLOCK)), "dial \(address)")
  }

  public func setDuration(_ option: String, milliseconds: Int32) throws(NNGError) {
    try nngCheck(nng_socket_set_ms(raw, option, milliseconds), "set \(option)")
  }

  /// Closing aborts every pending operation on the socket with NNG_ECLOSED.
  public func close() {
    _ = nng_close(raw)
  }
}

/// A context gives one REQ/REP exchange its own state, so many run at once on one socket.
struct NNGContext: Sendable {
  let raw: nng_ctx

  init(_ socket: NNGSocket) throws(NNGError) {
    var ctx = nng_ctx()
    try nngCheck(nng_ctx_open(&ctx, socket.raw), "open context")
    raw = ctx
  }

  func close() {
    _ = nng_ctx_close(raw)
  }
}

/// Owned NNG message bytes handed between Swift and NNG.
enum NNGMessage {
  static func make(_ bytes: [UInt8]) throws(NNGError) -> OpaquePointer {
    var msg: OpaquePointer?
    try nngCheck(nng_msg_alloc(&msg, 0), "allocate message")
    guard let msg else { throw NNGError(Int32(NNG_ENOMEM.rawValue), "allocate message") }
    let rv = bytes.withUnsafeBytes { nng_msg_append(msg, $0.baseAddress, $0.count) }
    if rv != 0 {
      nng_msg_free(msg)
      throw NNGError(rv, "fill message")
    }
    return msg
  }

  /// Copies the body out and frees the message.
  static func take(_ msg: OpaquePointer) -> [UInt8] {
    defer { nng_msg_free(msg) }
    let count = nng_msg_len(msg)
    guard count > 0, let body = nng_msg_body(msg) else { return [] }
    return Array(UnsafeRawBufferPointer(start: body, count: count))
  }
}
