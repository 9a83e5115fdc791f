#!/usr/bin/env python3
"""Connects to HOST:PORT (retrying until DEADLINE seconds), sends FILE while reading back, then
half-closes and reads to EOF. Prints JSON: bytes back, their sha256, whether EOF came.
Usage: tcp_echo_check.py HOST:PORT FILE [DEADLINE]"""
import hashlib, json, socket, sys, threading, time
import signal as _signal
# The test process (Swift, NIO) blocks signals in all threads and children inherit the mask.
_signal.pthread_sigmask(_signal.SIG_SETMASK, [])

host, port = sys.argv[1].rsplit(":", 1)
path = sys.argv[2]
deadline = time.monotonic() + float(sys.argv[3] if len(sys.argv) > 3 else 30)
result = {}
while True:
    try:
        sock = socket.create_connection((host, int(port)), timeout=30)
        break
    except OSError as e:
        if time.monotonic() > deadline:
            print(json.dumps({"error": f"connect: {e}"}), flush=True)
            sys.exit(0)
        time.sleep(0.05)


def send():
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(32768)
                if not chunk:
                    break
                sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
    except OSError as e:
        result["send_error"] = str(e)


t = threading.Thread(target=send, daemon=True)
t.start()
digest, length = hashlib.sha256(), 0
try:
    while True:
        data = sock.recv(65536)
        if not data:
            result["eof"] = True
            break
        digest.update(data)
        length += len(data)
except OSError as e:
    result["recv_error"] = str(e)
t.join(timeout=5)
result.update(length=length, sha256=digest.hexdigest())
print(json.dumps(result), flush=True)
