#!/usr/bin/env python3
"""crisp's image fixture tool: a real local registry (Debian's docker-registry, i.e.
distribution 2.8) and the test images, built from local files and pushed with the OCI
distribution API.

Subcommands:
  registry-config  writes DIR/config.yml (plus TLS material, htpasswd, token signing key)
  token-server     serves a Docker token endpoint for a registry configured with --token
  redirector       a logging front of a registry: proxies, redirects, serves blobs or challenges
  wait             polls GET /v2/ until the registry answers 200 or 401
  push-standard    builds and pushes the standard test image set; prints a JSON object
  push-bench       builds (cached) and pushes a big multi-layer image; prints a JSON object

Python 3 stdlib only; the zstd, openssl, htpasswd, tar and pigz/gzip programs do the rest.
Every layer of the standard set is reproducible: the same input gives the same digest.
"""

import argparse
import base64
import gzip
import hashlib
import http.client
import http.server
import io
import json
import os
import re
import secrets
import shutil
import ssl
import stat
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse

CREATED = "2024-01-01T00:00:00Z"
EPOCH = 1704067200  # CREATED as a Unix time: the mtime of every entry we write

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = OCI_LAYER_TAR + "+gzip"
OCI_LAYER_ZSTD = OCI_LAYER_TAR + "+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

TOKEN_SERVICE = "crisp-registry"
TOKEN_ISSUER = "crisp-token-issuer"
MARKER_HEADER = "X-Crisp-Registry"

DEFAULT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CRISP_FIXTURE=1"]
BUSYBOX = "/bin/busybox"
APPLETS = [
    "cat", "echo", "sleep", "true", "false", "id", "env", "ps", "top", "kill", "wc", "head", "tail",
    "mkdir", "touch", "dd", "grep", "stat", "printf", "hostname", "nslookup", "wget", "nc", "mount",
    "umount", "cp", "mv", "rm", "ln", "chmod", "chown", "readlink", "sed", "awk", "cut", "pwd",
    "uname", "whoami", "nproc", "test", "tee", "sort", "uniq", "xargs", "find", "mknod", "mkfifo",
    "du", "df", "date", "seq", "timeout", "ip", "ping", "cmp", "sha256sum", "ash",
]


def log(*parts):
    print("imagefixture:", *parts, file=sys.stderr, flush=True)


def die(message):
    log(message)
    sys.exit(1)


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def canonical_json(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def run(argv, **kwargs):
    return subprocess.run(argv, check=True, **kwargs)


# ---------------------------------------------------------------------------------------
# Registry configuration, TLS material, token signing material


def ensure_tls(d):
    """A CA (d/ca.crt, what clients trust) and a server cert for 127.0.0.1 and localhost."""
    ca_key, ca_crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
    key, crt = os.path.join(d, "server.key"), os.path.join(d, "server.crt")
    if all(os.path.exists(p) for p in (ca_key, ca_crt, key, crt)):
        return ca_crt, crt, key
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    run(["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_crt, "-days", "3650",
         "-subj", "/CN=crisp test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"], **quiet)
    csr = os.path.join(d, "server.csr")
    run(["openssl", "req", "-new", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"], **quiet)
    ext = os.path.join(d, "server.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n")
    run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
         "-set_serial", "0x" + secrets.token_hex(8), "-days", "825", "-out", crt, "-extfile", ext], **quiet)
    os.unlink(csr)
    os.unlink(ext)
    return ca_crt, crt, key


def ensure_token_material(d):
    """The RSA key that signs tokens and its self-signed cert (the registry's rootcertbundle)."""
    key, crt = os.path.join(d, "token.key"), os.path.join(d, "token.crt")
    if not (os.path.exists(key) and os.path.exists(crt)):
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
             "-days", "3650", "-subj", "/CN=crisp token signer"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return key, crt


def cmd_registry_config(args):
    d = os.path.abspath(args.dir)
    os.makedirs(os.path.join(d, "storage"), exist_ok=True)
    summary = {"config": os.path.join(d, "config.yml"), "address": f"127.0.0.1:{args.port}",
               "storage": os.path.join(d, "storage")}
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {d}/storage",
        "  delete:",
        "    enabled: true",
        "  maintenance:",
        "    uploadpurging:",
        "      enabled: false",
        "http:",
        f"  addr: 127.0.0.1:{args.port}",
        "  secret: crisp-test-registry",
        "  headers:",
        "    X-Content-Type-Options: [nosniff]",
    ]
    if args.marker:
        lines.append(f"    {MARKER_HEADER}: [{json.dumps(args.marker)}]")
    scheme = "http"
    if args.tls:
        ca, crt, key = ensure_tls(d)
        lines += ["  tls:", f"    certificate: {crt}", f"    key: {key}"]
        # containers-certs.d(5) layout: <dir>/<host:port>/ca.crt
        certs = os.path.join(d, "certs.d", f"127.0.0.1:{args.port}")
        os.makedirs(certs, exist_ok=True)
        shutil.copyfile(ca, os.path.join(certs, "ca.crt"))
        summary["caFile"] = ca
        summary["certsDir"] = os.path.join(d, "certs.d")
        scheme = "https"
    if args.htpasswd and args.token:
        die("--htpasswd and --token are exclusive: docker-registry has one auth method")
    if args.htpasswd:
        user, _, password = args.htpasswd.partition(":")
        out = run(["htpasswd", "-Bbn", user, password], stdout=subprocess.PIPE).stdout
        path = os.path.join(d, "htpasswd")
        with open(path, "wb") as f:
            f.write(out.strip() + b"\n")
        lines += ["auth:", "  htpasswd:", "    realm: crisp-registry", f"    path: {path}"]
        summary["htpasswd"] = path
    if args.token:
        if not args.token_port:
            die("--token needs --token-port (where token-server listens)")
        _, crt = ensure_token_material(d)
        realm = f"{scheme}://127.0.0.1:{args.token_port}/token"
        lines += ["auth:", "  token:", f"    realm: {realm}", f"    service: {TOKEN_SERVICE}",
                  f"    issuer: {TOKEN_ISSUER}", f"    rootcertbundle: {crt}"]
        summary["realm"] = realm
    lines += ["health:", "  storagedriver:", "    enabled: false", ""]
    with open(summary["config"], "w") as f:
        f.write("\n".join(lines))
    print(json.dumps(summary))


# ---------------------------------------------------------------------------------------
# Token server


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parse_scopes(values):
    access = []
    for value in values:
        for scope in value.split():
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind and name:
                access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
    return access


def cmd_token_server(args):
    d = os.path.abspath(args.dir)
    os.makedirs(d, exist_ok=True)
    key, crt = ensure_token_material(d)
    with open(crt) as f:
        pem = f.read()
    der_b64 = "".join(pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END CERTIFICATE-----")[0].split())
    user, _, password = args.user.partition(":")
    lock = threading.Lock()

    def sign(claims):
        # The registry finds the key through x5c: the chain must verify against its
        # rootcertbundle, which here is this very (self-signed) certificate.
        header = {"typ": "JWT", "alg": "RS256", "x5c": [der_b64]}
        signing_input = b64url(canonical_json(header)) + "." + b64url(canonical_json(claims))
        sig = run(["openssl", "dgst", "-sha256", "-sign", key], input=signing_input.encode(),
                  stdout=subprocess.PIPE).stdout
        return signing_input + "." + b64url(sig)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            if args.verbose:
                log("token-server:", fmt % a)

        def reply(self, status, body, extra=None):
            data = canonical_json(body)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def issue(self, who, service, scopes):
            access = parse_scopes(scopes)
            if who is None:
                if not args.anonymous_pull:
                    return self.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "credentials required"}]},
                                      {"WWW-Authenticate": 'Basic realm="crisp-token-server"'})
                for entry in access:
                    entry["actions"] = [a for a in entry["actions"] if a == "pull"]
            now = int(time.time())
            claims = {"iss": TOKEN_ISSUER, "sub": who or "", "aud": service or TOKEN_SERVICE,
                      "exp": now + 300, "nbf": now - 10, "iat": now, "jti": secrets.token_hex(16),
                      "access": access}
            with lock:
                token = sign(claims)
            issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
            self.reply(200, {"token": token, "access_token": token, "expires_in": 300, "issued_at": issued})

        def basic_user(self):
            """The user name for valid Basic credentials, None for none; False for wrong ones."""
            header = self.headers.get("Authorization", "")
            if not header.lower().startswith("basic "):
                return None
            try:
                u, _, p = base64.b64decode(header[6:].strip()).decode().partition(":")
            except Exception:
                return False
            return u if (u, p) == (user, password) else False

        def denied(self):
            self.reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]},
                       {"WWW-Authenticate": 'Basic realm="crisp-token-server"'})

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path != "/token":
                return self.reply(404, {"errors": [{"code": "NOT_FOUND"}]})
            q = urllib.parse.parse_qs(url.query)
            who = self.basic_user()
            if who is False:
                return self.denied()
            self.issue(who, q.get("service", [None])[0], q.get("scope", []))

        def do_POST(self):
            # OAuth2 form (grant_type=password), as containerd tries first.
            url = urllib.parse.urlsplit(self.path)
            length = int(self.headers.get("Content-Length", "0"))
            form = urllib.parse.parse_qs(self.rfile.read(length).decode())
            if url.path != "/token":
                return self.reply(404, {"errors": [{"code": "NOT_FOUND"}]})
            who = self.basic_user()
            if who is False:
                return self.denied()
            if who is None and form.get("grant_type", [""])[0] == "password":
                u, p = form.get("username", [""])[0], form.get("password", [""])[0]
                if (u, p) != (user, password):
                    return self.denied()
                who = u
            self.issue(who, form.get("service", [None])[0], form.get("scope", []))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    scheme = "http"
    if args.tls:
        _, crt_tls, key_tls = ensure_tls(d)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt_tls, key_tls)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{port}\n")
        os.rename(tmp, args.port_file)
    log(f"token server at {scheme}://127.0.0.1:{port}/token")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


# ---------------------------------------------------------------------------------------
# Redirector: a logging front for the registry security tests


BLOB_PATH = re.compile(r"^/v2/.+/blobs/sha256:([0-9a-f]{64})$")


def cmd_redirector(args):
    """Records every request (method, Host, path, Authorization, a POST's body) to --log as
    a JSON line, then answers it with the first of these that applies: a redirect
    (--redirect-to, for blobs or for every path), a Bearer challenge naming itself
    (--challenge), a blob from a registry's storage (--storage, no auth, as a CDN), or the
    answer of --upstream (with --realm replacing the realm of its Bearer challenges)."""
    lock = threading.Lock()
    upstream = urllib.parse.urlsplit(args.upstream) if args.upstream else None
    upstream_ctx = ssl.create_default_context(cafile=args.upstream_cafile) if args.upstream_cafile else None
    scheme = "https" if args.tls else "http"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def record(self, body):
            entry = {"method": self.command, "host": self.headers.get("Host"), "path": self.path,
                     "authorization": self.headers.get("Authorization"),
                     "body": body.decode(errors="replace") if body else None}
            with lock, open(args.log, "a") as f:
                f.write(json.dumps(entry) + "\n")

        def reply(self, status, body=b"", headers=None):
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def handle_any(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length) if length else b""
            self.record(body)
            path = urllib.parse.urlsplit(self.path).path
            blob = BLOB_PATH.match(path)
            if args.redirect_to and (blob or args.redirect_all):
                return self.reply(args.redirect_status, headers={"Location": args.redirect_to + self.path})
            if args.challenge:
                if path == "/token":
                    return self.reply(200, canonical_json({"token": "from-the-wrong-host"}),
                                      {"Content-Type": "application/json"})
                realm = f"{scheme}://{self.headers.get('Host')}/token"
                return self.reply(401, headers={
                    "WWW-Authenticate": f'Bearer realm="{realm}",service="elsewhere",scope="repository:x:pull"'})
            if args.storage:
                if not blob:
                    return self.reply(404)
                hexdigest = blob.group(1)
                data_path = os.path.join(args.storage, "docker/registry/v2/blobs/sha256", hexdigest[:2], hexdigest,
                                         "data")
                if not os.path.exists(data_path):
                    return self.reply(404)
                with open(data_path, "rb") as f:
                    return self.reply(200, f.read(), {"Content-Type": "application/octet-stream"})
            if upstream:
                return self.forward(body)
            self.reply(404)

        def forward(self, body):
            if upstream.scheme == "https":
                conn = http.client.HTTPSConnection(upstream.hostname, upstream.port, timeout=60, context=upstream_ctx)
            else:
                conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() in ("accept", "authorization", "content-type")}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            conn.close()
            out = {}
            for k, v in response.getheaders():
                if k.lower() in ("connection", "transfer-encoding", "content-length", "keep-alive"):
                    continue
                if k.lower() == "www-authenticate" and args.realm:
                    v = re.sub(r'realm="[^"]*"', f'realm="{args.realm}"', v)
                out[k] = v
            self.reply(response.status, data, out)

        do_GET = do_HEAD = do_POST = handle_any

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    if args.tls:
        _, crt, key = ensure_tls(os.path.abspath(args.dir))
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(crt, key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    open(args.log, "a").close()
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write(f"{server.server_address[1]}\n")
        os.rename(args.port_file + ".tmp", args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


# ---------------------------------------------------------------------------------------
# Registry client (OCI distribution API)


class HTTPFailure(Exception):
    pass


class RegistryClient:
    def __init__(self, hostport, cafile=None, user=None):
        self.hostport = hostport
        self.tls = bool(cafile)
        self.ctx = ssl.create_default_context(cafile=cafile) if cafile else None
        self.user = None
        if user:
            u, _, p = user.partition(":")
            self.user = (u, p)
        self.basic = False  # the registry asked for Basic: send it from now on
        self.tokens = {}  # repository -> bearer token
        self.connections = {}  # (scheme, host:port) -> an idle kept-alive connection

    def _connection(self, scheme, netloc):
        host, _, port = netloc.rpartition(":")
        if not host:
            host, port = netloc, ("443" if scheme == "https" else "80")
        if scheme == "https":
            ctx = self.ctx or ssl.create_default_context()
            return http.client.HTTPSConnection(host, int(port), context=ctx, timeout=300, blocksize=1 << 20)
        return http.client.HTTPConnection(host, int(port), timeout=300, blocksize=1 << 20)

    def _basic_header(self):
        u, p = self.user
        return "Basic " + base64.b64encode(f"{u}:{p}".encode()).decode()

    def raw(self, method, url, body=None, headers=None):
        """One HTTP exchange, on a kept-alive connection to that host when there is one."""
        parts = urllib.parse.urlsplit(url)
        key = (parts.scheme, parts.netloc)
        path = parts.path + ("?" + parts.query if parts.query else "")
        for attempt in (0, 1):
            conn = self.connections.pop(key, None)
            reused = conn is not None
            if conn is None:
                conn = self._connection(*key)
            try:
                if hasattr(body, "seek"):
                    body.seek(0)
                conn.request(method, path, body=body, headers=headers or {})
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, ConnectionError, http.client.CannotSendRequest):
                conn.close()
                if reused and attempt == 0:
                    continue  # the server closed an idle connection: once more on a new one
                raise
            if resp.will_close:
                conn.close()
            else:
                self.connections[key] = conn
            return resp.status, resp.headers, data

    def request(self, method, path, repo=None, body=None, headers=None):
        """One API call; `path` is a /v2/ path or an absolute URL (upload locations).
        `body` is bytes, or a file path streamed with its length. Retries once after a
        401, with Basic or a bearer token as the challenge asks."""
        if path.startswith("/"):
            path = f"{'https' if self.tls else 'http'}://{self.hostport}{path}"
        for attempt in (0, 1):
            h = dict(headers or {})
            if repo is not None and repo in self.tokens:
                h["Authorization"] = "Bearer " + self.tokens[repo]
            elif self.basic and self.user:
                h["Authorization"] = self._basic_header()
            stream = None
            b = body
            if isinstance(body, str):
                stream = open(body, "rb")
                h["Content-Length"] = str(os.fstat(stream.fileno()).st_size)
                b = stream
            elif body is not None:
                h["Content-Length"] = str(len(body))
            try:
                status, rh, data = self.raw(method, path, b, h)
            finally:
                if stream:
                    stream.close()
            if status == 401 and attempt == 0:
                self._answer_challenge(rh.get("WWW-Authenticate", ""), repo)
                continue
            return status, rh, data
        return status, rh, data

    def _answer_challenge(self, challenge, repo):
        scheme, _, params = challenge.partition(" ")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        if scheme.lower() == "basic":
            if not self.user:
                raise HTTPFailure("the registry wants Basic credentials: pass --user")
            self.basic = True
        elif scheme.lower() == "bearer":
            scopes = []
            if repo is not None:
                scopes.append(f"repository:{repo}:pull,push")
            if fields.get("scope") and fields["scope"] not in scopes:
                scopes.append(fields["scope"])
            query = [("service", fields.get("service", ""))] + [("scope", s) for s in scopes]
            url = fields["realm"] + ("&" if "?" in fields["realm"] else "?") + urllib.parse.urlencode(query)
            h = {"Authorization": self._basic_header()} if self.user else {}
            status, _, data = self.raw("GET", url, headers=h)
            if status != 200:
                raise HTTPFailure(f"token endpoint {fields['realm']} answered {status}: {data[:200]!r}")
            answer = json.loads(data)
            self.tokens[repo] = answer.get("token") or answer["access_token"]
        else:
            raise HTTPFailure(f"unsupported challenge {challenge!r}")

    def blob_exists(self, repo, digest):
        status, _, _ = self.request("HEAD", f"/v2/{repo}/blobs/{digest}", repo)
        return status == 200

    def push_blob(self, repo, blob):
        if self.blob_exists(repo, blob.digest):
            return
        status, h, data = self.request("POST", f"/v2/{repo}/blobs/uploads/", repo, body=b"")
        if status != 202:
            raise HTTPFailure(f"POST upload {repo}: {status} {data[:300]!r}")
        location = h["Location"]
        if location.startswith("/"):
            location = f"{'https' if self.tls else 'http'}://{self.hostport}{location}"
        sep = "&" if "?" in location else "?"
        url = location + sep + "digest=" + urllib.parse.quote(blob.digest)
        body = blob.path if blob.path else blob.data
        status, _, data = self.request("PUT", url, repo, body=body,
                                       headers={"Content-Type": "application/octet-stream"})
        if status != 201:
            raise HTTPFailure(f"PUT blob {repo} {blob.digest}: {status} {data[:300]!r}")

    def push_manifest(self, repo, reference, body, media_type):
        status, h, data = self.request("PUT", f"/v2/{repo}/manifests/{reference}", repo, body=body,
                                       headers={"Content-Type": media_type})
        if status != 201:
            raise HTTPFailure(f"PUT manifest {repo}:{reference}: {status} {data[:500]!r}")
        served = h.get("Docker-Content-Digest")
        if served and served != sha256_digest(body):
            raise HTTPFailure(f"registry computed {served} for {repo}:{reference}, we {sha256_digest(body)}")

    def get_blob(self, repo, digest):
        status, _, data = self.request("GET", f"/v2/{repo}/blobs/{digest}", repo)
        if status != 200:
            raise HTTPFailure(f"GET blob {repo} {digest}: {status}")
        return data


def cmd_wait(args):
    scheme = "https" if args.cafile else "http"
    ctx = ssl.create_default_context(cafile=args.cafile) if args.cafile else None
    host, _, port = args.registry.rpartition(":")
    want = None
    if args.expect_header:
        name, _, value = args.expect_header.partition("=")
        want = (name, value)
    deadline = time.monotonic() + args.timeout
    last = "no answer"
    while True:
        try:
            if ctx:
                conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=2)
            else:
                conn = http.client.HTTPConnection(host, int(port), timeout=2)
            try:
                conn.request("GET", "/v2/")
                resp = conn.getresponse()
                resp.read()
                if resp.status in (200, 401):
                    if want is None or resp.getheader(want[0]) == want[1]:
                        return 0
                    last = f"{want[0]} is {resp.getheader(want[0])!r}, not {want[1]!r}: another registry"
                else:
                    last = f"status {resp.status}"
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            last = str(e)
        if time.monotonic() >= deadline:
            log(f"{scheme}://{args.registry}/v2/ not ready after {args.timeout}s: {last}")
            return 1
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------
# Layers, configs, manifests


class Blob:
    def __init__(self, media_type, data=None, path=None, digest=None, size=None):
        self.media_type = media_type
        self.data = data
        self.path = path
        self.digest = digest or sha256_digest(data)
        self.size = size if size is not None else len(data)

    def descriptor(self, **extra):
        d = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        d.update(extra)
        return d


class Layer(Blob):
    def __init__(self, media_type, diff_id, **kw):
        super().__init__(media_type, **kw)
        self.diff_id = diff_id


class TarBuilder:
    """A reproducible tar: fixed mtime, uid/gid as given, no user/group names; entries in
    the order added (sorted() them where the order does not matter)."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)

    def _info(self, name, kind, mode, uid, gid):
        info = tarfile.TarInfo(name)
        info.type = kind
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.uname = info.gname = ""
        info.mtime = EPOCH
        return info

    def dir(self, name, mode=0o755, uid=0, gid=0):
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode, uid, gid))

    def file(self, name, data, mode=0o644, uid=0, gid=0, xattrs=None):
        if isinstance(data, str):
            data = data.encode()
        info = self._info(name, tarfile.REGTYPE, mode, uid, gid)
        info.size = len(data)
        if xattrs:
            info.pax_headers = {"SCHILY.xattr." + k: v for k, v in xattrs.items()}
        self.tar.addfile(info, io.BytesIO(data))

    def symlink(self, name, target):
        info = self._info(name, tarfile.SYMTYPE, 0o777, 0, 0)
        info.linkname = target
        self.tar.addfile(info)

    def hardlink(self, name, target):
        info = self._info(name, tarfile.LNKTYPE, 0o644, 0, 0)
        info.linkname = target
        self.tar.addfile(info)

    def chardev(self, name, major, minor, mode=0o666):
        info = self._info(name, tarfile.CHRTYPE, mode, 0, 0)
        info.devmajor, info.devminor = major, minor
        self.tar.addfile(info)

    def bytes(self):
        self.tar.close()
        return self.buf.getvalue()


def make_layer(tar_bytes, compression="gzip", docker=False, gzip_level=6):
    diff_id = sha256_digest(tar_bytes)
    if compression == "gzip":
        data = gzip.compress(tar_bytes, compresslevel=gzip_level, mtime=0)
        media = DOCKER_LAYER_GZIP if docker else OCI_LAYER_GZIP
    elif compression == "zstd":
        data = run(["zstd", "-q", "-c", "-3"], input=tar_bytes, stdout=subprocess.PIPE).stdout
        media = OCI_LAYER_ZSTD
    elif compression == "none":
        data = tar_bytes
        media = OCI_LAYER_TAR
    else:
        raise ValueError(compression)
    return Layer(media, diff_id, data=data)


class Image:
    """A config plus a manifest (OCI or Docker schema2) for one platform."""

    def __init__(self, layers, config=None, arch="amd64", variant=None, docker=False, comment="crisp fixture"):
        self.layers = layers
        self.arch, self.variant, self.docker = arch, variant, docker
        cfg = {
            "created": CREATED,
            "architecture": arch,
            "os": "linux",
        }
        if variant:
            cfg["variant"] = variant
        cfg["config"] = config if config is not None else {}
        cfg["rootfs"] = {"type": "layers", "diff_ids": [l.diff_id for l in layers]}
        history = [{"created": CREATED, "created_by": f"imagefixture: {comment}, layer {i + 1}"}
                   for i in range(len(layers))]
        cmd = cfg["config"].get("Cmd")
        history.append({"created": CREATED, "created_by": f"imagefixture: CMD {json.dumps(cmd)}",
                        "empty_layer": True})
        cfg["history"] = history
        self.config = Blob(DOCKER_CONFIG if docker else OCI_CONFIG, data=canonical_json(cfg))
        self.media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
        manifest = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": self.config.descriptor(),
            "layers": [l.descriptor() for l in layers],
        }
        self.manifest = canonical_json(manifest)
        self.digest = sha256_digest(self.manifest)

    def platform(self):
        p = {"architecture": self.arch, "os": "linux"}
        if self.variant:
            p["variant"] = self.variant
        return p

    def blobs(self):
        return [*self.layers, self.config]

    def describe(self):
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.manifest),
            "configDigest": self.config.digest,
            "platform": self.platform(),
            "layers": [l.digest for l in self.layers],
            "layerMediaTypes": [l.media_type for l in self.layers],
            "layerSizes": [l.size for l in self.layers],
            "diffIDs": [l.diff_id for l in self.layers],
        }


class Index:
    def __init__(self, images, docker=False):
        self.images = images
        self.media_type = DOCKER_LIST if docker else OCI_INDEX
        body = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "manifests": [{"mediaType": i.media_type, "digest": i.digest, "size": len(i.manifest),
                           "platform": i.platform()} for i in images],
        }
        self.manifest = canonical_json(body)
        self.digest = sha256_digest(self.manifest)

    def describe(self):
        children = [i.describe() for i in self.images]
        # What an amd64 node resolves the index to: the amd64 entry without a variant.
        amd64 = next((c for c in children if c["platform"] == {"architecture": "amd64", "os": "linux"}), None)
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.manifest),
            "configDigest": amd64["configDigest"] if amd64 else None,
            "platform": None,
            "layers": amd64["layers"] if amd64 else [],
            "layerMediaTypes": amd64["layerMediaTypes"] if amd64 else [],
            "layerSizes": amd64["layerSizes"] if amd64 else [],
            "diffIDs": amd64["diffIDs"] if amd64 else [],
            "manifests": children,
        }


def push_image(client, repo, reference, image):
    for blob in image.blobs():
        client.push_blob(repo, blob)
    client.push_manifest(repo, reference, image.manifest, image.media_type)


def push_index(client, repo, tag, index):
    for image in index.images:
        push_image(client, repo, image.digest, image)
    client.push_manifest(repo, tag, index.manifest, index.media_type)


def image_config(cmd=("sh",), user="", workdir="/", label="busybox", entrypoint=None, env=None):
    return {
        "User": user,
        "Env": list(env or DEFAULT_ENV),
        "Entrypoint": entrypoint,
        "Cmd": list(cmd) if cmd is not None else None,
        "WorkingDir": workdir,
        "Labels": {"org.crisp.fixture": label},
        "StopSignal": "SIGTERM",
    }


# ---------------------------------------------------------------------------------------
# The standard image set


PASSWD = """root:x:0:0:root:/root:/bin/sh
crispuser:x:1234:1234:crisp test user:/home/crispuser:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """root:x:0:
crispuser:x:1234:
crispextra:x:4321:crispuser
nogroup:x:65534:
"""


def busybox_tar():
    if not os.path.exists(BUSYBOX):
        die(f"{BUSYBOX} is missing: apt-get install busybox-static")
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()
    t = TarBuilder()
    t.dir("bin")
    t.file("bin/busybox", busybox, mode=0o755)
    links = {"sh": "/bin/busybox"}
    links.update({a: "busybox" for a in ["ls", *APPLETS]})
    for name in sorted(links):
        t.symlink("bin/" + name, links[name])
    t.dir("dev")
    t.dir("etc")
    t.file("etc/group", GROUP)
    t.file("etc/passwd", PASSWD)
    t.dir("home")
    t.dir("home/crispuser", uid=1234, gid=1234)
    t.dir("proc", mode=0o555)
    t.dir("root", mode=0o700)
    t.dir("sys", mode=0o555)
    t.dir("tmp", mode=0o1777)
    t.dir("usr")
    t.dir("usr/bin")
    t.dir("var")
    return t.bytes()


def single_file_tar(path, content):
    t = TarBuilder()
    t.file(path, content)
    return t.bytes()


def layers_image():
    t = TarBuilder()
    t.dir("data")
    t.file("data/gone", "gone\n")
    t.file("data/keep", "keep\n")
    t.chardev("dev-null-ish", 1, 3)
    t.dir("hard")
    t.file("hard/a", "hello")
    # Hard links stay within one layer, as every image builder writes them: a layer
    # is a diff, and its tar carries the link's target itself.
    t.hardlink("hard/b", "hard/a")
    t.dir("opaque")
    t.file("opaque/old", "old\n")
    t.file("owned", "owned\n", mode=0o640, uid=1000, gid=2000)
    t.file("suid", "#!/bin/sh\n", mode=0o4755)
    t.file("xattr", "xattr\n", xattrs={"user.crisp": "yes"})
    l1 = make_layer(t.bytes())
    t = TarBuilder()
    t.dir("data")
    t.file("data/.wh.gone", "")
    t.dir("opaque")
    t.file("opaque/.wh..wh..opq", "")
    t.file("opaque/new", "new\n")
    l2 = make_layer(t.bytes())
    l3 = make_layer(single_file_tar("layer3", "layer3\n"), compression="none")
    return Image([l1, l2, l3], image_config(cmd=None, label="layers"), comment="unpack semantics")


def evil_image(name, build):
    t = TarBuilder()
    t.file("ok", "ok\n")
    build(t)
    layer = make_layer(t.bytes())
    return Image([layer], image_config(cmd=["/ok"], label="evil-" + name), comment="evil " + name)


def storage_blob_path(storage, digest):
    hexd = digest.split(":", 1)[1]
    return os.path.join(storage, "docker", "registry", "v2", "blobs", "sha256", hexd[:2], hexd, "data")


def build_standard():
    """(name, image-or-index, extra fields) for every image of the standard set."""
    bb_tar = busybox_tar()
    bb_gzip = make_layer(bb_tar)
    bb_zstd = make_layer(bb_tar, compression="zstd")
    bb_docker = Layer(DOCKER_LAYER_GZIP, bb_gzip.diff_id, data=bb_gzip.data)
    cfg = image_config()
    busybox = Image([bb_gzip], cfg, comment="busybox")
    zstd = Image([bb_zstd], cfg, comment="busybox")
    user = Image([bb_gzip], image_config(user="crispuser", workdir="/home/crispuser"), comment="busybox")
    docker = Image([bb_docker], cfg, docker=True, comment="busybox")

    def arch_image(arch, variant, docker_format):
        text = arch + (f"/{variant}" if variant else "") + "\n"
        layer = make_layer(single_file_tar("arch", text), docker=docker_format)
        return Image([layer], image_config(cmd=["cat", "/arch"], label="multi"), arch=arch, variant=variant,
                     docker=docker_format, comment="arch " + text.strip())

    # amd64 is deliberately not the first entry: a client must pick, not take the first.
    multi = Index([arch_image("arm64", None, False), busybox, arch_image("arm", "v7", False)])
    dockerlist = Index([arch_image("arm64", None, True), docker, arch_image("arm", "v7", True)], docker=True)
    variants = Index([arch_image("arm", "v6", False), arch_image("arm", "v7", False)])

    evil = {
        "traversal": (lambda t: t.file("../../../../tmp/crisp-evil-traversal", "evil\n"),
                      "/tmp/crisp-evil-traversal"),
        "symlink": (lambda t: (t.symlink("escape", "/tmp"), t.file("escape/crisp-evil-symlink", "evil\n")),
                    "/tmp/crisp-evil-symlink"),
        "relsymlink": (lambda t: (t.symlink("escape", "../../../../../../tmp"),
                                  t.file("escape/crisp-evil-relsymlink", "evil\n")),
                       "/tmp/crisp-evil-relsymlink"),
        "hardlink": (lambda t: t.hardlink("passwd", "../../../../etc/passwd"), "/etc/passwd"),
    }

    # Stored gzip level 0: the tampered bytes below compress to exactly the same length.
    bad_layer = make_layer(single_file_tar("bad", "crisp bad-digest fixture: original\n"), gzip_level=0)
    tampered = make_layer(single_file_tar("bad", "crisp bad-digest fixture: TAMPERED\n"), gzip_level=0)
    assert bad_layer.size == tampered.size and bad_layer.digest != tampered.digest
    bad = Image([bad_layer], image_config(cmd=["cat", "/bad"], label="bad-digest"), comment="bad digest")

    ok = {"expectFailure": False, "failure": None, "escapePath": None}
    out = [
        ("crisp/busybox:latest", busybox, ok),
        ("crisp/busybox:zstd", zstd, ok),
        ("crisp/busybox:user", user, ok),
        ("crisp/docker:latest", docker, ok),
        ("crisp/multi:latest", multi, ok),
        ("crisp/multi:dockerlist", dockerlist, ok),
        ("crisp/multi:variants", variants,
         {"expectFailure": True, "failure": "no linux/amd64 manifest in the index", "escapePath": None}),
        ("crisp/layers:latest", layers_image(), ok),
    ]
    for name, (build, escape) in evil.items():
        out.append((f"crisp/evil:{name}", evil_image(name, build),
                    {"expectFailure": True, "escapePath": escape,
                     "failure": f"layer entry escapes the rootfs (must not touch {escape})"}))
    # Links a hostile image uses to make the runtime touch the host: /etc (the runtime
    # reads the image's /etc/passwd for a user name) and a directory under the host's /tmp
    # (working directories and mount targets below it).
    for tag, name, target in [("etc", "etc", "/etc"), ("work", "work", "/tmp/crisp-hostile-work")]:
        hostile = TarBuilder()
        hostile.symlink(name, target)
        out.append((f"crisp/hostile:{tag}",
                    Image([bb_gzip, make_layer(hostile.bytes())], cfg, comment="hostile " + tag), ok))
    # Limits (imaged.max_*): 8 MiB of zeros (a few KB of gzip); the same gzipped twice (a
    # decompression bomb's trick, its diff ID what one level gives); a tree 600 deep.
    zeros = TarBuilder()
    zeros.file("zeros", bytes(8 << 20))
    zeros_tar = zeros.bytes()
    out.append(("crisp/limits:zeros", Image([make_layer(zeros_tar)], cfg, comment="8 MiB of zeros"), ok))
    once = gzip.compress(zeros_tar, mtime=0)
    twice = Layer(OCI_LAYER_GZIP, sha256_digest(once), data=gzip.compress(once, mtime=0))
    out.append(("crisp/limits:gzip-twice", Image([twice], cfg, comment="gzip of gzip"), ok))
    # A media type that says less than the bytes hold: gzip under "tar", gzip under zstd.
    hidden = Layer(OCI_LAYER_TAR, sha256_digest(once), data=once)
    out.append(("crisp/limits:tar-holding-gzip", Image([hidden], cfg, comment="gzip as tar"), ok))
    zstd_gzip = run(["zstd", "-q", "-c", "-3"], input=once, stdout=subprocess.PIPE).stdout
    nested = Layer(OCI_LAYER_ZSTD, sha256_digest(once), data=zstd_gzip)
    out.append(("crisp/limits:zstd-over-gzip", Image([nested], cfg, comment="zstd of gzip"), ok))
    # Two layers of 3 MiB each: each under a per-layer limit of 4 MiB, 6 MiB together.
    halves = []
    for name in ("first", "second"):
        half = TarBuilder()
        half.file(name, bytes(3 << 20))
        halves.append(make_layer(half.bytes()))
    out.append(("crisp/limits:two-layers", Image(halves, cfg, comment="two 3 MiB layers"), ok))
    deep = TarBuilder()
    for depth in range(1, 601):
        deep.dir("/".join(["d"] * depth))
    deep.file("/".join(["d"] * 600) + "/bottom", "bottom\n")
    out.append(("crisp/limits:deep", Image([make_layer(deep.bytes())], cfg, comment="600 deep"), ok))
    out.append(("crisp/bad:digest", bad,
                {"expectFailure": True, "failure": "layer blob does not match its digest", "escapePath": None,
                 "_tamper": (bad_layer, tampered)}))
    out.append(("library/busybox:latest", busybox, ok))
    out.append(("pause:3.10", busybox, ok))
    return out


def split_name(name):
    repo, _, tag = name.rpartition(":")
    return repo, tag


def describe(name, thing, extra):
    repo, tag = split_name(name)
    d = {"repository": repo, "tag": tag}
    d.update(thing.describe())
    d.setdefault("manifests", [])
    d.update({k: v for k, v in extra.items() if not k.startswith("_")})
    return d


def cmd_push_standard(args):
    started = time.monotonic()
    client = RegistryClient(args.registry, args.cafile, args.user)
    images = build_standard()
    built = time.monotonic()
    result = {}
    for name, thing, extra in images:
        repo, tag = split_name(name)
        if "_tamper" in extra and not args.storage:
            log(f"skipping {name}: it needs --storage (the registry's storage directory)")
            continue
        if isinstance(thing, Index):
            push_index(client, repo, tag, thing)
        else:
            push_image(client, repo, tag, thing)
        if "_tamper" in extra:
            original, tampered = extra["_tamper"]
            path = storage_blob_path(args.storage, original.digest)
            if not os.path.exists(path):
                die(f"{path} is missing: is {args.storage} the storage of {args.registry}?")
            with open(path, "r+b") as f:
                f.write(tampered.data)
            served = client.get_blob(repo, original.digest)
            if len(served) != original.size or sha256_digest(served) == original.digest:
                die(f"{name}: the registry does not serve the tampered blob")
        result[name] = describe(name, thing, extra)
    log(f"pushed {len(result)} images to {args.registry}: built in {built - started:.2f}s, "
        f"pushed in {time.monotonic() - built:.2f}s")
    emit(result, args.output)


def emit(result, output):
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    if output:
        tmp = output + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, output)
    sys.stdout.write(text)
    sys.stdout.flush()


# ---------------------------------------------------------------------------------------
# The benchmark image: real files of this machine, many small ones, in N gzip layers


BENCH_ROOTS = [
    ("/opt/swift/usr/lib", 3),
    ("/usr/lib", 3),
    ("/usr/share/locale", 1.5),
    ("/usr/share/doc", 1),
    ("/usr/share/zoneinfo", 0.3),
]
BENCH_VERSION = 2
BENCH_MAX_FILE = 4 << 20  # many small files, not a few huge libraries


def walk_files(root):
    """(path relative to /, size, mtime_ns) of regular files and symlinks under root, sorted."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        # Symlinked directories show up in dirnames; walk does not follow them, tar stores the link.
        names = sorted(filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))])
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in names:
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                if st.st_size > BENCH_MAX_FILE or not os.access(path, os.R_OK):
                    continue
                yield (path[1:], st.st_size, st.st_mtime_ns)
            elif stat.S_ISLNK(st.st_mode):
                yield (path[1:], 0, st.st_mtime_ns)


def bench_stream():
    """Files from every root, interleaved so that each root's share of bytes follows its weight."""
    sources = []
    for root, weight in BENCH_ROOTS:
        if os.path.isdir(root):
            sources.append([walk_files(root), weight, 0])
    while sources:
        source = min(sources, key=lambda s: s[2] / s[1])
        entry = next(source[0], None)
        if entry is None:
            sources.remove(source)
            continue
        source[2] += entry[1] + 512
        yield entry


def build_bench_layer(entries, cache):
    """tar | pigz -1 of these files (plus their parent directories); cached blob path."""
    names, seen = [], set()
    for path, _, _ in sorted(entries):
        parts = path.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent not in seen:
                seen.add(parent)
                names.append(parent)
        names.append(path)
    tmpdir = os.path.join(cache, "tmp")
    os.makedirs(tmpdir, exist_ok=True)
    fd, listfile = tempfile.mkstemp(dir=tmpdir)
    with os.fdopen(fd, "wb") as f:
        f.write(b"\0".join(n.encode() for n in names) + b"\0")
    fd, out = tempfile.mkstemp(dir=tmpdir)
    compressor = ["pigz", "-1", "-n"] if shutil.which("pigz") else ["gzip", "-1", "-n"]
    tar = subprocess.Popen(
        ["tar", "--create", "--file=-", "--directory=/", "--no-recursion", "--null", f"--files-from={listfile}",
         "--format=posix", "--numeric-owner", "--owner=0", "--group=0", f"--mtime=@{EPOCH}",
         "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime"],
        stdout=subprocess.PIPE)
    with os.fdopen(fd, "wb") as sink:
        gz = subprocess.Popen(compressor, stdin=subprocess.PIPE, stdout=sink)
        h, raw = hashlib.sha256(), 0
        while True:
            chunk = tar.stdout.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
            raw += len(chunk)
            gz.stdin.write(chunk)
        gz.stdin.close()
        if tar.wait() != 0 or gz.wait() != 0:
            die("tar or gzip failed building a bench layer")
    os.unlink(listfile)
    digest = sha256_file(out)
    blobs = os.path.join(cache, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    path = os.path.join(blobs, digest.split(":")[1])
    os.rename(out, path)
    return Layer(OCI_LAYER_GZIP, "sha256:" + h.hexdigest(), path=path, digest=digest,
                 size=os.path.getsize(path)), raw


def entries_key(entries):
    h = hashlib.sha256()
    for path, size, mtime in entries:
        h.update(f"{path}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()


def build_bench(min_bytes, nlayers, cache):
    os.makedirs(cache, exist_ok=True)
    meta_path = os.path.join(cache, f"bench-v{BENCH_VERSION}-{min_bytes}-{nlayers}.json")
    if os.path.exists(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        stream = bench_stream()
        ok = True
        for spec in meta["layers"]:
            entries = [next(stream, ("", 0, 0)) for _ in range(spec["files"])]
            path = os.path.join(cache, "blobs", "sha256", spec["digest"].split(":")[1])
            if entries_key(entries) != spec["key"] or not os.path.exists(path) or \
                    os.path.getsize(path) != spec["size"]:
                ok = False
                break
        if ok:
            layers = [Layer(OCI_LAYER_GZIP, s["diffID"], path=os.path.join(cache, "blobs", "sha256",
                                                                            s["digest"].split(":")[1]),
                            digest=s["digest"], size=s["size"]) for s in meta["layers"]]
            return layers, True
        log("bench cache is stale: rebuilding")
    stream = bench_stream()
    layers, specs = [], []
    total_c = total_raw = 0
    ratio = 0.4  # first guess of compressed/raw; measured after each layer
    for i in range(nlayers):
        remaining = nlayers - i
        need = max(min_bytes * 1.04 - total_c, 0) / remaining
        budget = need / ratio
        entries, raw_est = [], 0
        while raw_est < budget or not entries:
            entry = next(stream, None)
            if entry is None:
                die("not enough files on this machine for the bench image")
            entries.append(entry)
            raw_est += entry[1] + 512
        layer, raw = build_bench_layer(entries, cache)
        if i == nlayers - 1:
            # The last layer tops the total up if the guess fell short.
            while total_c + layer.size < min_bytes:
                os.unlink(layer.path)
                budget *= 1.15
                while raw_est < budget:
                    entry = next(stream, None)
                    if entry is None:
                        die("not enough files on this machine for the bench image")
                    entries.append(entry)
                    raw_est += entry[1] + 512
                layer, raw = build_bench_layer(entries, cache)
        total_c += layer.size
        total_raw += raw
        ratio = max(total_c / total_raw, 0.05)
        layers.append(layer)
        specs.append({"files": len(entries), "key": entries_key(entries), "digest": layer.digest,
                      "diffID": layer.diff_id, "size": layer.size, "raw": raw})
        log(f"bench layer {i + 1}/{nlayers}: {len(entries)} files, {raw / 2**20:.1f} MiB tar, "
            f"{layer.size / 2**20:.1f} MiB gzip")
    with open(meta_path + ".tmp", "w") as f:
        json.dump({"layers": specs}, f, indent=1)
    os.rename(meta_path + ".tmp", meta_path)
    return layers, False


def write_oci_layout(directory, image, tag):
    blobs = os.path.join(directory, "blobs", "sha256")
    os.makedirs(blobs, exist_ok=True)
    with open(os.path.join(directory, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    for blob in [*image.blobs()]:
        dest = os.path.join(blobs, blob.digest.split(":")[1])
        if os.path.exists(dest):
            continue
        if blob.path:
            try:
                os.link(blob.path, dest)
            except OSError:
                shutil.copyfile(blob.path, dest)
        else:
            with open(dest, "wb") as f:
                f.write(blob.data)
    with open(os.path.join(blobs, image.digest.split(":")[1]), "wb") as f:
        f.write(image.manifest)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX,
             "manifests": [{"mediaType": image.media_type, "digest": image.digest, "size": len(image.manifest),
                            "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    with open(os.path.join(directory, "index.json"), "wb") as f:
        f.write(canonical_json(index))


def default_cache():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "crisp-imagefixture")


def cmd_push_pause(args):
    """A pause image for peers that run an infra container per pod (containerd's
    sandbox_image): crisp-pause, a static executable, as /pause, run as 65535."""
    client = RegistryClient(args.registry, args.cafile, args.user)
    with open(args.binary, "rb") as f:
        binary = f.read()
    t = TarBuilder()
    t.file("pause", binary, mode=0o755)
    image = Image([make_layer(t.bytes())],
                  image_config(cmd=None, entrypoint=["/pause"], user="65535:65535", label="pause", env=[]),
                  comment="pause")
    repo, tag = split_name(args.name)
    push_image(client, repo, tag, image)
    result = {args.name: describe(args.name, image, {"expectFailure": False, "failure": None, "escapePath": None})}
    log(f"pushed {args.name} ({len(binary)} bytes of {args.binary}) to {args.registry}")
    emit(result, args.output)


def cmd_push_bench(args):
    started = time.monotonic()
    min_bytes = int(args.min_compressed_mb * 2**20)
    layers, cached = build_bench(min_bytes, args.layers, os.path.abspath(args.cache))
    image = Image(layers, image_config(cmd=None, label="bench"), comment="bench")
    built = time.monotonic()
    total = sum(l.size for l in layers)
    log(f"bench image: {len(layers)} layers, {total / 2**20:.1f} MiB gzip, "
        f"{'from the cache' if cached else 'built'} in {built - started:.1f}s")
    name = args.name
    repo, tag = split_name(name)
    if args.oci_layout:
        write_oci_layout(args.oci_layout, image, tag)
        log(f"OCI layout at {args.oci_layout} (ref {tag})")
    if args.registry:
        client = RegistryClient(args.registry, args.cafile, args.user)
        push_image(client, repo, tag, image)
        log(f"pushed {name} to {args.registry} in {time.monotonic() - built:.1f}s")
    d = describe(name, image, {"expectFailure": False, "failure": None, "escapePath": None})
    d["compressedSize"] = total
    d["buildSeconds"] = round(built - started, 2)
    d["cached"] = cached
    emit({name: d}, args.output)


# ---------------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("registry-config", help="write DIR/config.yml for docker-registry")
    c.add_argument("--dir", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--tls", action="store_true", help="serve HTTPS; DIR/ca.crt is the CA to trust")
    c.add_argument("--htpasswd", metavar="USER:PASS", help="basic auth with this one user")
    c.add_argument("--token", action="store_true", help="token auth (run token-server on --token-port)")
    c.add_argument("--token-port", type=int)
    c.add_argument("--marker", help=f"sent back in every response as {MARKER_HEADER} (see wait --expect-header)")
    c.set_defaults(func=cmd_registry_config)

    c = sub.add_parser("token-server", help="serve Docker registry tokens for DIR's registry")
    c.add_argument("--dir", required=True)
    c.add_argument("--port", type=int, required=True, help="0 picks a free port (see --port-file)")
    c.add_argument("--port-file", help="where to write the port once listening")
    c.add_argument("--user", required=True, metavar="USER:PASS")
    c.add_argument("--tls", action="store_true", help="serve HTTPS with DIR's server certificate")
    c.add_argument("--anonymous-pull", action="store_true", help="grant pull without credentials")
    c.add_argument("--verbose", action="store_true")
    c.set_defaults(func=cmd_token_server)

    c = sub.add_parser("redirector", help="a logging front of a registry that can redirect, serve blobs or challenge")
    c.add_argument("--port", type=int, default=0, help="0 picks a free port (see --port-file)")
    c.add_argument("--port-file", help="where to write the port once listening")
    c.add_argument("--log", required=True, help="every request as a JSON line: method, host, path, authorization, body")
    c.add_argument("--tls", action="store_true", help="serve HTTPS with DIR's server certificate")
    c.add_argument("--dir", help="with --tls: where the CA and server certificate are (made if missing)")
    c.add_argument("--upstream", metavar="URL", help="forward requests to this registry or token server")
    c.add_argument("--upstream-cafile", help="the CA to trust for an https --upstream")
    c.add_argument("--realm", metavar="URL", help="replaces the realm in the upstream's WWW-Authenticate")
    c.add_argument("--storage", help="serve blob GETs from this docker-registry storage directory")
    c.add_argument("--redirect-to", metavar="URL", help="redirect blob GETs to URL + the request's path")
    c.add_argument("--redirect-all", action="store_true", help="with --redirect-to: redirect every request")
    c.add_argument("--redirect-status", type=int, default=307)
    c.add_argument("--challenge", action="store_true", help="answer 401 with a Bearer challenge naming itself")
    c.set_defaults(func=cmd_redirector)

    c = sub.add_parser("wait", help="wait until GET /v2/ answers 200 or 401")
    c.add_argument("--registry", required=True, metavar="HOST:PORT")
    c.add_argument("--cafile")
    c.add_argument("--timeout", type=float, default=30)
    c.add_argument("--expect-header", metavar="NAME=VALUE", help="and answers with this header")
    c.set_defaults(func=cmd_wait)

    for name, func, text in [("push-standard", cmd_push_standard, "build and push the standard test images"),
                             ("push-bench", cmd_push_bench, "build and push the big benchmark image")]:
        c = sub.add_parser(name, help=text)
        c.add_argument("--registry", required=(name == "push-standard"), metavar="HOST:PORT")
        c.add_argument("--cafile", help="CA to trust; implies HTTPS")
        c.add_argument("--user", metavar="USER:PASS")
        c.add_argument("--output", help="also write the JSON here")
        c.set_defaults(func=func)
        if name == "push-standard":
            c.add_argument("--storage", help="the registry's storage directory (needed for crisp/bad:digest)")
        else:
            c.add_argument("--min-compressed-mb", type=float, default=150, help="MiB of gzip data at least")
            c.add_argument("--layers", type=int, default=5)
            c.add_argument("--oci-layout", metavar="DIR", help="also write an OCI image layout there")
            c.add_argument("--cache", default=default_cache(), help="built blobs are kept here (default %(default)s)")
            c.add_argument("--name", default="bench/big:latest")

    c = sub.add_parser("push-pause", help="push a pause image made of a static pause executable")
    c.add_argument("--registry", required=True, metavar="HOST:PORT")
    c.add_argument("--binary", required=True, help="the static executable (crisp-pause)")
    c.add_argument("--name", default="crisp/pause:latest")
    c.add_argument("--cafile", help="CA to trust; implies HTTPS")
    c.add_argument("--user", metavar="USER:PASS")
    c.add_argument("--output", help="also write the JSON here")
    c.set_defaults(func=cmd_push_pause)

    args = p.parse_args()
    try:
        rc = args.func(args)
    except (HTTPFailure, subprocess.CalledProcessError, OSError) as e:
        die(f"{args.command}: {e}")
    sys.exit(rc or 0)


if __name__ == "__main__":
    main()
