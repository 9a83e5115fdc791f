import Logging
import NIOCore

/// remotecommand over SPDY (kubelet's createHTTPStreamStreams): the client opens one stream per
/// `streamType` header (error, stdin, stdout, stderr, resize); once all that the request implies
/// are there, the session starts. Output goes on stdout/stderr streams; the status on the error
/// stream; stdin's FIN is the process's stdin EOF.
final class RemoteCommandSPDY: SPDYStreamDelegate, RemoteCommandTransport {
  private let version: RemoteCommandProtocol
  private let session: RemoteCommandSession
  private let logger: Logger
  private weak var connection: SPDYConnectionHandler?
  private var errorStream: UInt32?
  private var stdinStream: UInt32?
  private var stdoutStream: UInt32?
  private var stderrStream: UInt32?
  private var resizeStream: UInt32?
  private var resizeParser = ResizeParser()
  private var started = false
  private var ended = false
  private var pauses = 0
  private var creationTimer: Scheduled<Void>?

  init(version: RemoteCommandProtocol, session: RemoteCommandSession, logger: Logger) {
    self.version = version
    self.session = session
    self.logger = logger
  }

  /// Streams kubelet expects: error, plus each requested one, plus resize with a terminal (v3+).
  private var expectedStreams: Int {
    let options = session.options
    return 1 + (options.stdin ? 1 : 0) + (options.stdout ? 1 : 0) + (options.stderr ? 1 : 0)
      + (options.tty && version.supportsResize ? 1 : 0)
  }

  private var receivedStreams: Int {
    [errorStream, stdinStream, stdoutStream, stderrStream, resizeStream].compactMap { $0 }.count
  }

  /// Called when the connection is ready: the client must open its streams within `timeout`.
  func attached(to connection: SPDYConnectionHandler, creationTimeout: TimeAmount) {
    self.connection = connection
    connection.delegate = self
    creationTimer = connection.eventLoop?.assumeIsolated().scheduleTask(in: creationTimeout) { [weak self] in
      guard let self, !self.started else { return }
      self.logger.info("streaming client did not open its streams in time: closing")
      self.ended = true
      self.session.clientGone()
      connection.goAwayAndClose(grace: .milliseconds(100))
    }
  }

  // MARK: SPDYStreamDelegate

  func spdyStreamOpened(_ streamID: UInt32, headers: SPDYHeaders, connection: SPDYConnectionHandler) -> Bool {
    guard !started else { return false }
    switch headers["streamtype"] {
    case "error" where errorStream == nil: errorStream = streamID
    case "stdin" where stdinStream == nil: stdinStream = streamID
    case "stdout" where stdoutStream == nil: stdoutStream = streamID
    case "stderr" where stderrStream == nil: stderrStream = streamID
    case "resize" where resizeStream == nil && version.supportsResize: resizeStream = streamID
    default:
      logger.info("unexpected remotecommand stream type \(headers["streamtype"] ?? "(none)") refused")
      return false
    }
    if receivedStreams >= expectedStreams {
      started = true
      creationTimer?.cancel()
      // Start after the SYN_REPLY of this stream is written.
      connection.eventLoop?.assumeIsolated().execute { [session] in session.start() }
    }
    return true
  }

  func spdyStreamData(_ streamID: UInt32, data: ByteBuffer) {
    if streamID == stdinStream {
      session.clientStdin(data)
    } else if streamID == resizeStream {
      for size in resizeParser.feed(data.readableBytesView) { session.clientResize(size) }
    }
  }

  func spdyStreamRemoteFinished(_ streamID: UInt32) {
    if streamID == stdinStream { session.clientStdinEnd() }
  }

  func spdyStreamReset(_ streamID: UInt32) {
    if streamID == stdinStream {
      session.clientStdinEnd()
      stdinStream = nil
    }
    if streamID == stdoutStream { stdoutStream = nil }
    if streamID == stderrStream { stderrStream = nil }
    if streamID == errorStream { errorStream = nil }
    if streamID == resizeStream { resizeStream = nil }
  }

  func spdyWritable() {
    session.clientWritable()
  }

  func spdyConnectionClosed() {
    creationTimer?.cancel()
    ended = true
    session.clientGone()
  }

  // MARK: RemoteCommandTransport

  func send(_ output: RemoteCommandOutput, _ data: ByteBuffer) {
    guard let stream = output == .stdout ? stdoutStream : stderrStream else { return }
    connection?.send(stream, data)
  }

  var canSend: Bool {
    guard let connection else { return true }
    return [stdoutStream, stderrStream].compactMap { $0 }.allSatisfy { connection.canSend($0) }
  }

  func pauseReading() {
    pauses += 1
    connection?.pauseReading()
  }

  func resumeReading() {
    guard pauses > 0 else { return }
    pauses -= 1
    connection?.resumeReading()
  }

  func end(status: RemoteCommandStatus) {
    guard !ended, let connection else { return }
    ended = true
    if let errorStream {
      var text: String?
      if version.statusIsJSON { text = status.json } else { text = status.plainText }
      if let text {
        var buffer = ByteBuffer()
        buffer.writeString(text)
        connection.send(errorStream, buffer)
      }
      connection.finish(errorStream)
    }
    for stream in [stdoutStream, stderrStream, resizeStream, stdinStream].compactMap({ $0 }) {
      connection.finish(stream)
    }
    while pauses > 0 { resumeReading() }
    connection.goAwayAndClose()
  }
}
