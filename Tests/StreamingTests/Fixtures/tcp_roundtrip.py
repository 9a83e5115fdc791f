#!/usr/bin/env python3
"""Sends SIZE random bytes to 127.0.0.1:PORT on each of COUNT connections at once, half-closes,
reads everything back and checks it is the same bytes (an echo server is at the other end).
Prints one line per connection: "ok <n> <sha256>" or "bad <reason>"; exits 0 only if all were ok.
Usage: tcp_roundtrip.py PORT SIZE COUNT"""
import hashlib, os, socket, sys, threading
import signal as _signal
# Test binaries block signals in all threads and children inherit the mask.
_signal.pthread_sigmask(_signal.SIG_SETMASK, [])

PORT, SIZE, COUNT = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
results = [None] * COUNT

def one(index):
    payload = os.urandom(SIZE)
    try:
        sock = socket.create_connection(("127.0.0.1", PORT), timeout=60)
        received = bytearray()
        def reader():
            while True:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    return
                received.extend(chunk)
        thread = threading.Thread(target=reader)
        thread.start()
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        thread.join()
        sock.close()
        if bytes(received) == payload:
            results[index] = f"ok {len(received)} {hashlib.sha256(received).hexdigest()}"
        else:
            results[index] = f"bad got {len(received)} bytes of {SIZE}, equal prefix {os.path.commonprefix([bytes(received), payload]).__len__()}"
    except OSError as error:
        results[index] = f"bad {error}"

threads = [threading.Thread(target=one, args=(i,)) for i in range(COUNT)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("\n".join(results))
sys.exit(0 if all(r.startswith("ok") for r in results) else 1)
