#!/usr/bin/env python3
"""Runs a command on a new pseudo-terminal of ROWS x COLS (as a user's terminal would be), and
copies everything it writes there to stdout; exits with the command's exit code.
Usage: pty_run.py ROWS COLS COMMAND [ARGS...]"""
import fcntl, os, pty, struct, sys, termios
import signal as _signal
# Test binaries block signals in all threads and children inherit the mask.
_signal.pthread_sigmask(_signal.SIG_SETMASK, [])

rows, cols, command = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
fd, child = pty.openpty()
# The size is set before the command starts, so that it reads it at once.
fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
pid = os.fork()
if pid == 0:
    os.close(fd)
    os.login_tty(child)
    os.execvp(command[0], command)
os.close(child)
while True:
    try:
        data = os.read(fd, 65536)
    except OSError:
        break
    if not data:
        break
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
