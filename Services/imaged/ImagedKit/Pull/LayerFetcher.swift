import AsyncHTTPClient
import CCrispSys
import CrispCore
import CrispLinux
import CrispOCI
import Crypto
import Glibc
import Logging
import NIOCore

/// One layer to fetch: where from, what it must hash to, and where it goes.
struct LayerJob: Sendable {
  var source: PullSource
  var descriptor: Descriptor
  var diffID: String
  var chainID: String
  var credentials: RegistryCredentials?
  var limits: UnpackLimits = UnpackLimits()
  /// What the pull this layer belongs to may still unpack.
  var budget: ImageByteBudget
}

/// Downloads one layer and unpacks it while it downloads: the HTTP body is hashed and
/// written into a pipe; a decompressor thread turns it into the uncompressed tar
/// (hashing that too, for the diff ID) and writes it into a second pipe; an unpacker
/// thread writes the tree into a private temporary directory. Only when the blob's
/// digest and size and the diff ID all match is the directory renamed into the layer
/// store and recorded; on any failure it is deleted.
struct LayerFetcher: Sendable {
  let client: RegistryClient
  let layers: LayerStore
  let logger: Logger

  func fetch(_ job: LayerJob, progress: LayerProgress) async throws(CrispError) -> LayerRecord {
    let digest = job.descriptor.digest
    let temp = layers.paths.tempDir + "/layer-" + String(job.chainID.dropFirst(7).prefix(16)) + "-" + randomSuffix()
    try Files.makeDirectory(temp, mode: 0o755)
    var committed = false
    defer { if !committed { DirectoryTree.remove(temp) } }

    let compressed = try Pipe()
    let uncompressed = try Pipe()
    let decompressing = Task {
      await BlockingWork.run { () -> Swift.Result<LayerDecompressor.Result, CrispError> in
        defer {
          uncompressed.closeWrite()
          compressed.closeRead()
        }
        do throws(CrispError) {
          return .success(
            try LayerDecompressor.run(
              input: compressed.readEnd, output: uncompressed.writeEnd, mediaType: job.descriptor.mediaType,
              limits: job.limits, budget: job.budget, storePath: layers.paths.tempDir))
        } catch { return .failure(error) }
      }
    }
    let unpacking = Task {
      await BlockingWork.run { () -> Swift.Result<UnpackStats, UnpackError> in
        defer { uncompressed.closeRead() }
        do throws(UnpackError) {
          let stats = try LayerUnpacker(destination: temp, limits: job.limits, plainTar: true).unpack(
            fromFileDescriptor: uncompressed.readEnd)
          // Bytes after the end-of-archive marker (tar padding) still belong to the
          // diff ID: read them so that the decompressor can finish.
          Self.drain(uncompressed.readEnd)
          return .success(stats)
        } catch { return .failure(error) }
      }
    }

    let download = await download(job, into: compressed, progress: progress)
    compressed.closeWrite()
    let decompressed = await decompressing.value
    let unpacked = await unpacking.value

    // The root cause first: a limit (which stops the other stages midway), a broken
    // download, then a blob that is not what its descriptor says (its garbage also
    // upsets the later stages), then a refused entry.
    if case .failure(let error) = decompressed, error.code == .resourceExhausted {
      throw CrispError(.resourceExhausted, "layer \(digest) of \(job.source.reference) is refused: \(error.message)")
    }
    if case .failure(.limitExceeded(let what)) = unpacked {
      throw CrispError(.resourceExhausted, "layer \(digest) of \(job.source.reference) is refused: \(what)")
    }
    if case .failure(let error) = download, error.code != .invalidArgument { throw error }
    // A download cut short because the later stages stopped reading: their error is the
    // cause, not the size of what was read before.
    if case .success(let (blobDigest, blobSize, complete)) = download, complete,
      blobSize != job.descriptor.size || blobDigest != digest
    {
      throw CrispError(
        .invalidArgument,
        "layer \(digest) of \(job.source.reference) from \(job.source.reference.registry) does not match its "
          + "descriptor: got \(blobDigest), \(blobSize) bytes (expected \(job.descriptor.size))")
    }
    // A blob that is what it says but decompresses to something refused (compressed twice,
    // not what its media type says): the unpacker only saw the stream stop.
    if case .failure(let error) = decompressed, error.code == .invalidArgument {
      throw CrispError(.invalidArgument, "layer \(digest) of \(job.source.reference) is refused: \(error.message)")
    }
    let stats: UnpackStats
    switch unpacked {
    case .failure(let error):
      throw CrispError(.invalidArgument, "layer \(digest) of \(job.source.reference) is refused: \(error)")
    case .success(let value):
      stats = value
    }
    let (_, blobSize, complete) = try download.get()
    guard complete else {
      throw CrispError(
        .invalidArgument,
        "layer \(digest) of \(job.source.reference) has bytes after the end of its compressed stream")
    }
    let diff = try decompressed.get()
    guard diff.diffID == job.diffID else {
      throw CrispError(
        .invalidArgument,
        "layer \(digest) of \(job.source.reference) uncompresses to \(diff.diffID), but the image config says \(job.diffID)"
      )
    }

    let usage = DiskUsage.measure(temp)
    try Self.flush(temp)
    let record = try layers.commit(
      temp: temp,
      record: LayerRecord(
        chainID: job.chainID, diffID: job.diffID, digest: digest, size: UInt64(job.descriptor.size),
        usedBytes: usage.bytes, usedInodes: usage.inodes))
    committed = true
    logger.info(
      "layer stored",
      metadata: [
        "layer": "\(digest)", "chain_id": "\(job.chainID)", "bytes": "\(blobSize)", "entries": "\(stats.entries)",
      ])
    return record
  }

  /// Streams the blob into the pipe, hashing it; answers its digest and size, and whether
  /// it was read to its end (false when the decompressor stopped reading first).
  private func download(
    _ job: LayerJob, into pipe: Pipe, progress: LayerProgress
  ) async -> Swift.Result<(String, Int64, Bool), CrispError> {
    let digest = job.descriptor.digest
    let expected = job.descriptor.size
    do throws(CrispError) {
      let response = try await client.openBlob(job.source, digest: digest, credentials: job.credentials)
      let writer = PipeWriter(fd: pipe.writeEnd, label: "crisp.layer." + digest)
      var hasher = SHA256()
      var received: Int64 = 0
      var complete = true
      var lastLog = MonotonicClock.milliseconds()
      do {
        for try await buffer in response.body {
          let bytes = Array(buffer.readableBytesView)
          received += Int64(bytes.count)
          guard received <= expected else {
            throw CrispError(
              .invalidArgument,
              "layer \(digest) from \(job.source.reference.registry) is larger than its \(expected) bytes")
          }
          hasher.update(data: bytes)
          progress.advance(bytes: bytes.count)
          guard await writer.write(bytes) else {  // the later stages stopped: their error tells why
            complete = false
            break
          }
          let now = MonotonicClock.milliseconds()
          if now - lastLog >= 5_000 {
            lastLog = now
            logger.info(
              "pulling layer", metadata: ["layer": "\(digest)", "bytes": "\(received)", "total": "\(expected)"])
          }
        }
      } catch let error as CrispError {
        throw error
      } catch is CancellationError {
        throw CrispError(.deadlineExceeded, "download of layer \(digest) was cancelled")
      } catch {
        throw CrispError(
          .unavailable, "download of layer \(digest) from \(job.source.reference.registry) failed: \(error)")
      }
      return .success(("sha256:" + Digest.hexString(hasher.finalize()), received, complete))
    } catch {
      return .failure(error)
    }
  }

  /// Writes the unpacked files to disk before the database records the layer: after a
  /// power loss a recorded layer is whole (one syncfs per layer; the files were written
  /// through the page cache).
  private static func flush(_ directory: String) throws(CrispError) {
    let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard fd >= 0 else { throw CrispError(.internal, "cannot open \(directory): \(Files.errnoText())") }
    defer { close(fd) }
    guard crisp_syncfs(fd) == 0 else {
      throw CrispError(.internal, "syncfs of the image store failed: \(Files.errnoText())")
    }
  }

  private static func drain(_ fd: Int32) {
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
      let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
      if n > 0 { continue }
      if n < 0 && errno == EINTR { continue }
      return
    }
  }
}

func randomSuffix() -> String {
  var generator = SystemRandomNumberGenerator()
  return String(generator.next() as UInt64, radix: 36)
}

/// Chain IDs of a layer stack (image-spec): the first is its diff ID, each next one
/// `sha256(parent + " " + diffID)`. Equal chain IDs mean equal layer stacks.
func chainIDs(diffIDs: [String]) -> [String] {
  var out = [String]()
  for diffID in diffIDs {
    if let parent = out.last {
      out.append("sha256:" + Digest.hexString(SHA256.hash(data: Array((parent + " " + diffID).utf8))))
    } else {
      out.append(diffID)
    }
  }
  return out
}
