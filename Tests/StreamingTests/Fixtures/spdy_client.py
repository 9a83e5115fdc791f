#!/usr/bin/env python3
"""A minimal SPDY/3.1 client for the streaming server's tests, written from the SPDY/3 draft and
the Kubernetes remotecommand/portforward protocols, sharing nothing with the server: frames,
the zlib header compression with the SPDY/3 dictionary, and flow control (it honours the
server's windows and, with --flow-control, returns its own with WINDOW_UPDATE).

  spdy_client.py exec URL [options]         remotecommand over SPDY
  spdy_client.py portforward URL [options]  concurrent port-forward streams
  spdy_client.py malformed URL --kind K     upgrade, then send a bad frame; report what happened

Prints one JSON object on stdout. Exit status 0 unless the client itself broke."""
import argparse, hashlib, json, os, socket, ssl, struct, sys, threading, time, urllib.parse, zlib
import signal as _signal
# The test process (Swift, NIO) blocks signals in all threads and children inherit the mask.
_signal.pthread_sigmask(_signal.SIG_SETMASK, [])

# The SPDY/3 header dictionary: length-prefixed header names and values, then a plain tail.
_WORDS = [
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
    "content-base", "content-encoding", "content-language", "content-length", "content-location",
    "content-md5", "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host",
    "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified",
    "location", "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
    "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via",
    "warning", "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
    "public", "set-cookie", "keep-alive", "origin",
]
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 1
CHUNK = 32 * 1024
DEFAULT_WINDOW = 65536


class Stream:
    def __init__(self, sid, headers):
        self.id = sid
        self.headers = headers
        self.replied = threading.Event()
        self.finished = threading.Event()  # FIN or reset from the server
        self.reset_status = None
        self.send_window = DEFAULT_WINDOW
        self.length = 0
        self.hash = hashlib.sha256()
        self.head = b""

    def add(self, data):
        self.length += len(data)
        self.hash.update(data)
        if len(self.head) < 4096:
            self.head += data[: 4096 - len(self.head)]

    def summary(self):
        return {"length": self.length, "sha256": self.hash.hexdigest(), "text": self.head[:512].decode("utf-8", "replace"),
                "fin": self.finished.is_set() and self.reset_status is None, "reset": self.reset_status,
                "replied": self.replied.is_set()}


class Connection:
    def __init__(self, url, protocols, cafile=None, cert=None, key=None, flow_control=False, timeout=60):
        self.url = urllib.parse.urlparse(url)
        self.flow_control = flow_control
        self.timeout = timeout
        sock = socket.create_connection((self.url.hostname, self.url.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.url.scheme == "https":
            context = ssl.create_default_context(cafile=cafile)
            if cert:
                context.load_cert_chain(cert, key)
            sock = context.wrap_socket(sock, server_hostname=self.url.hostname)
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.protocols = protocols
        self.send_lock = threading.Lock()
        self.window_cond = threading.Condition()
        self.session_window = DEFAULT_WINDOW
        self.streams = {}
        self.next_id = 1
        self.compressor = zlib.compressobj(zdict=DICTIONARY)
        self.decompressor = zlib.decompressobj(zdict=DICTIONARY)
        self.goaway = None
        self.closed = threading.Event()
        self.read_error = None
        self.protocol_events = []

    # -- HTTP upgrade --

    def upgrade(self, method="GET", extra_headers=()):
        lines = [f"{method} {self.url.path} HTTP/1.1", f"Host: {self.url.netloc}", "Connection: Upgrade",
                 "Upgrade: SPDY/3.1"]
        lines += [f"X-Stream-Protocol-Version: {p}" for p in self.protocols]
        lines += list(extra_headers)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status_line = self.reader.readline().decode("latin-1").strip()
        headers = {}
        while True:
            line = self.reader.readline()
            if not line or line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        parts = status_line.split(" ", 2)
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        self.response_headers = headers
        if self.status != 101:
            length = int(headers.get("content-length", ["0"])[0])
            self.body = self.reader.read(length).decode("utf-8", "replace") if length else ""
        return self.status

    def start_reader(self):
        threading.Thread(target=self._read_frames, daemon=True).start()

    # -- frames out --

    def _send(self, data):
        with self.send_lock:
            self.sock.sendall(data)

    @staticmethod
    def control(frame_type, flags, payload, version=3):
        return struct.pack(">HHI", 0x8000 | version, frame_type, (flags << 24) | len(payload)) + payload

    @staticmethod
    def header_block(headers):
        out = struct.pack(">I", len(headers))
        for name, value in headers.items():
            n, v = name.lower().encode(), value.encode()
            out += struct.pack(">I", len(n)) + n + struct.pack(">I", len(v)) + v
        return out

    def open_stream(self, headers, fin=False):
        # Compression state and stream ids must advance in the order frames hit the wire.
        with self.send_lock:
            sid = self.next_id
            self.next_id += 2
            stream = Stream(sid, headers)
            self.streams[sid] = stream
            block = self.compressor.compress(self.header_block(headers)) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
            payload = struct.pack(">IIBB", sid, 0, 0, 0) + block
            self.sock.sendall(self.control(SYN_STREAM, FLAG_FIN if fin else 0, payload))
        return stream

    def send_data(self, stream, data, fin=False):
        view = memoryview(data)
        while True:
            if not view and not fin:
                return
            with self.window_cond:
                allowed = min(stream.send_window, self.session_window, CHUNK)
                deadline = time.monotonic() + self.timeout
                while view and allowed <= 0:
                    if self.closed.is_set() or stream.finished.is_set():
                        raise OSError("stream or connection gone while waiting for a window")
                    if time.monotonic() > deadline:
                        raise OSError("the server never reopened its flow-control window")
                    self.window_cond.wait(0.5)
                    allowed = min(stream.send_window, self.session_window, CHUNK)
                chunk = bytes(view[:allowed]) if view else b""
                stream.send_window -= len(chunk)
                self.session_window -= len(chunk)
            view = view[len(chunk):]
            last = fin and not view
            self._send(struct.pack(">II", stream.id & 0x7FFFFFFF, ((FLAG_FIN if last else 0) << 24) | len(chunk))
                       + chunk)
            if last or (not view and not fin):
                return

    def send_file(self, stream, path, fin=True):
        with open(path, "rb") as f:
            while True:
                chunk = f.read(CHUNK)
                if not chunk:
                    break
                self.send_data(stream, chunk)
        if fin:
            self.send_data(stream, b"", fin=True)

    # -- frames in --

    def _read_exact(self, n):
        data = self.reader.read(n)
        if data is None or len(data) < n:
            raise EOFError("connection closed")
        return data

    def _read_frames(self):
        try:
            while True:
                head = self._read_exact(8)
                word0, word1 = struct.unpack(">II", head)
                flags, length = word1 >> 24, word1 & 0xFFFFFF
                payload = self._read_exact(length) if length else b""
                if word0 & 0x80000000:
                    self._control((word0 >> 16) & 0x7FFF, word0 & 0xFFFF, flags, payload)
                else:
                    self._data(word0 & 0x7FFFFFFF, flags, payload)
        except (EOFError, OSError, ValueError) as e:
            if not isinstance(e, EOFError):
                self.read_error = f"{type(e).__name__}: {e}"
        finally:
            self.closed.set()
            for stream in self.streams.values():
                stream.finished.set()
            with self.window_cond:
                self.window_cond.notify_all()

    def _data(self, sid, flags, payload):
        stream = self.streams.get(sid)
        if stream is None:
            self.protocol_events.append(f"data for unknown stream {sid}")
            return
        stream.add(payload)
        if self.flow_control and payload:
            self._send(self.control(WINDOW_UPDATE, 0, struct.pack(">II", sid, len(payload)))
                       + self.control(WINDOW_UPDATE, 0, struct.pack(">II", 0, len(payload))))
        if flags & FLAG_FIN:
            stream.finished.set()

    def _control(self, version, frame_type, flags, payload):
        if version != 3:
            raise ValueError(f"server sent a control frame of version {version}")
        if frame_type == SYN_REPLY:
            sid = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
            self.decompressor.decompress(payload[4:])  # keeps the zlib stream in step; checks the dictionary
            stream = self.streams.get(sid)
            if stream:
                stream.replied.set()
                if flags & FLAG_FIN:
                    stream.finished.set()
        elif frame_type == HEADERS:
            self.decompressor.decompress(payload[4:])
        elif frame_type == RST_STREAM:
            sid, status = struct.unpack(">II", payload)
            sid &= 0x7FFFFFFF
            self.protocol_events.append(f"RST_STREAM {sid} status {status}")
            stream = self.streams.get(sid)
            if stream:
                stream.reset_status = status
                stream.finished.set()
        elif frame_type == WINDOW_UPDATE:
            sid, delta = struct.unpack(">II", payload)
            with self.window_cond:
                if sid == 0:
                    self.session_window += delta & 0x7FFFFFFF
                elif sid in self.streams:
                    self.streams[sid].send_window += delta & 0x7FFFFFFF
                self.window_cond.notify_all()
        elif frame_type == SETTINGS:
            count = struct.unpack(">I", payload[:4])[0]
            for i in range(count):
                idw, value = struct.unpack(">II", payload[4 + 8 * i: 12 + 8 * i])
                if idw & 0xFFFFFF == 7:  # INITIAL_WINDOW_SIZE
                    with self.window_cond:
                        for stream in self.streams.values():
                            stream.send_window += value - DEFAULT_WINDOW
                        self.window_cond.notify_all()
        elif frame_type == PING:
            self._send(self.control(PING, 0, payload))
        elif frame_type == GOAWAY:
            last, status = struct.unpack(">II", payload)
            self.goaway = status
            self.protocol_events.append(f"GOAWAY last {last & 0x7FFFFFFF} status {status}")

    def wait_closed(self, timeout):
        return self.closed.wait(timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def arguments():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["exec", "portforward", "malformed"])
    p.add_argument("url")
    p.add_argument("--protocol", action="append", default=[])
    p.add_argument("--stdin", help="exec: file sent on stdin; portforward: file sent on each stream")
    p.add_argument("--stdin-text")
    p.add_argument("--no-stdin-fin", action="store_true")
    p.add_argument("--tty", action="store_true")
    p.add_argument("--no-stderr", action="store_true")
    p.add_argument("--resize", help="WxH, sent on the resize stream before any stdin")
    p.add_argument("--port", type=int)
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--kind")
    p.add_argument("--flow-control", action="store_true")
    p.add_argument("--no-read", action="store_true", help="open the streams, then never read (slow reader)")
    p.add_argument("--ready-file", help="created once the streams are open")
    p.add_argument("--cafile")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--timeout", type=float, default=60)
    return p.parse_args()


def run_exec(args, conn, result):
    names = ["error"]
    if args.stdin or args.stdin_text is not None:
        names.append("stdin")
    names.append("stdout")
    if not args.tty and not args.no_stderr:
        names.append("stderr")
    if args.tty:
        names.append("resize")
    streams = {name: conn.open_stream({"streamtype": name}) for name in names}
    if args.ready_file:
        open(args.ready_file, "w").close()
    if args.no_read:
        time.sleep(3600)
    errors = []
    if args.resize:
        w, h = args.resize.split("x")
        conn.send_data(streams["resize"], json.dumps({"Width": int(w), "Height": int(h)}).encode())
    if "stdin" in streams:
        def writer():
            try:
                if args.stdin_text is not None:
                    conn.send_data(streams["stdin"], args.stdin_text.encode())
                if args.stdin:
                    conn.send_file(streams["stdin"], args.stdin, fin=False)
                if not args.no_stdin_fin:
                    conn.send_data(streams["stdin"], b"", fin=True)
            except OSError as e:
                errors.append(f"stdin: {e}")
        threading.Thread(target=writer, daemon=True).start()
    finished = streams["error"].finished.wait(args.timeout)
    result["status_stream_finished"] = finished
    # The server finishes the output streams with (or right after) the status.
    for name in ("stdout", "stderr"):
        if name in streams:
            streams[name].finished.wait(5)
    result["streams"] = {name: s.summary() for name, s in streams.items()}
    result["status"] = streams["error"].head.decode("utf-8", "replace")
    if errors:
        result["write_errors"] = errors
    result["server_closed"] = conn.wait_closed(10)


def run_portforward(args, conn, result):
    pairs = []
    for i in range(args.streams):
        headers = {"port": str(args.port), "requestid": str(i)}
        error = conn.open_stream(dict(headers, streamtype="error"))
        data = conn.open_stream(dict(headers, streamtype="data"))
        pairs.append((error, data))
    if args.ready_file:
        open(args.ready_file, "w").close()
    if args.no_read:
        time.sleep(3600)
    errors = []

    def writer(stream):
        try:
            conn.send_file(stream, args.stdin)
        except OSError as e:
            errors.append(f"stream {stream.id}: {e}")

    threads = [threading.Thread(target=writer, args=(data,), daemon=True) for _, data in pairs]
    for t in threads:
        t.start()
    deadline = time.monotonic() + args.timeout
    for _, data in pairs:
        data.finished.wait(max(0, deadline - time.monotonic()))
    result["pairs"] = [{"error": e.summary(), "data": d.summary()} for e, d in pairs]
    if errors:
        result["write_errors"] = errors


def run_malformed(args, conn, result):
    kind = args.kind
    c = Connection.control
    if kind == "bad-version":
        frame = c(SYN_STREAM, 0, struct.pack(">IIBB", 1, 0, 0, 0) + b"\x00" * 8, version=2)
    elif kind == "huge-length":
        frame = struct.pack(">II", 1, 0xFFFFFF) + b"x" * 1024
    elif kind == "huge-control":
        frame = c(SETTINGS, 0, b"") [:4] + struct.pack(">I", 0xFFFFFF) + b"\x00" * 1024
    elif kind == "garbage-headers":
        frame = c(SYN_STREAM, 0, struct.pack(">IIBB", 1, 0, 0, 0) + os.urandom(64))
    elif kind == "syn-stream-zero":
        block = conn.compressor.compress(Connection.header_block({"streamtype": "error"}))
        block += conn.compressor.flush(zlib.Z_SYNC_FLUSH)
        frame = c(SYN_STREAM, 0, struct.pack(">IIBB", 0, 0, 0, 0) + block)
    elif kind == "short-rst":
        frame = c(RST_STREAM, 0, b"\x00\x00\x00\x01")
    elif kind == "data-unknown-stream":
        frame = struct.pack(">II", 7, 5) + b"hello"
    elif kind == "truncated":
        frame = c(SYN_STREAM, 0, b"\x00\x00\x00\x01")[:6]
    else:
        raise SystemExit(f"unknown kind {kind}")
    conn._send(frame)
    if kind == "truncated":
        conn.sock.shutdown(socket.SHUT_WR)
    # Either the server ends the session (GOAWAY, close) or it resets just the stream.
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and not conn.closed.is_set():
        if any(e.startswith("RST_STREAM") for e in conn.protocol_events):
            break
        conn.closed.wait(0.02)
    result["server_closed"] = conn.closed.is_set()
    result["goaway"] = conn.goaway
    result["events"] = conn.protocol_events


def main():
    args = arguments()
    result = {}
    started = time.monotonic()
    try:
        conn = Connection(args.url, args.protocol, args.cafile, args.cert, args.key, args.flow_control, args.timeout)
        status = conn.upgrade()
    except (OSError, ssl.SSLError) as e:
        result["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(result), flush=True)
        return
    result["handshake_status"] = status
    result["protocol"] = (conn.response_headers.get("x-stream-protocol-version") or [""])[0]
    if status != 101:
        result["body"] = conn.body
    else:
        if not args.no_read:
            conn.start_reader()
        {"exec": run_exec, "portforward": run_portforward, "malformed": run_malformed}[args.mode](args, conn, result)
        if conn.read_error:
            result["read_error"] = conn.read_error
        result["events"] = conn.protocol_events
    conn.close()
    result["elapsed"] = time.monotonic() - started
    print(json.dumps(result), flush=True)


main()
