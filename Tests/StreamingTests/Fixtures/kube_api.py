#!/usr/bin/env python3
"""A tiny stand-in for the Kubernetes API server, so that a real kubectl (1.20, SPDY) talks to
crisp's streaming server: GET of a pod answers a Running pod; exec/attach/portforward requests
are forwarded byte for byte to the URL in TARGET_FILE (the one crisp's RPC returned), with only
the request line rewritten, and the connection is spliced both ways after that.
Usage: kube_api.py PORT_FILE TARGET_FILE"""
import json, socket, socketserver, sys, threading, urllib.parse
import signal as _signal
# The test process (Swift, NIO) blocks signals in all threads and children inherit the mask.
_signal.pthread_sigmask(_signal.SIG_SETMASK, [])

PORT_FILE, TARGET_FILE = sys.argv[1], sys.argv[2]

def pod(name):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": "00000000-0000-0000-0000-000000000001"},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]},
            "status": {"phase": "Running"}}

def splice(a, b):
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    try:
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass

class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return
            head += chunk
        head, rest = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        method, uri, _ = lines[0].split(" ", 2)
        path = urllib.parse.urlparse(uri).path
        parts = path.strip("/").split("/")
        if len(parts) == 7 and parts[:2] == ["api", "v1"] and parts[6] in ("exec", "attach", "portforward"):
            target = urllib.parse.urlparse(open(TARGET_FILE).read().strip())
            upstream = socket.create_connection((target.hostname, target.port))
            headers = [l for l in lines[1:] if not l.lower().startswith("host:")]
            request = "\r\n".join([f"{method} {target.path} HTTP/1.1", f"Host: {target.netloc}"] + headers)
            upstream.sendall(request.encode("latin-1") + b"\r\n\r\n" + rest)
            t = threading.Thread(target=splice, args=(upstream, sock))
            t.start()
            splice(sock, upstream)
            t.join()
            upstream.close()
            return
        discovery = {
            "/api": {"kind": "APIVersions", "versions": ["v1"],
                     "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]},
            "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
            "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": [
                {"name": "pods", "singularName": "", "namespaced": True, "kind": "Pod",
                 "verbs": ["get", "list"], "shortNames": ["po"]},
                {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions", "verbs": ["create", "get"]},
                {"name": "pods/attach", "singularName": "", "namespaced": True, "kind": "PodAttachOptions", "verbs": ["create", "get"]},
                {"name": "pods/portforward", "singularName": "", "namespaced": True, "kind": "PodPortForwardOptions", "verbs": ["create", "get"]}]},
        }
        if path.rstrip("/") in discovery:
            body = json.dumps(discovery[path.rstrip("/")]).encode()
            status = "200 OK"
        elif len(parts) == 6 and parts[:2] == ["api", "v1"] and parts[4] == "pods":
            body = json.dumps(pod(parts[5])).encode()
            status = "200 OK"
        else:
            body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                               "reason": "NotFound", "message": f"{path} not found"}).encode()
            status = "404 Not Found"
        sock.sendall(f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + body)

class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

server = Server(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
