#!/usr/bin/env python3
"""Sends one raw HTTP request (bytes given on the command line, with Python escapes such as
\\r\\n and \\x00) to the streaming server and reports what came back: the status code (0 if
none) and whether the server then closed the connection.
Usage: http_probe.py HOST:PORT REQUEST  (REQUEST may contain {pad} for 100 KB of filler)"""
import json, socket, sys, time
import signal as _signal
# The test process (Swift, NIO) blocks signals in all threads and children inherit the mask.
_signal.pthread_sigmask(_signal.SIG_SETMASK, [])

host, port = sys.argv[1].rsplit(":", 1)
request = sys.argv[2].encode("latin-1").decode("unicode_escape").encode("latin-1")
request = request.replace(b"{pad}", b"a" * 100_000)
sock = socket.create_connection((host, int(port)), timeout=10)
result = {"status": 0, "closed": False}
try:
    sock.sendall(request)
except OSError as e:
    result["send_error"] = str(e)
data = b""
deadline = time.monotonic() + 10
try:
    while time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            result["closed"] = True
            break
        data += chunk
except ConnectionResetError:
    result["closed"] = True
except socket.timeout:
    pass
line = data.split(b"\r\n", 1)[0].decode("latin-1")
parts = line.split(" ", 2)
if len(parts) >= 2 and parts[1].isdigit():
    result["status"] = int(parts[1])
result["response"] = data[:300].decode("latin-1")
print(json.dumps(result), flush=True)
