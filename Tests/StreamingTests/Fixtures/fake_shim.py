#!/usr/bin/env python3
"""A stand-in for shimd's exec session, for the streaming server's tests: listens on a unix
socket, accepts one connection, runs a command with pipes (or a pty with --tty) and speaks the
session framing of the streaming contract on the connection:
1 byte channel, 4 bytes big-endian length, payload.
  in:  0 stdin, 4 resize {"width","height"}, 5 stdin EOF
  out: 1 stdout, 2 stderr, 3 end {"exitCode": N}
Closing the connection before the end frame kills the command (as shimd does).
Written separately from the server (no shared code)."""
import fcntl, json, os, pty, signal, socket, struct, sys, termios, threading
import signal as _signal
# The test process (Swift, NIO) blocks signals in all threads and children inherit the mask.
_signal.pthread_sigmask(_signal.SIG_SETMASK, [])

def main():
    path = sys.argv[1]
    tty = sys.argv[2] == "tty"
    command = sys.argv[sys.argv.index("--") + 1:]
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Bound and listening before the path appears: ProcessBackend connects as soon as it exists.
    listener.bind(path + ".tmp")
    listener.listen(1)
    os.rename(path + ".tmp", path)
    listener.settimeout(10)
    conn, _ = listener.accept()
    os.unlink(path)
    listener.close()
    send_lock = threading.Lock()

    def send(channel, payload):
        with send_lock:
            conn.sendall(struct.pack(">BI", channel, len(payload)) + payload)

    if tty:
        master, slave = pty.openpty()
        pid = os.fork()
        if pid == 0:
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            os.closerange(3, 1024)
            os.execvp(command[0], command)
        os.close(slave)
        stdin_fd, outputs = master, [(master, 1)]
    else:
        rin, win = os.pipe()
        rout, wout = os.pipe()
        rerr, werr = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.dup2(rin, 0); os.dup2(wout, 1); os.dup2(werr, 2)
            os.closerange(3, 1024)
            os.execvp(command[0], command)
        for fd in (rin, wout, werr):
            os.close(fd)
        stdin_fd, outputs = win, [(rout, 1), (rerr, 2)]

    def pump(fd, channel):
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            if not data:
                return
            send(channel, data)

    pumps = [threading.Thread(target=pump, args=o) for o in outputs]
    for t in pumps:
        t.start()

    def recv_exact(n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = conn.recv(n - len(buf))
            except OSError:
                # A reset (frontd closed with our output unread) is the client going away too.
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def reader():
        while True:
            head = recv_exact(5)
            if head is None:
                # The client went away: kill the command.
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return
            channel, length = struct.unpack(">BI", head)
            payload = recv_exact(length) if length else b""
            if payload is None:
                os.kill(pid, signal.SIGKILL)
                return
            if channel == 0:
                os.write(stdin_fd, payload)
            elif channel == 4:
                size = json.loads(payload)
                fcntl.ioctl(stdin_fd if tty else 0, termios.TIOCSWINSZ,
                            struct.pack("HHHH", size["height"], size["width"], 0, 0))
            elif channel == 5 and not tty:
                os.close(stdin_fd)

    threading.Thread(target=reader, daemon=True).start()
    _, status = os.waitpid(pid, 0)
    for t in pumps:
        t.join(timeout=5)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        code = 128 - code
    try:
        send(3, json.dumps({"exitCode": code}).encode())
        conn.shutdown(socket.SHUT_WR)
    except OSError:
        pass

main()
