#!/usr/bin/env python3
"""A registry front that stalls layer downloads, for pull-timeout and kill-mid-pull tests.

Forwards GET/HEAD requests to a plain-HTTP upstream registry. Blob responses larger than
--stall-after bytes send their headers and the first --stall-after bytes, then hang until
the client goes away. Prints the port it listens on, then serves until killed.
"""
import argparse
import http.client
import http.server
import select
import sys
import threading
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True, help="HOST:PORT of a plain-HTTP registry")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stall-after", type=int, default=4096)
    args = parser.parse_args()
    host, port = args.upstream.rsplit(":", 1)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def forward(self, send_body):
            upstream = http.client.HTTPConnection(host, int(port), timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() in ("accept", "authorization")}
            upstream.request(self.command, self.path, headers=headers)
            response = upstream.getresponse()
            body = response.read()
            self.send_response(response.status)
            for key, value in response.getheaders():
                if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not send_body:
                return
            stall = "/blobs/sha256:" in self.path and len(body) > args.stall_after
            if not stall:
                self.wfile.write(body)
                return
            self.wfile.write(body[: args.stall_after])
            self.wfile.flush()
            while True:  # hang until the client hangs up
                readable, _, _ = select.select([self.connection], [], [], 0.5)
                if readable:
                    try:
                        if not self.connection.recv(1):
                            return
                    except OSError:
                        return

        def do_GET(self):
            self.forward(True)

        def do_HEAD(self):
            self.forward(False)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
