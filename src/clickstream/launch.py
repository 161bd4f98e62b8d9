"""Flow-run launcher: the process worker's ``command`` for every deployment of this project.

Run as ``python -m clickstream.launch [flow-run-id]`` in place of ``python -m prefect.engine``.
When ``CLICKSTREAM_WARM_SOCKET`` names the socket of a warm server (``clickstream.warm``), the
run is forked from that server's already-imported interpreter; this process stays as the
run's stand-in for the worker: it forwards SIGTERM/SIGINT/SIGHUP to the run and ends the way
the run ended (same exit code, or killed by the same signal). Whenever it cannot or should
not use the server (not running, not ours, stale code, refused), it says so in one line on
stderr and execs the stock ``python -m prefect.engine``: the same run, cold.

Trust: the socket must sit in a directory owned by this uid with no group/other access (the
stack creates it with ``mkdtemp``), and the process answering on it must run as this uid
(``SO_PEERCRED``); only then does this process send its environment. The server in turn
checks the peer's uid and a secret token read from that directory.

Only the standard library is imported here: this process starts once per flow run.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import stat
import struct
import sys

SOCKET_ENV = "CLICKSTREAM_WARM_SOCKET"
TOKEN_NAME = "token"
PROTOCOL = 1
# Handshake deadline: connect, request, reply. A run lasts as long as it lasts, the
# handshake does not (the server answers within milliseconds unless it is wedged).
HANDSHAKE_SECONDS = 10.0
MAX_REPLY = 64 * 1024
# The run's status is unknown (the server that was its parent is gone): a failure, never 0.
LOST_STATUS = 1
_PEERCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


class Refused(Exception):
    """The warm path is not available for this run; the reason goes to stderr, then cold."""


def say(msg: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(f"clickstream.launch: {msg}\n")
        sys.stderr.flush()


def site_dirs() -> list[str]:
    return [p for p in sys.path if p.endswith("site-packages")]


def code_fingerprint(sites: list[str] | None = None) -> str:
    """What the warm server's preloaded code was imported from, cheaply (stat calls only).

    Size and mtime of every .py of this package (a ``git pull``) plus the mtime of each
    site-packages directory on ``sys.path`` (changes when a package is added, removed or
    upgraded). The server computes it before it imports anything, the launcher per run.
    """
    pkg = os.path.dirname(os.path.abspath(__file__))
    parts = [pkg]
    stack = [pkg]
    while stack:
        d = stack.pop()
        with os.scandir(d) as entries:
            for e in sorted(entries, key=lambda e: e.name):
                if e.is_dir(follow_symlinks=False) and e.name != "__pycache__":
                    stack.append(e.path)
                elif e.name.endswith(".py"):
                    st = e.stat()
                    parts.append(f"{e.path}:{st.st_size}:{st.st_mtime_ns}")
    for p in site_dirs() if sites is None else sites:
        with contextlib.suppress(OSError):
            parts.append(f"{p}:{os.stat(p).st_mtime_ns}")
    # Sent as is (a few KB to a same-uid server): exact, and no hashlib import per run.
    return "\n".join(parts)


def private_dir_problem(path: str) -> str | None:
    """Why ``path`` is not a directory only this uid can use, or None if it is."""
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot stat {path}: {exc.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid != os.geteuid():
        return f"{path} is owned by uid {st.st_uid}, not {os.geteuid()}"
    if st.st_mode & 0o077:
        return f"{path} is accessible to group/others (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def read_token(directory: str) -> str:
    fd = os.open(os.path.join(directory, TOKEN_NAME), os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise PermissionError(f"token file in {directory} is not private to this uid")
        return os.read(fd, 256).decode().strip()
    finally:
        os.close(fd)


def peer_uid(sock: socket.socket) -> tuple[int, int]:
    pid, uid, _gid = _PEERCRED.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    )
    return pid, uid


def _cold(argv: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *argv])


def _read_reply(sock: socket.socket) -> tuple[dict, list[int]]:
    buf = bytearray()
    fds: list[int] = []
    try:
        while b"\n" not in buf:
            if len(buf) > MAX_REPLY:
                raise Refused("oversized reply from the warm server")
            chunk, got, _flags, _addr = socket.recv_fds(sock, 4096, 4)
            fds.extend(got)
            if not chunk:
                raise Refused("the warm server closed the connection without answering")
            buf.extend(chunk)
        reply = json.loads(bytes(buf).partition(b"\n")[0])
        if not isinstance(reply, dict):
            raise ValueError("reply is not an object")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return reply, fds


def handshake(path: str, argv: list[str]) -> tuple[socket.socket, int, int]:
    """Have the server fork this run; returns (connection, pidfd, pid) of a gated child.

    Raises Refused before anything is committed: the caller may still run cold. The child
    only starts once it gets ``go`` (sent by ``main``), so a launcher that dies here never
    leaves a second copy of its run behind.
    """
    directory = os.path.dirname(path) or "."
    problem = private_dir_problem(directory)
    if problem:
        raise Refused(f"not trusting the warm socket: {problem}")
    try:
        token = read_token(directory)
    except OSError as exc:
        raise Refused(f"no usable token next to {path}: {exc}") from None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(HANDSHAKE_SECONDS)
        try:
            sock.connect(path)
        except FileNotFoundError:
            raise Refused(f"no warm server at {path}") from None
        except ConnectionRefusedError:
            raise Refused(f"warm server not running at {path} (connection refused)") from None
        except OSError as exc:
            raise Refused(f"cannot connect to {path}: {exc}") from None
        pid, uid = peer_uid(sock)
        if uid != os.geteuid():
            raise Refused(f"not trusting {path}: served by pid {pid} of uid {uid}")
        umask = os.umask(0o077)
        os.umask(umask)
        body = json.dumps(
            {
                "v": PROTOCOL,
                "token": token,
                "fingerprint": code_fingerprint(),
                "argv": argv,
                "env": dict(os.environ),
                "cwd": os.getcwd(),
                "umask": umask,
            }
        ).encode()
        payload = struct.pack("!I", len(body)) + body
        try:
            sent = socket.send_fds(sock, [payload], [0, 1, 2])
            if sent < len(payload):
                sock.sendall(payload[sent:])
            reply, fds = _read_reply(sock)
        except TimeoutError:
            raise Refused(
                f"no answer from the warm server within {HANDSHAKE_SECONDS:.0f}s"
            ) from None
        except (OSError, ValueError) as exc:
            raise Refused(f"handshake with the warm server failed: {exc}") from None
        if not reply.get("ok"):
            for fd in fds:
                os.close(fd)
            raise Refused(f"warm server refused: {reply.get('reason', 'no reason given')}")
        child = reply.get("pid")
        if len(fds) != 1 or not isinstance(child, int):
            for fd in fds:
                os.close(fd)
            raise Refused("malformed answer from the warm server")
        sock.settimeout(None)
        return sock, fds[0], child
    except BaseException:
        sock.close()
        raise


def _die_like(signum: int) -> None:
    """End this process by ``signum``, so the worker sees the run's own death (-signum)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if signum not in (signal.SIGKILL, signal.SIGSTOP):
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    os.kill(os.getpid(), signum)


def _wait_for_status(sock: socket.socket, pidfd: int, pid: int) -> int:
    buf = bytearray()
    while b"\n" not in buf:
        try:
            chunk = sock.recv(4096)
        except OSError:
            chunk = b""
        if not chunk:
            break
        buf.extend(chunk)
    status = None
    if b"\n" in buf:
        with contextlib.suppress(ValueError):
            status = json.loads(bytes(buf).partition(b"\n")[0])
    if isinstance(status, dict):
        if isinstance(status.get("signal"), int) and 0 < status["signal"] < signal.NSIG:
            _die_like(status["signal"])
            return 128 + status["signal"]  # only for signals whose default is not to die
        if isinstance(status.get("code"), int):
            return status["code"]
    # The server (the run's parent) is gone while the run may go on: wait for the run itself,
    # through the pidfd (a PID could be reused), and admit we do not know how it ended.
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    while not poller.poll():
        pass
    say(f"warm server lost while run pid {pid} was running; its exit status is unknown")
    return LOST_STATUS


def main(argv: list[str]) -> int:
    path = os.environ.get(SOCKET_ENV)
    if not path:
        _cold(argv)
    try:
        sock, pidfd, pid = handshake(path, argv)
    except Refused as exc:
        say(f"{exc}; starting the run cold")
        _cold(argv)
    except Exception as exc:  # nothing is committed before "go": cold is always safe here
        say(f"warm start failed ({type(exc).__name__}: {exc}); starting the run cold")
        _cold(argv)

    def forward(signum: int, _frame: object) -> None:
        # The pidfd names the run's process even after it has exited and been reaped:
        # no other process that got its PID meanwhile can receive this signal.
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(pidfd, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    try:
        sock.sendall(b"go\n")
    except OSError as exc:
        # The server is gone before the child got "go": the child never starts (it exits on
        # the closed gate), so running cold cannot run this flow run twice.
        say(f"warm server lost before the run started ({exc}); starting the run cold")
        sock.close()
        os.close(pidfd)
        _cold(argv)
    return _wait_for_status(sock, pidfd, pid)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
