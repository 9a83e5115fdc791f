import AsyncHTTPClient
import CrispCore
import CrispOCI
import Crypto
import FoundationEssentials
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL

/// An OCI distribution-spec (v2) client for pulls: manifests and blobs by digest,
/// anonymous, basic and bearer-token auth, HTTPS (plain HTTP only for endpoints
/// marked insecure), per-registry CAs from a certs.d directory. Everything a
/// registry sends is size-limited and digest-checked by the callers or here.
///
/// Redirects are followed here, not by AsyncHTTPClient, so that each hop gets its own
/// TLS configuration and credentials stay with the host they were issued for (see
/// `RedirectScope`).
public final class RegistryClient: Sendable {
  /// Manifests and indexes larger than this are refused (real ones are a few KB).
  static let manifestLimit = 4 << 20
  /// Image configs larger than this are refused.
  static let configLimit = 8 << 20
  static let tokenLimit = 1 << 20
  /// A registry needs one (to its blob store); a longer chain is a loop or an attack.
  static let maxRedirects = 5

  private let http: HTTPClient
  private let certsDir: String
  private let tokens = TokenCache()
  private let logger: Logger

  public init(certsDir: String, logger: Logger) {
    var configuration = HTTPClient.Configuration()
    configuration.redirectConfiguration = .disallow
    configuration.decompression = .disabled
    configuration.timeout = .init(connect: .seconds(30), read: nil)
    http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    self.certsDir = certsDir
    self.logger = logger
  }

  public func shutdown() async {
    try? await http.shutdown()
  }

  /// A manifest or index as served: its bytes, media type and digest (verified when
  /// the reference names one).
  public struct FetchedManifest: Sendable {
    public var bytes: [UInt8]
    public var mediaType: String
    public var digest: String
  }

  public func manifest(
    _ source: PullSource, reference: String, credentials: RegistryCredentials?
  ) async throws(CrispError) -> FetchedManifest {
    let ref = source.reference
    if reference.contains(":") && Digest(reference) == nil {
      throw CrispError(.invalidArgument, "manifest digest \(reference) of \(ref): crisp verifies sha256 digests only")
    }
    let path = "/v2/\(ref.repository)/manifests/\(reference)"
    var headers = HTTPHeaders()
    headers.add(name: "Accept", value: MediaType.acceptedManifests.joined(separator: ", "))
    let response = try await send(source, path: path, headers: headers, credentials: credentials, what: "manifest")
    let bytes = try await collect(response, limit: Self.manifestLimit, what: "manifest of \(ref)")
    let digest = "sha256:" + Digest.hexString(SHA256.hash(data: bytes))
    if Digest(reference) != nil, reference != digest {
      throw CrispError(
        .internal, "manifest of \(ref) from \(ref.registry) has digest \(digest), not the \(reference) asked for")
    }
    var mediaType = response.headers.first(name: "Content-Type") ?? ""
    if let semicolon = mediaType.firstIndex(of: ";") { mediaType = String(mediaType[..<semicolon]) }
    // Some registries answer a generic type; the document's own mediaType decides then.
    if !MediaType.isIndex(mediaType) && !MediaType.isManifest(mediaType) {
      struct Probe: Decodable {
        var mediaType: String?
        var manifests: [Descriptor]?
      }
      let probe = try? JSONDecoder().decode(Probe.self, from: Data(bytes))
      mediaType = probe?.mediaType ?? (probe?.manifests != nil ? MediaType.ociIndex : MediaType.ociManifest)
    }
    return FetchedManifest(bytes: bytes, mediaType: mediaType, digest: digest)
  }

  /// A small blob (an image config) read whole and checked against its descriptor.
  public func smallBlob(
    _ source: PullSource, descriptor: Descriptor, credentials: RegistryCredentials?
  ) async throws(CrispError) -> [UInt8] {
    guard descriptor.size >= 0, descriptor.size <= Self.configLimit else {
      throw CrispError(.invalidArgument, "config blob \(descriptor.digest) is \(descriptor.size) bytes, over the limit")
    }
    let response = try await send(
      source, path: "/v2/\(source.reference.repository)/blobs/\(descriptor.digest)", headers: [:],
      credentials: credentials, what: "blob \(descriptor.digest)")
    let bytes = try await collect(response, limit: Int(descriptor.size), what: "blob \(descriptor.digest)")
    let digest = "sha256:" + Digest.hexString(SHA256.hash(data: bytes))
    guard digest == descriptor.digest, bytes.count == descriptor.size else {
      throw CrispError(
        .internal,
        "blob \(descriptor.digest) from \(source.reference.registry) does not match its digest (got \(digest))")
    }
    return bytes
  }

  /// Opens a blob for streaming; the caller reads `body` and verifies the digest.
  public func openBlob(
    _ source: PullSource, digest: String, credentials: RegistryCredentials?
  ) async throws(CrispError) -> HTTPClientResponse {
    try await send(
      source, path: "/v2/\(source.reference.repository)/blobs/\(digest)", headers: [:], credentials: credentials,
      what: "blob \(digest)")
  }

  // MARK: Requests and auth

  private func send(
    _ source: PullSource, path: String, headers: HTTPHeaders, credentials: RegistryCredentials?, what: String
  ) async throws(CrispError) -> HTTPClientResponse {
    let host = Self.apiHost(source.reference.registry)
    let scheme = source.insecure ? "http" : "https"
    let scope = "repository:\(source.reference.repository):pull"
    // Tokens are cached per credentials too: an anonymous caller never gets a token
    // that someone else's credentials earned.
    let tokenKey = scope + " " + (credentials.map { ImagePuller.fingerprint($0) } ?? "anonymous")
    let url = "\(scheme)://\(host)\(path)"
    guard let registryURL = URL(string: url) else {
      throw CrispError(.invalidArgument, "\(what) of \(source.reference): \(url) is not a valid URL")
    }
    var authorization = await tokens.authorization(host: host, scope: tokenKey)
    if authorization == nil, case .basic(let user, let password)? = credentials,
      await tokens.prefersBasic(host: host)
    {
      authorization = Self.basicHeader(user, password)
    }
    for attempt in 0..<2 {
      var request = HTTPClientRequest(url: url)
      request.headers = headers
      if let authorization { request.headers.replaceOrAdd(name: "Authorization", value: authorization) }
      let (response, answeredBy) = try await executeFollowingRedirects(
        request, tlsHost: source.reference.registry, redirects: .anyHost, deadline: .now() + .hours(24),
        what: "\(what) from registry \(host)")
      switch response.status.code {
      case 200..<300:
        return response
      case 401 where !Self.sameOrigin(answeredBy, registryURL):
        // Answering its challenge would hand this registry's credentials (or a token
        // fetched with them) to another host.
        _ = try? await collect(response, limit: 65536, what: what)
        throw CrispError(
          .permissionDenied,
          "registry \(host) redirected \(what) to \(answeredBy.absoluteString), which asks for credentials: "
            + "crisp sends the credentials for \(host) to \(host) only")
      case 401 where attempt == 0:
        let challenge = response.headers.first(name: "WWW-Authenticate") ?? ""
        _ = try? await collect(response, limit: 65536, what: what)
        authorization = try await answer(
          challenge: challenge, host: host, scope: scope, tokenKey: tokenKey, credentials: credentials,
          insecure: source.insecure)
      default:
        let body = (try? await collect(response, limit: 4096, what: what)).map { String(decoding: $0, as: UTF8.self) }
        throw Self.statusError(response.status, host: host, what: what, body: body ?? "")
      }
    }
    throw CrispError(.permissionDenied, "registry \(host) refused the credentials for \(what)")
  }

  private func answer(
    challenge: String, host: String, scope: String, tokenKey: String, credentials: RegistryCredentials?,
    insecure: Bool
  ) async throws(CrispError) -> String {
    let parsed = AuthChallenge(header: challenge)
    switch parsed.scheme {
    case "basic":
      guard case .basic(let user, let password)? = credentials else {
        throw CrispError(.permissionDenied, "registry \(host) wants credentials (basic auth) and none were given")
      }
      await tokens.setPrefersBasic(host: host)
      return Self.basicHeader(user, password)
    case "bearer":
      if case .registryToken(let token)? = credentials { return "Bearer " + token }
      // Credentials travel to the realm: over TLS, unless the registry itself is
      // plain HTTP by configuration.
      guard let realm = parsed.parameters["realm"],
        realm.hasPrefix("https://") || (insecure && realm.hasPrefix("http://"))
      else {
        throw CrispError(
          .permissionDenied, "registry \(host) sent a bearer challenge without a usable (https) token realm")
      }
      let tokenScope = parsed.parameters["scope"] ?? scope
      let token = try await fetchToken(
        realm: realm, service: parsed.parameters["service"], scope: tokenScope, credentials: credentials, host: host)
      await tokens.store(host: host, scope: tokenKey, token: token.value, expiresIn: token.expiresIn)
      return "Bearer " + token.value
    default:
      throw CrispError(.permissionDenied, "registry \(host) answered 401 with an unsupported challenge '\(challenge)'")
    }
  }

  private func fetchToken(
    realm: String, service: String?, scope: String, credentials: RegistryCredentials?, host: String
  ) async throws(CrispError) -> (value: String, expiresIn: Int) {
    var query = [("scope", scope)]
    if let service { query.insert(("service", service), at: 0) }
    var request: HTTPClientRequest
    if case .identityToken(let refresh)? = credentials {
      // OAuth2 refresh-token grant, as docker login's identity tokens require.
      request = HTTPClientRequest(url: realm)
      request.method = .POST
      request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
      let form = (query + [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", "crisp")])
        .map { "\($0.0)=\(Self.formEncode($0.1))" }.joined(separator: "&")
      request.body = .bytes(ByteBuffer(string: form))
    } else {
      let separator = realm.contains("?") ? "&" : "?"
      request = HTTPClientRequest(
        url: realm + separator + query.map { "\($0.0)=\(Self.formEncode($0.1))" }.joined(separator: "&"))
      if case .basic(let user, let password)? = credentials {
        request.headers.add(name: "Authorization", value: Self.basicHeader(user, password))
      }
    }
    // The credentials (a header or the form) go to the realm the registry named, nowhere else.
    let (response, _) = try await executeFollowingRedirects(
      request, tlsHost: nil, redirects: .sameOrigin, deadline: .now() + .seconds(60),
      what: "the token request of \(host) to its token service \(realm)")
    guard response.status.code == 200 else {
      try? await drain(response)
      throw CrispError(
        .permissionDenied,
        "token service \(realm) of \(host) refused a token for \(scope): HTTP \(response.status.code)")
    }
    let bytes = try await collect(response, limit: Self.tokenLimit, what: "token from \(realm)")
    struct TokenResponse: Decodable {
      var token: String?
      var access_token: String?
      var expires_in: Int?
    }
    guard let decoded = try? JSONDecoder().decode(TokenResponse.self, from: Data(bytes)),
      let value = decoded.token ?? decoded.access_token, !value.isEmpty
    else {
      throw CrispError(.permissionDenied, "token service \(realm) of \(host) answered no token")
    }
    return (value, min(max(decoded.expires_in ?? 60, 0), 86_400))
  }

  /// Where a request may be redirected.
  enum RedirectScope {
    /// Registry API calls: to any host (blobs live on CDNs and object stores), the
    /// Authorization header dropped on the way to another origin.
    case anyHost
    /// Token requests, whose credentials are in the header or the form: only within the
    /// realm's origin.
    case sameOrigin
  }

  /// Sends `request` and follows its redirects (at most `maxRedirects`, no cycles, never
  /// from HTTPS to HTTP). Each hop gets the TLS configuration of its own host: the first
  /// hop that of `tlsHost` (the host its URL names when nil). Answers the final response
  /// and the URL that gave it.
  private func executeFollowingRedirects(
    _ first: HTTPClientRequest, tlsHost: String?, redirects: RedirectScope, deadline: NIODeadline, what: String
  ) async throws(CrispError) -> (response: HTTPClientResponse, url: URL) {
    guard let start = URL(string: first.url) else {
      throw CrispError(.invalidArgument, "\(what): \(first.url) is not a valid URL")
    }
    var request = first
    var url = start
    var visited: Set<String> = [start.absoluteString]
    while true {
      request.tlsConfiguration = tlsConfiguration(
        host: Self.sameOrigin(url, start) ? tlsHost ?? Self.authority(start) : Self.authority(url))
      let response: HTTPClientResponse
      do {
        response = try await http.execute(request, deadline: deadline, logger: nil)
      } catch {
        throw CrispError(.unavailable, "cannot reach \(Self.authority(url)) for \(what): \(error)")
      }
      guard [301, 302, 303, 307, 308].contains(response.status.code),
        let location = response.headers.first(name: "Location")
      else { return (response, url) }
      _ = try? await collect(response, limit: 65536, what: what)
      guard visited.count <= Self.maxRedirects else {
        throw CrispError(
          .unavailable, "\(what): more than \(Self.maxRedirects) redirects, the last from \(url.absoluteString)")
      }
      let target = try Self.redirectTarget(location, from: url, start: start, scope: redirects, what: what)
      guard visited.insert(target.absoluteString).inserted else {
        throw CrispError(
          .unavailable, "\(what): redirect cycle, \(url.absoluteString) leads back to \(target.absoluteString)")
      }
      request = Self.redirected(request, status: response.status.code, to: target, start: start)
      url = target
    }
  }

  /// The URL a `Location` header leads to, if crisp may follow it.
  static func redirectTarget(
    _ location: String, from url: URL, start: URL, scope: RedirectScope, what: String
  ) throws(CrispError) -> URL {
    guard let target = URL(string: location, relativeTo: url)?.absoluteURL,
      let scheme = target.scheme?.lowercased(), scheme == "https" || scheme == "http", target.host != nil
    else {
      throw CrispError(.unavailable, "\(what): \(url.absoluteString) redirected to an unusable location '\(location)'")
    }
    if url.scheme?.lowercased() == "https" && scheme == "http" {
      throw CrispError(
        .permissionDenied,
        "\(what): \(url.absoluteString) redirected to \(target.absoluteString), a downgrade from HTTPS to plain HTTP; "
          + "crisp does not follow it")
    }
    if scope == .sameOrigin && !sameOrigin(target, start) {
      throw CrispError(
        .permissionDenied,
        "\(what): \(url.absoluteString) redirected to \(target.absoluteString), another host; "
          + "crisp sends the credentials only to the token realm the registry named")
    }
    return target
  }

  /// The request for the next hop, as RFC 9110 15.4 says: 303 (and 301/302 after a POST)
  /// turn into a bodiless GET, 307 and 308 repeat the request. Credentials are only for
  /// the origin of the first hop.
  static func redirected(_ request: HTTPClientRequest, status: UInt, to target: URL, start: URL) -> HTTPClientRequest {
    var next = request
    next.url = target.absoluteString
    if (status == 303 && request.method != .HEAD) || ((status == 301 || status == 302) && request.method == .POST) {
      next.method = .GET
      next.body = nil
      next.headers.remove(name: "Content-Type")
      next.headers.remove(name: "Content-Length")
    }
    if !sameOrigin(target, start) { next.headers.remove(name: "Authorization") }
    return next
  }

  private func collect(_ response: HTTPClientResponse, limit: Int, what: String) async throws(CrispError) -> [UInt8] {
    do {
      var buffer = try await response.body.collect(upTo: limit)
      return buffer.readBytes(length: buffer.readableBytes) ?? []
    } catch let error as NIOTooManyBytesError {
      _ = error
      throw CrispError(.invalidArgument, "\(what) is larger than \(limit) bytes")
    } catch {
      throw CrispError(.unavailable, "reading \(what) failed: \(error)")
    }
  }

  private func drain(_ response: HTTPClientResponse) async throws {
    for try await _ in response.body {}
  }

  /// TLS for a registry: system roots plus `<certs_dir>/<host[:port]>/*.crt`, and a
  /// client certificate from `*.cert` + `*.key` (containers-certs.d(5)).
  private func tlsConfiguration(host: String) -> TLSConfiguration? {
    let dir = certsDir + "/" + host
    let names = Files.list(dir).sorted()
    guard !names.isEmpty else { return nil }
    var tls = TLSConfiguration.makeClientConfiguration()
    let cas = names.filter { $0.hasSuffix(".crt") }
    if !cas.isEmpty {
      tls.additionalTrustRoots = [
        .certificates(cas.flatMap { (try? NIOSSLCertificate.fromPEMFile(dir + "/" + $0)) ?? [] })
      ]
    }
    if let cert = names.first(where: { $0.hasSuffix(".cert") }) {
      let key = String(cert.dropLast(5)) + ".key"
      if let chain = try? NIOSSLCertificate.fromPEMFile(dir + "/" + cert),
        let privateKey = try? NIOSSLPrivateKey(file: dir + "/" + key, format: .pem)
      {
        tls.certificateChain = chain.map { .certificate($0) }
        tls.privateKey = .privateKey(privateKey)
      }
    }
    return tls
  }

  // MARK: Helpers

  /// Docker Hub's API lives on registry-1.docker.io.
  static func apiHost(_ registry: String) -> String {
    registry == "docker.io" ? "registry-1.docker.io" : registry
  }

  static func basicHeader(_ user: String, _ password: String) -> String {
    "Basic " + Data((user + ":" + password).utf8).base64EncodedString()
  }

  static func formEncode(_ text: String) -> String {
    var out = ""
    for byte in text.utf8 {
      switch byte {
      case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
        UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
        UInt8(ascii: "~"):
        out.unicodeScalars.append(Unicode.Scalar(byte))
      default:
        out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
      }
    }
    return out
  }

  /// `host[:port]` as certs.d names its directories.
  static func authority(_ url: URL) -> String {
    let host = url.host ?? ""
    let bracketed = host.contains(":") ? "[\(host)]" : host
    return url.port.map { "\(bracketed):\($0)" } ?? bracketed
  }

  /// Scheme, host and port alike (RFC 6454): what credentials are issued for.
  static func sameOrigin(_ a: URL, _ b: URL) -> Bool {
    func origin(_ url: URL) -> String {
      let scheme = url.scheme?.lowercased() ?? ""
      return "\(scheme)://\((url.host ?? "").lowercased()):\(url.port ?? (scheme == "https" ? 443 : 80))"
    }
    return origin(a) == origin(b)
  }

  static func statusError(_ status: HTTPResponseStatus, host: String, what: String, body: String) -> CrispError {
    let detail = body.isEmpty ? "" : ": " + String(body.prefix(300))
    switch status.code {
    case 404:
      return CrispError(.notFound, "\(what) not found on registry \(host) (HTTP 404)\(detail)")
    case 401, 403:
      return CrispError(.permissionDenied, "registry \(host) denied access to \(what) (HTTP \(status.code))\(detail)")
    case 429:
      return CrispError(.resourceExhausted, "registry \(host) rate-limited the request for \(what) (HTTP 429)")
    default:
      return CrispError(.unavailable, "registry \(host) answered HTTP \(status.code) for \(what)\(detail)")
    }
  }
}

extension Substring {
  fileprivate func trimmedSpaces() -> String {
    String(drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
  }
}

extension String {
  fileprivate func leftPadded(to width: Int) -> String {
    count >= width ? self : String(repeating: "0", count: width - count) + self
  }
}

/// A parsed `WWW-Authenticate` header: `Bearer realm="…",service="…",scope="…"`.
struct AuthChallenge: Equatable {
  var scheme: String
  var parameters: [String: String]

  init(header: String) {
    let trimmed = header.drop { $0 == " " }
    let schemeEnd = trimmed.firstIndex(of: " ") ?? trimmed.endIndex
    scheme = trimmed[..<schemeEnd].lowercased()
    parameters = [:]
    var rest = Substring(trimmed[schemeEnd...])
    while true {
      rest = rest.drop { $0 == " " || $0 == "," }
      guard let equals = rest.firstIndex(of: "=") else { break }
      let key = rest[..<equals].trimmedSpaces().lowercased()
      rest = rest[rest.index(after: equals)...]
      var value = ""
      if rest.first == "\"" {
        rest = rest.dropFirst()
        var escaped = false
        while let c = rest.first {
          rest = rest.dropFirst()
          if escaped {
            value.append(c)
            escaped = false
          } else if c == "\\" {
            escaped = true
          } else if c == "\"" {
            break
          } else {
            value.append(c)
          }
        }
      } else {
        let end = rest.firstIndex(of: ",") ?? rest.endIndex
        value = rest[..<end].trimmedSpaces()
        rest = rest[end...]
      }
      parameters[key] = value
    }
  }
}

/// Bearer tokens per registry and scope, until shortly before they expire; and which
/// registries asked for basic auth (sent up front after the first challenge).
actor TokenCache {
  /// Expiry in monotonic milliseconds.
  private var tokens: [String: (value: String, expires: Int64)] = [:]
  private var basicHosts = Set<String>()

  func authorization(host: String, scope: String) -> String? {
    guard let entry = tokens[host + " " + scope], entry.expires > MonotonicClock.milliseconds() else { return nil }
    return "Bearer " + entry.value
  }

  func store(host: String, scope: String, token: String, expiresIn: Int) {
    let lifetime = Int64(max(min(expiresIn, 86_400) - 10, 5)) * 1000
    tokens[host + " " + scope] = (token, MonotonicClock.milliseconds() + lifetime)
  }

  func prefersBasic(host: String) -> Bool { basicHosts.contains(host) }
  func setPrefersBasic(host: String) { basicHosts.insert(host) }
}
