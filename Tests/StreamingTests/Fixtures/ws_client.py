#!/usr/bin/env python3
"""A WebSocket client for the streaming server's tests, built on the websocket-client library
(Debian python3-websocket), sharing nothing with the server. It speaks the Kubernetes channel
framing: every binary message starts with one channel byte.

  ws_client.py exec URL [options]         remotecommand (v4/v5.channel.k8s.io)
  ws_client.py portforward URL [options]  port forwarding (first message per channel: the port)

Prints one JSON object on stdout: the handshake status (or the error), the negotiated
subprotocol, what came back on each channel (length, sha256, text head), the status message,
and whether the server closed the connection. Exit status 0 unless the client itself broke."""
import argparse, hashlib, json, os, socket, ssl, sys, threading, time
import signal as _signal
# The test process (Swift, NIO) blocks signals in all threads and children inherit the mask.
_signal.pthread_sigmask(_signal.SIG_SETMASK, [])
import websocket

CHUNK = 32 * 1024


def arguments():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["exec", "portforward"])
    p.add_argument("url")
    p.add_argument("--protocol", action="append", default=[], help="offered subprotocols, in order")
    p.add_argument("--stdin", help="file sent on stdin (exec) or through the forwarded port")
    p.add_argument("--stdin-text", help="text sent on stdin after the resize")
    p.add_argument("--close-stdin", action="store_true", help="v5: close stdin (channel 255) after sending")
    p.add_argument("--resize", help="WxH sent on channel 4 first")
    p.add_argument("--expect-bytes", type=int, help="close once this much came back on the data channel")
    p.add_argument("--no-read", action="store_true", help="connect and then never read (slow reader)")
    p.add_argument("--ready-file", help="created once the handshake is done")
    p.add_argument("--cafile")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--timeout", type=float, default=60)
    return p.parse_args()


def connect(args, result):
    sslopt = {}
    if args.url.startswith("wss:"):
        sslopt = {"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": args.cafile}
        if args.cert:
            sslopt.update(certfile=args.cert, keyfile=args.key)
    try:
        ws = websocket.create_connection(
            args.url, subprotocols=args.protocol or None, sslopt=sslopt, timeout=args.timeout,
            sockopt=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),))
    except websocket.WebSocketBadStatusException as e:
        result["handshake_status"] = e.status_code
        return None
    except (OSError, ssl.SSLError, websocket.WebSocketException) as e:
        result["error"] = f"{type(e).__name__}: {e}"
        return None
    result["handshake_status"] = 101
    result["subprotocol"] = ws.subprotocol or ""
    if args.ready_file:
        open(args.ready_file, "w").close()
    return ws


class Channel:
    """What came on one channel. Port forwarding's first message per channel (the port) is kept
    apart in `first`, out of the length and hash."""

    def __init__(self, skip_first=False):
        self.skip_first = skip_first
        self.first = None
        self.length = 0
        self.hash = hashlib.sha256()
        self.head = b""
        self.messages = 0

    def add(self, data):
        if self.skip_first and self.first is None:
            self.first = data
            return
        self.messages += 1
        self.length += len(data)
        self.hash.update(data)
        if len(self.head) < 4096:
            self.head += data[: 4096 - len(self.head)]

    def summary(self):
        summary = {"length": self.length, "sha256": self.hash.hexdigest(), "messages": self.messages,
                   "text": self.head[:512].decode("utf-8", "replace")}
        if self.first is not None:
            summary["first"] = self.first.hex()
        return summary


def read_loop(ws, channels, result, stop_at=None, skip_first=False):
    """Reads until the server closes (or `stop_at(channels)` says enough)."""
    while True:
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketConnectionClosedException:
            result["closed_by_server"] = True
            return
        except (OSError, websocket.WebSocketException) as e:
            result["read_error"] = f"{type(e).__name__}: {e}"
            result["closed_by_server"] = True
            return
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            result["closed_by_server"] = True
            result["close_frame"] = True
            return
        if not data:
            continue
        channels.setdefault(data[0], Channel(skip_first)).add(data[1:])
        if stop_at and stop_at(channels):
            result["closed_by_server"] = False
            return


def send_file(ws, path, channel, result):
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(CHUNK)
                if not chunk:
                    break
                ws.send_binary(bytes([channel]) + chunk)
    except (OSError, websocket.WebSocketException) as e:
        result["write_error"] = f"{type(e).__name__}: {e}"


def run_exec(args, ws, result):
    channels = {}
    if args.no_read:
        time.sleep(3600)

    def writer():
        try:
            if args.resize:
                w, h = args.resize.split("x")
                ws.send_binary(b"\x04" + json.dumps({"Width": int(w), "Height": int(h)}).encode())
            if args.stdin_text is not None:
                ws.send_binary(b"\x00" + args.stdin_text.encode())
            if args.stdin:
                send_file(ws, args.stdin, 0, result)
            if args.close_stdin:
                ws.send_binary(b"\xff\x00")
        except (OSError, websocket.WebSocketException) as e:
            result["write_error"] = f"{type(e).__name__}: {e}"

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    stop = None
    if args.expect_bytes is not None:
        stop = lambda chans: chans.get(1, Channel()).length >= args.expect_bytes
    read_loop(ws, channels, result, stop)
    t.join(timeout=5)
    result["channels"] = {str(k): v.summary() for k, v in channels.items()}
    status = channels.get(3)
    if status is not None:
        result["status"] = status.head.decode("utf-8", "replace")


def run_portforward(args, ws, result):
    channels = {}
    if args.no_read:
        time.sleep(3600)
    # The server first names the port on the data and the error channel.
    t = threading.Thread(target=send_file, args=(ws, args.stdin, 0, result), daemon=True) if args.stdin else None
    if t:
        t.start()
    stop = None
    if args.expect_bytes is not None:
        stop = lambda chans: chans.get(0, Channel()).length >= args.expect_bytes
    read_loop(ws, channels, result, stop, skip_first=True)
    if t:
        t.join(timeout=5)
    data = channels.get(0)
    result["channels"] = {str(k): v.summary() for k, v in channels.items()}
    if data is not None and data.first is not None and len(data.first) == 2:
        result["port"] = int.from_bytes(data.first, "little")
    error = channels.get(1)
    if error is not None and error.length > 0:
        result["error_text"] = error.head.decode("utf-8", "replace")


def main():
    args = arguments()
    result = {"closed_by_server": False}
    started = time.monotonic()
    ws = connect(args, result)
    if ws is not None:
        if args.mode == "exec":
            run_exec(args, ws, result)
        else:
            run_portforward(args, ws, result)
        try:
            ws.close(timeout=2)
        except Exception:
            pass
    result["elapsed"] = time.monotonic() - started
    print(json.dumps(result), flush=True)


main()
