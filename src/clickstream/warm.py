"""Warm server: fork flow runs from an interpreter that has already imported their code.

A cold flow run spends ~7 s of CPU importing prefect and dbt before it does any
work (measured on the 2-core dev box; see bench/RESULTS.md). ``clickstream stack`` starts
one warm server next to each process worker. It imports all of that once, then serves
requests from ``clickstream.launch`` on a Unix socket: for each, it forks a child that takes
the launcher's stdio, environment and working directory and runs ``prefect.engine`` exactly
as the cold command would. The server itself stays single-threaded (fork-safe) and never
talks to the Prefect API.

Lifecycle: signals sent to a launcher reach its run; a run whose launcher dies without
forwarding anything (SIGKILL) is SIGKILLed too, as if it had been the launcher; SIGTERM to the server forwards SIGTERM to
every child, waits a bounded time, then exits.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# What every flow run of this project imports; loading them here is the whole point.
PRELOAD = (
    "prefect",
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.concurrency.sync",
    "prefect.deployments.flow_runs",
    "dbt.cli.main",
    "dbt.adapters.duckdb",
    "dbt.adapters.postgres",
    "duckdb",
    "sqlalchemy",
    "clickstream.store_run",
    "clickstream.orchestrator",
)


@dataclass
class Child:
    pid: int
    conn: socket.socket


@dataclass
class Request:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    fds: list[int]


def preload(modules: tuple[str, ...] = PRELOAD) -> list[str]:
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        loaded.append(name)
    return loaded


def _read_request(conn: socket.socket) -> Request | None:
    msg, fds, _flags, _addr = socket.recv_fds(conn, 1 << 20, 3)
    if len(msg) < 4 or len(fds) != 3:
        for fd in fds:
            os.close(fd)
        return None
    (size,) = struct.unpack("!I", msg[:4])
    body = bytearray(msg[4:])
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            return None
        body.extend(chunk)
    data = json.loads(bytes(body))
    return Request(argv=data["argv"], env=data["env"], cwd=data["cwd"], fds=list(fds))


def _become_flow_run(req: Request) -> None:
    """In the forked child: take over the launcher's stdio, env and cwd."""
    for target, fd in enumerate(req.fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    os.environ.clear()
    os.environ.update(req.env)
    os.chdir(req.cwd)
    if req.cwd not in sys.path:
        sys.path.insert(0, req.cwd)
    sys.argv = ["prefect.engine", *req.argv]
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    # Settings were read from the server's environment at import: re-read them.
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()


def serve(socket_path: Path) -> Request | None:
    """Serve until SIGTERM. Returns a Request only in a forked child (which then runs it)."""
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        socket_path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(socket_path))
    listener.listen(64)
    listener.setblocking(False)

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stopping: list[int] = []
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))

    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, "accept")
    sel.register(wake_r, selectors.EVENT_READ, "wake")
    children: dict[int, Child] = {}
    stop_deadline: float | None = None
    print(f"warm server ready on {socket_path} (pid {os.getpid()})", flush=True)

    while True:
        if stopping and stop_deadline is None:
            stop_deadline = time.monotonic() + 20
            for child in children.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGTERM)
        if stop_deadline is not None and (not children or time.monotonic() > stop_deadline):
            for child in children.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGKILL)
            with contextlib.suppress(FileNotFoundError):
                socket_path.unlink()
            return None
        for key, _ in sel.select(timeout=1.0):
            if key.data == "wake":
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 4096)
            elif key.data == "accept":
                with contextlib.suppress(BlockingIOError):
                    conn, _ = listener.accept()
                    conn.setblocking(True)
                    try:
                        req = _read_request(conn)
                    except (OSError, ValueError):
                        req = None
                    if req is None or stopping:
                        conn.close()
                        continue
                    pid = os.fork()
                    if pid == 0:
                        sel.close()
                        listener.close()
                        os.close(wake_r)
                        os.close(wake_w)
                        for other in children.values():
                            other.conn.close()
                        conn.close()
                        return req
                    for fd in req.fds:
                        os.close(fd)
                    conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
                    run_id = req.argv[0] if req.argv else req.env.get("PREFECT__FLOW_RUN_ID", "?")
                    print(f"forked pid {pid} for flow run {run_id}", flush=True)
                    children[pid] = Child(pid, conn)
                    sel.register(conn, selectors.EVENT_READ, pid)
            else:
                # A launcher vanished before its run ended (SIGKILL: it could not forward
                # anything). The launcher is the run as far as the worker knows, so the
                # run dies the same way.
                child = children.get(key.data)
                if child is not None:
                    with contextlib.suppress(OSError):
                        if child.conn.recv(1) == b"":
                            sel.unregister(child.conn)
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(child.pid, signal.SIGKILL)
        _reap(children, sel)


def _reap(children: dict[int, Child], sel: selectors.BaseSelector) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        child = children.pop(pid, None)
        if child is None:
            continue
        if os.WIFSIGNALED(status):
            msg = {"signal": os.WTERMSIG(status)}
        else:
            msg = {"code": os.WEXITSTATUS(status)}
        with contextlib.suppress(OSError, KeyError, ValueError):
            sel.unregister(child.conn)
        with contextlib.suppress(OSError):
            child.conn.sendall(json.dumps(msg).encode() + b"\n")
        child.conn.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m clickstream.warm SOCKET_PATH", file=sys.stderr)
        return 2
    started = time.monotonic()
    loaded = preload()
    print(f"preloaded {len(loaded)} modules in {time.monotonic() - started:.1f}s", flush=True)
    req = serve(Path(argv[0]))
    if req is None:
        return 0
    _become_flow_run(req)
    import runpy
    import warnings

    # runpy notes that prefect.engine is already imported (preloaded): expected here.
    warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
    code = 0
    try:
        runpy.run_module("prefect.engine", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    _exit_forked_child(code)
    return code  # not reached


def _exit_forked_child(code: int) -> None:
    """Python's shutdown (threads joined, atexit: Prefect flushes its logs and events), then
    ``os._exit``. C++ static destructors must not run in a forked child: DuckDB's, built
    in the warm server before the fork, abort the process ("terminate called without an
    active exception", SIGABRT), which made the worker see a crash after the run ended."""
    import atexit
    import threading

    try:
        threading._shutdown()  # type: ignore[attr-defined]  # what interpreter exit does first
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
