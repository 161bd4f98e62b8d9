"""Flow-run launcher: the process worker's ``command`` for every deployment of this project.

Run as ``python -m clickstream.launch [flow-run-id]`` in place of ``python -m prefect.engine``.
When ``CLICKSTREAM_WARM_SOCKET`` names a live warm server (``clickstream.warm``), the run is
forked from that server's already-imported interpreter (prefect, dbt and the project are
loaded once, not once per partition); this process stays as the run's stand-in for the worker:
it forwards SIGTERM/SIGINT to the forked run and exits with its exit code. Otherwise (no
socket, server gone) it execs the stock ``python -m prefect.engine``: the same run, cold.

Only the standard library is imported here: this process starts once per flow run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import sys

SOCKET_ENV = "CLICKSTREAM_WARM_SOCKET"


def _cold(argv: list[str]) -> None:
    os.execv(sys.executable, [sys.executable, "-m", "prefect.engine", *argv])


def _recv_line(sock: socket.socket, buf: bytearray) -> bytes | None:
    while b"\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        buf.extend(chunk)
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line


def main(argv: list[str]) -> int:
    path = os.environ.get(SOCKET_ENV)
    if not path:
        _cold(argv)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        _cold(argv)
    request = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
    socket.send_fds(sock, [struct.pack("!I", len(request)) + request], [0, 1, 2])
    buf = bytearray()
    line = _recv_line(sock, buf)
    if line is None:  # the server went away before forking: run cold instead
        sock.close()
        _cold(argv)
    pid = int(json.loads(line)["pid"])

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)

    line = _recv_line(sock, buf)
    if line is None:
        # Server died while the run goes on (it is not our child): wait for it to end.
        import time

        while True:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return 0
            time.sleep(1)
    status = json.loads(line)
    if status.get("signal"):
        signal.signal(status["signal"], signal.SIG_DFL)
        os.kill(os.getpid(), status["signal"])
    return int(status.get("code", 1))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
