#!/usr/bin/env python3
"""A TCP echo server on 127.0.0.1 for the port-forward tests: every connection gets back what
it sends; the client's half-close is answered with a half-close once all was echoed.
Usage: echo_server.py PORT_FILE  (the chosen port is written there when it listens)"""
import os, socket, socketserver, sys
import signal as _signal
# The test process (Swift, NIO) blocks signals in all threads and children inherit the mask.
_signal.pthread_sigmask(_signal.SIG_SETMASK, [])


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
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
