#!/usr/bin/env python3
"""A TCP echo server on 127.0.0.1 for the port-forward tests: every connection gets back what
it sends; the client's half-close is answered with a half-close once all was echoed.
With --firehose COUNTER it instead writes to every connection for ever, keeping the total
written in the file COUNTER (for the slow-reader tests).
Usage: echo_server.py PORT_FILE [--firehose COUNTER]  (the port is written to PORT_FILE)"""
import os, socket, socketserver, sys
import signal as _signal
# The test process (Swift, NIO) blocks signals in all threads and children inherit the mask.
_signal.pthread_sigmask(_signal.SIG_SETMASK, [])


FIREHOSE = sys.argv[3] if len(sys.argv) > 3 and sys.argv[2] == "--firehose" else None


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        if FIREHOSE:
            fd = os.open(FIREHOSE, os.O_WRONLY | os.O_CREAT)
            chunk, total = b"x" * 65536, 0
            try:
                while True:
                    total += sock.send(chunk)
                    os.pwrite(fd, str(total).encode().ljust(20), 0)
            except OSError:
                return
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


server = Server(("127.0.0.1", 0), Handler)
port_file = sys.argv[1]
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
