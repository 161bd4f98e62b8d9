"""Warm server: fork flow runs from an interpreter that has already imported their code.

A cold flow run spends seconds of CPU importing prefect and dbt before it does any work
(see bench/RESULTS.md). ``clickstream stack`` starts one warm server next to each process
worker. It imports all of that once, then serves requests from ``clickstream.launch`` on a
Unix socket: for each, it forks a child that takes the launcher's stdio, environment, umask
and working directory, re-reads Prefect's settings and logging from that environment and
runs ``prefect.engine`` exactly as the cold command would. The server never talks to the
Prefect API and never forks while it has a second OS thread.

Shape (after ``multiprocessing.forkserver`` and gunicorn's arbiter):

- ``python -m clickstream.warm SOCKET`` is the supervisor the stack starts: it runs the
  server below as its child and restarts it when it dies (backoff, at most
  ``MAX_RESTARTS_PER_MINUTE``) or reports that its code is stale.
- ``python -m clickstream.warm --serve SOCKET`` is one server. SOCKET's directory must be
  private to this uid (created 0700 if missing); the secret token lives there (0600). A
  server holds ``server.lock`` there and never unlinks a socket something answers on.
- Per connection: the peer must be this uid (``SO_PEERCRED``), the whole request must arrive
  within ``REQUEST_SECONDS``, its fields are validated, the token is compared in constant
  time and the launcher's code fingerprint must match the server's (else: "stale", and the
  server hands its path to a fresh one). Each connection is handled in its own error
  boundary; a rejected client gets one log line and its descriptors closed.
- The forked child waits on a gate until the launcher confirms (``go``) that it got the
  child's pidfd, so a launcher that dies mid-handshake leaves no run behind. A run whose
  launcher dies (SIGKILL) is SIGKILLed too; the launcher gets the run's exit status or
  terminating signal. SIGTERM to the server forwards SIGTERM to every run, waits a bounded
  time, then SIGKILLs what is left.

``CLICKSTREAM_WARM_PRELOAD`` (comma-separated modules) and ``CLICKSTREAM_WARM_ENTRY`` (the
module a child runs instead of ``prefect.engine``) in the server's own environment exist
for tests.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import hmac
import importlib
import json
import os
import secrets
import selectors
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from clickstream import launch

# What every flow run of this project imports; loading them here is the whole point. Nothing
# here may start a thread (DuckDB's scheduler does: runs import duckdb after the fork).
PRELOAD = (
    "prefect",
    "prefect.engine",
    "prefect.flow_engine",
    "prefect.concurrency.sync",
    "prefect.deployments.flow_runs",
    "dbt.cli.main",
    "dbt.adapters.postgres",
    "prefect_dbt.core.runner",
    "prefect_dbt.core.settings",
    "prefect_dbt.utilities",
    "sqlalchemy",
    "clickstream.pipelines.store_run",
    "clickstream.pipelines.backfill.run",
)
PRELOAD_ENV = "CLICKSTREAM_WARM_PRELOAD"
WARM_DBT_ENV = "CLICKSTREAM_WARM_DBT"  # "0": skip warm_dbt (the default preload only)
ENTRY_ENV = "CLICKSTREAM_WARM_ENTRY"
DEFAULT_ENTRY = "prefect.engine"

REQUEST_SECONDS = 5.0  # connect to complete request, and again reply to "go"
MAX_REQUEST = 1 << 20
MAX_PENDING = 64
STOP_GRACE = 20.0
LOCK_NAME = "server.lock"

EXIT_CONFIG = 2  # bad arguments or directory: restarting cannot help
EXIT_IN_USE = 3  # another server owns the socket: nothing to supervise
EXIT_STALE = 75  # handed over to a fresh server after a code change
MAX_RESTARTS_PER_MINUTE = 5

_START_CWD = os.getcwd()


def log(msg: str) -> None:
    print(f"warm[{os.getpid()}]: {msg}", flush=True)


def thread_count() -> int:
    """OS threads of this process (native ones too, which ``threading`` does not see)."""
    return len(os.listdir("/proc/self/task"))


def preload(modules: tuple[str, ...] = PRELOAD) -> list[str]:
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            log(f"preload: skipped {name} ({exc})")
            continue
        loaded.append(name)
    return loaded


def warm_dbt(project_dir: Path) -> str:
    """Run ``dbt parse`` of the project twice, into a scratch target directory, so that every
    forked run inherits what dbt builds lazily on first use in a process.

    dbt generates the (de)serialisers of its manifest classes (mashumaro) and the JSON
    schemas it validates configs against the first time a process needs them: measured here
    as 3-4 s of CPU in every forked run's first (and only) dbt invocation, more than the
    warehouse work of a small partition. The first parse builds the writers and schemas, the
    second reads the first's partial-parse file and builds the readers.

    It must leave no thread behind (the server never forks with a second OS thread): the
    postgres target needs no connection for a parse and imports no DuckDB, and the static
    parser (a Rust extension that keeps a thread pool) is off. The runs themselves keep
    their own settings; the scratch directory is removed.
    """
    import shutil
    import tempfile

    from dbt.cli.main import dbtRunner

    scratch = tempfile.mkdtemp(prefix="clickstream-warm-dbt-")
    args = [
        "parse",
        "--project-dir", str(project_dir),
        "--profiles-dir", str(project_dir),
        "--target", "postgres",
        "--target-path", scratch,
        "--log-path", scratch,
        "--no-static-parser",
        "--no-send-anonymous-usage-stats",
        "--quiet",
    ]  # fmt: skip
    started = time.process_time()
    try:
        for _ in range(2):
            res = dbtRunner().invoke(args)
            if not res.success:
                return f"dbt not warmed (parse failed: {res.exception})"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return f"dbt warmed in {time.process_time() - started:.1f}s of CPU"


def ensure_private_dir(directory: Path) -> None:
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"refusing to serve: cannot create {directory}: {exc}") from None
    problem = launch.private_dir_problem(str(directory))
    if problem:
        raise ConfigError(f"refusing to serve: {problem}")


def ensure_token(directory: Path) -> str:
    """The directory's secret token, created once (0600, published atomically by link)."""
    path = directory / launch.TOKEN_NAME
    if not path.exists():
        tmp = directory / f".{launch.TOKEN_NAME}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, secrets.token_hex(32).encode())
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):  # another server won the race: use theirs
            os.link(tmp, path)
        os.unlink(tmp)
    return launch.read_token(str(directory))


class ConfigError(Exception):
    exit_code = EXIT_CONFIG


class InUse(ConfigError):
    exit_code = EXIT_IN_USE


@dataclass
class Request:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    umask: int
    fds: list[int]
    token: str = field(repr=False, default="")
    fingerprint: str = ""

    @property
    def run_id(self) -> str:
        return self.argv[0] if self.argv else self.env.get("PREFECT__FLOW_RUN_ID", "?")


def _no_nul(value: str, what: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{what} contains a NUL byte")
    return value


def parse_request(body: bytes, fds: list[int]) -> Request:
    """Validate a launcher's request; ValueError says what is wrong with it."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"request is not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError("request is not a JSON object")
    if data.get("v") != launch.PROTOCOL:
        raise ValueError(f"protocol version {data.get('v')!r}, expected {launch.PROTOCOL}")
    token, fingerprint = data.get("token"), data.get("fingerprint")
    if not isinstance(token, str) or not isinstance(fingerprint, str):
        raise ValueError("token and fingerprint must be strings")
    argv = data.get("argv")
    if not isinstance(argv, list) or len(argv) > 256 or not all(isinstance(a, str) for a in argv):
        raise ValueError("argv must be a list of strings")
    env = data.get("env")
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise ValueError("env must map strings to strings")
    for k, v in env.items():
        if not k or "=" in k:
            raise ValueError(f"bad environment variable name {k!r}")
        _no_nul(k, "an environment variable name")
        _no_nul(v, f"environment variable {k}")
    for a in argv:
        _no_nul(a, "argv")
    cwd = data.get("cwd")
    if not isinstance(cwd, str) or not os.path.isabs(_no_nul(cwd, "cwd")):
        raise ValueError("cwd must be an absolute path")
    if not os.path.isdir(cwd):
        raise ValueError(f"cwd {cwd} is not a directory")
    umask = data.get("umask")
    if not isinstance(umask, int) or isinstance(umask, bool) or not 0 <= umask <= 0o777:
        raise ValueError("umask must be an integer in 0..0o777")
    if len(fds) != 3:
        raise ValueError(f"expected 3 descriptors (stdin, stdout, stderr), got {len(fds)}")
    return Request(argv, env, cwd, umask, list(fds), token, fingerprint)


class Rejected(Exception):
    """A client the server turns away (one log line, descriptors closed, serving goes on)."""


@dataclass(eq=False)
class Conn:
    sock: socket.socket | None
    peer_pid: int
    deadline: float
    state: str = "request"  # request -> ack -> running (or: aborted)
    buf: bytearray = field(default_factory=bytearray)
    fds: list[int] = field(default_factory=list)
    pid: int = 0
    gate: int = -1
    run_id: str = "?"


@dataclass
class Forked:
    """What ``serve`` returns in a forked child: the request and the gate to wait on."""

    req: Request
    gate: int


class Server:
    def __init__(self, socket_path: Path, notify_fd: int | None = None) -> None:
        self.path = socket_path
        self.dir = socket_path.parent
        self.notify_fd = notify_fd
        self.entry = os.environ.get(ENTRY_ENV) or DEFAULT_ENTRY
        self.sel = selectors.DefaultSelector()
        self.conns: set[Conn] = set()
        self.children: dict[int, Conn] = {}
        self.listener: socket.socket | None = None
        self.bound: tuple[int, int] | None = None
        self.lock_fd = -1
        self.stopping = False
        self.stop_deadline: float | None = None
        self.draining = False

    # -- start -------------------------------------------------------------------------------
    def start(self) -> None:
        ensure_private_dir(self.dir)
        # Before any import: a file changed while preloading makes the next request stale.
        # Imports may add to sys.path; recheck later against the same site dirs.
        self.sites = launch.site_dirs()
        self.fingerprint = launch.code_fingerprint(self.sites)
        try:
            self.token = ensure_token(self.dir)
        except OSError as exc:
            raise ConfigError(f"refusing to serve: no usable token in {self.dir}: {exc}") from None
        self.lock_fd = os.open(self.dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            # A POSIX record lock: held by this process only (forked runs do not inherit it)
            # and released by the kernel however the process ends.
            fcntl.lockf(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InUse(f"another warm server holds {self.dir / LOCK_NAME}") from None
        self._clear_stale_socket()
        modules = os.environ.get(PRELOAD_ENV)
        wanted = PRELOAD if modules is None else tuple(m for m in modules.split(",") if m)
        started = time.monotonic()
        loaded = preload(wanted)
        warmed = ""
        if modules is None and os.environ.get(WARM_DBT_ENV, "1") != "0":
            from clickstream import settings

            try:
                warmed = "; " + warm_dbt(settings.dbt_project_dir())
            except Exception as exc:  # a cold dbt is slower, never wrong
                warmed = f"; dbt not warmed ({type(exc).__name__}: {exc})"
        threads = thread_count()
        log(
            f"preloaded {len(loaded)} modules in {time.monotonic() - started:.1f}s{warmed}; "
            f"{threads} OS thread(s)"
            + ("" if threads == 1 else ": forks are refused, every run will start cold")
        )
        self._clear_stale_socket()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old_umask)
        st = os.stat(self.path)
        self.bound = (st.st_dev, st.st_ino)
        listener.listen(64)
        listener.setblocking(False)
        self.listener = listener
        self.uid = os.geteuid()

        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        self.sel.register(listener, selectors.EVENT_READ, "accept")
        self.sel.register(self.wake_r, selectors.EVENT_READ, "wake")
        log(f"warm server ready on {self.path} (pid {os.getpid()}, entry {self.entry})")

    def _clear_stale_socket(self) -> None:
        """Remove a socket nobody answers on; refuse to touch one somebody does."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ConfigError(f"{self.path} exists and is not a socket; not touching it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(2)
        try:
            probe.connect(str(self.path))
        except ConnectionRefusedError:
            self.path.unlink()
            log(f"removed the stale socket {self.path}")
            return
        except OSError as exc:
            raise InUse(
                f"cannot tell whether {self.path} is in use ({exc}); not taking it"
            ) from None
        finally:
            probe.close()
        raise InUse(f"a live server answers on {self.path}; not taking it over")

    def _on_stop_signal(self, *_: object) -> None:
        self.stopping = True

    # -- loop ---------------------------------------------------------------------------------
    def serve(self) -> Forked | int:
        """Serve until stopped. Returns an exit code, or a Forked in a forked child."""
        while True:
            if self.stopping and self.stop_deadline is None:
                self._begin_stop()
            if self.stop_deadline is not None and (
                not self.children or time.monotonic() > self.stop_deadline
            ):
                self._finish_stop()
                return 0
            if self.draining and not self.children and not self.stopping:
                log("stale server drained; exiting")
                return EXIT_STALE
            for key, _ in self.sel.select(timeout=self._timeout()):
                if key.data == "wake":
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 4096)
                elif key.data == "accept":
                    self._accept()
                else:
                    conn: Conn = key.data
                    try:
                        forked = self._on_readable(conn)
                    except Exception as exc:  # one client's problem never stops the server
                        self._drop(conn, f"{type(exc).__name__}: {exc}")
                        continue
                    if forked is not None:
                        return forked
            self._expire()
            self._reap()

    def _timeout(self) -> float:
        deadlines = [c.deadline for c in self.conns if c.state in ("request", "ack")]
        if not deadlines:
            return 1.0
        return max(0.0, min(1.0, min(deadlines) - time.monotonic()))

    def _accept(self) -> None:
        assert self.listener is not None
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. EMFILE: log, keep serving
                log(f"accept failed: {exc}")
                return
            pid: int | str = "?"
            try:
                pid, uid = launch.peer_uid(sock)
                if uid != self.uid:
                    raise Rejected(f"peer uid {uid} is not the server's uid {self.uid}")
                pending = sum(1 for c in self.conns if c.state == "request")
                if pending >= MAX_PENDING:
                    raise Rejected(f"{pending} clients already pending")
            except (Rejected, OSError) as exc:
                log(f"rejected client pid {pid}: {exc}")
                sock.close()
                continue
            sock.setblocking(False)
            conn = Conn(sock, pid, time.monotonic() + REQUEST_SECONDS)
            self.conns.add(conn)
            self.sel.register(sock, selectors.EVENT_READ, conn)

    def _on_readable(self, conn: Conn) -> Forked | None:
        assert conn.sock is not None
        if conn.state == "request":
            return self._read_request(conn)
        if conn.state == "ack":
            data = conn.sock.recv(16)
            if data == b"go\n":
                # A child that died at the gate (a signal forwarded before "go") still
                # gets its status reported when it is reaped.
                with contextlib.suppress(OSError):
                    os.write(conn.gate, b"g")
                os.close(conn.gate)
                conn.gate = -1
                conn.state = "running"
                log(f"forked pid {conn.pid} for flow run {conn.run_id}")
            elif data:
                self._abort(conn, f"expected 'go', got {data[:16]!r}")
            else:
                self._abort(conn, "launcher left before confirming")
            return None
        # running: the launcher says nothing more; EOF means it is gone.
        if conn.sock.recv(4096) == b"":
            # The launcher is the run as far as the worker knows and it could not forward
            # anything (SIGKILL): the run dies the same way. The PID is an unreaped child
            # of ours, so it cannot have been reused.
            log(f"launcher of pid {conn.pid} (flow run {conn.run_id}) is gone; killing the run")
            self._close(conn)
            with contextlib.suppress(ProcessLookupError):
                os.kill(conn.pid, signal.SIGKILL)
        return None

    def _read_request(self, conn: Conn) -> Forked | None:
        assert conn.sock is not None
        try:
            msg, anc, flags, _ = conn.sock.recvmsg(65536, socket.CMSG_SPACE(4 * 4))
        except (BlockingIOError, InterruptedError):
            return None
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                got = array.array("i")
                got.frombytes(data[: len(data) - len(data) % got.itemsize])
                conn.fds.extend(got)
        if flags & socket.MSG_CTRUNC:
            raise Rejected("too many descriptors")
        if not msg:
            raise Rejected("closed before sending a complete request")
        conn.buf.extend(msg)
        if len(conn.buf) < 4:
            return None
        (size,) = struct.unpack("!I", conn.buf[:4])
        if size > MAX_REQUEST:
            raise Rejected(f"request of {size} bytes is over the {MAX_REQUEST} limit")
        if len(conn.buf) < 4 + size:
            return None
        if len(conn.buf) > 4 + size:
            raise Rejected("bytes after the request")
        try:
            req = parse_request(bytes(conn.buf[4:]), conn.fds)
        except ValueError as exc:
            raise Rejected(str(exc)) from None
        conn.fds = []  # owned by req from here on
        conn.run_id = req.run_id
        try:
            return self._admit(conn, req)
        except BaseException:
            _close_fds(req.fds)
            raise

    def _admit(self, conn: Conn, req: Request) -> Forked | None:
        if not hmac.compare_digest(req.token.encode(), self.token.encode()):
            raise Rejected("bad token")
        if req.fingerprint != self.fingerprint:
            if launch.code_fingerprint(self.sites) != self.fingerprint:
                self._refuse(
                    conn,
                    req,
                    "stale code: the project or its venv changed since this warm server started; it restarts",
                )
                self._begin_drain()
            else:
                self._refuse(
                    conn,
                    req,
                    "the launcher's code fingerprint differs from the server's (another install?)",
                )
            return None
        if self.stopping or self.draining:
            self._refuse(conn, req, "warm server is shutting down")
            return None
        threads = thread_count()
        if threads != 1:
            self._refuse(conn, req, f"warm server has {threads} OS threads; refusing to fork")
            return None
        return self._fork(conn, req)

    def _fork(self, conn: Conn, req: Request) -> Forked | None:
        assert conn.sock is not None
        gate_r, gate_w = os.pipe()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        pid = os.fork()
        if pid == 0:
            try:
                return self._in_child(req, gate_r, gate_w)
            except BaseException:
                os._exit(70)  # never fall back into the server's loop as a second server
        os.close(gate_r)
        conn.pid, conn.gate, conn.state = pid, gate_w, "ack"
        conn.deadline = time.monotonic() + REQUEST_SECONDS
        self.children[pid] = conn
        _close_fds(req.fds)
        try:
            pidfd = os.pidfd_open(pid)
            try:
                reply = json.dumps({"ok": True, "pid": pid}).encode() + b"\n"
                if socket.send_fds(conn.sock, [reply], [pidfd]) != len(reply):
                    raise OSError("short write")
            finally:
                os.close(pidfd)
        except OSError as exc:
            self._abort(conn, f"could not hand over the child: {exc}")
        return None

    def _in_child(self, req: Request, gate_r: int, gate_w: int) -> Forked:
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.close(gate_w)
        self.sel.close()
        if self.listener is not None:
            self.listener.close()
        for fd in (self.wake_r, self.wake_w, self.lock_fd, self.notify_fd):
            if fd is not None and fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        for other in self.conns:
            if other.sock is not None:
                other.sock.close()
            _close_fds(other.fds)
            if other.gate >= 0:
                with contextlib.suppress(OSError):
                    os.close(other.gate)
        return Forked(req, gate_r)

    # -- ending connections --------------------------------------------------------------------
    def _close(self, conn: Conn) -> None:
        if conn.sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.sel.unregister(conn.sock)
            conn.sock.close()
            conn.sock = None
        _close_fds(conn.fds)
        conn.fds = []
        self.conns.discard(conn)

    def _refuse(self, conn: Conn, req: Request, reason: str) -> None:
        """A well-formed request the server will not fork for: the launcher runs cold."""
        _close_fds(req.fds)
        log(f"refused flow run {req.run_id} (client pid {conn.peer_pid}): {reason}")
        self._send_and_close(conn, {"ok": False, "reason": reason})

    def _drop(self, conn: Conn, reason: str) -> None:
        if conn.state == "request":
            log(f"rejected client pid {conn.peer_pid}: {reason}")
            self._send_and_close(conn, {"ok": False, "reason": reason})
        elif conn.state == "ack":
            self._abort(conn, reason)
        else:
            log(f"connection of pid {conn.pid} failed: {reason}")
            self._close(conn)
            with contextlib.suppress(ProcessLookupError):
                os.kill(conn.pid, signal.SIGKILL)

    def _send_and_close(self, conn: Conn, msg: dict) -> None:
        if conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.send(json.dumps(msg).encode() + b"\n")
        self._close(conn)

    def _abort(self, conn: Conn, reason: str) -> None:
        """Kill a forked child that never got its "go" (it has not started the run)."""
        log(f"launcher left mid-handshake ({reason}); killed unstarted pid {conn.pid}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(conn.pid, signal.SIGKILL)
        if conn.gate >= 0:
            os.close(conn.gate)
            conn.gate = -1
        conn.state = "aborted"
        self._close(conn)

    def _expire(self) -> None:
        now = time.monotonic()
        for conn in list(self.conns):
            if conn.deadline > now:
                continue
            if conn.state == "request":
                self._drop(conn, f"no complete request within {REQUEST_SECONDS:.0f}s")
            elif conn.state == "ack":
                self._abort(conn, f"no 'go' within {REQUEST_SECONDS:.0f}s")

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            if os.WIFSIGNALED(status):
                msg = {"signal": os.WTERMSIG(status)}
            else:
                msg = {"code": os.WEXITSTATUS(status)}
            if conn.state == "running":
                log(f"pid {pid} (flow run {conn.run_id}) ended: {msg}")
                self._send_and_close(conn, msg)
            else:
                self._close(conn)

    # -- stale code, stop ------------------------------------------------------------------------
    def _release_path(self) -> None:
        """Stop accepting and give the socket path (and lock) up for a successor."""
        if self.listener is None:
            return
        self.sel.unregister(self.listener)
        self.listener.close()
        self.listener = None
        with contextlib.suppress(OSError):
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self.bound:  # never a successor's socket
                self.path.unlink()
        os.close(self.lock_fd)
        self.lock_fd = -1
        for conn in list(self.conns):
            if conn.state == "request":
                self._drop(conn, "warm server is shutting down")

    def _begin_drain(self) -> None:
        if self.draining:
            return
        self.draining = True
        self._release_path()
        log(
            f"code changed since start: handing {self.path} over; {len(self.children)} run(s) to finish"
        )
        if self.notify_fd is not None:
            with contextlib.suppress(OSError):
                os.write(self.notify_fd, f"stale {os.getpid()}\n".encode())

    def _begin_stop(self) -> None:
        log("stopping")
        self._release_path()
        self.stop_deadline = time.monotonic() + STOP_GRACE
        for conn in list(self.children.values()):
            if conn.state == "ack":
                self._abort(conn, "server stopping")
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(conn.pid, signal.SIGTERM)

    def _finish_stop(self) -> None:
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while self.children and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for conn in list(self.conns):
            self._close(conn)


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()


def _become_flow_run(req: Request) -> None:
    """In the forked child: take over the launcher's stdio, env, umask and cwd, and re-read
    Prefect's settings and logging from that environment (the server's were read at import)."""
    fds = [fcntl.fcntl(fd, fcntl.F_DUPFD, 3) for fd in req.fds]
    _close_fds(req.fds)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = sys.__stdin__ = os.fdopen(0, "r", closefd=False)
    sys.stdout = sys.__stdout__ = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = sys.__stderr__ = os.fdopen(2, "w", buffering=1, closefd=False)
    sys.argv = ["-m", *req.argv]  # runpy puts the module's path in argv[0], as `-m` does
    os.environ.clear()
    os.environ.update(req.env)
    os.umask(req.umask)
    os.chdir(req.cwd)
    # `python -m` puts its working directory first on sys.path; so does this run.
    if sys.path and sys.path[0] == _START_CWD:
        sys.path[0] = req.cwd
    elif req.cwd not in sys.path:
        sys.path.insert(0, req.cwd)
    if "prefect.context" in sys.modules:
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()
    if "prefect.logging.configuration" in sys.modules:
        from prefect.logging.configuration import PROCESS_LOGGING_CONFIG, setup_logging

        if PROCESS_LOGGING_CONFIG:  # else Prefect sets it up lazily, from this env already
            setup_logging(incremental=False)


def run_server(socket_path: Path, notify_fd: int | None) -> int:
    server = Server(socket_path, notify_fd)
    try:
        server.start()
    except ConfigError as exc:
        log(str(exc))
        return exc.exit_code
    outcome = server.serve()
    if isinstance(outcome, int):
        return outcome
    # A forked child: wait for the launcher's "go" (relayed through the gate).
    go = os.read(outcome.gate, 1)
    os.close(outcome.gate)
    if go != b"g":
        os._exit(1)  # the handshake failed: this child never became a run
    _become_flow_run(outcome.req)
    import runpy
    import warnings

    # runpy notes that prefect.engine is already imported (preloaded): expected here.
    warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
    # Exceptions and SystemExit propagate: the interpreter ends this process exactly as it
    # ends `python -m prefect.engine`.
    runpy.run_module(server.entry, run_name="__main__", alter_sys=True)
    return 0


# -- supervisor ------------------------------------------------------------------------------------
def supervise(socket_path: Path) -> int:
    """Run ``--serve`` as a child; restart it when it dies or hands over after a code change."""
    notify_r, notify_w = os.pipe()
    os.set_blocking(notify_r, False)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(1))
    signal.signal(signal.SIGCHLD, lambda *_: None)
    restarts: deque[float] = deque()

    def spawn() -> subprocess.Popen:
        cmd = [sys.executable, "-m", "clickstream.warm", "--serve", str(socket_path)]
        proc = subprocess.Popen(
            [*cmd, "--notify-fd", str(notify_w)], pass_fds=(notify_w,), stdin=subprocess.DEVNULL
        )
        log(f"supervisor: started server pid {proc.pid}")
        return proc

    def wait(seconds: float) -> str:
        sel = selectors.DefaultSelector()
        sel.register(notify_r, selectors.EVENT_READ)
        sel.register(wake_r, selectors.EVENT_READ)
        try:
            sel.select(timeout=seconds)
        finally:
            sel.close()
        with contextlib.suppress(BlockingIOError):
            os.read(wake_r, 4096)
        try:
            return os.read(notify_r, 4096).decode()
        except BlockingIOError:
            return ""

    current: subprocess.Popen | None = spawn()
    draining: list[subprocess.Popen] = []
    restart_at: float | None = None
    while not stopping:
        notes = wait(0.5)
        for line in notes.splitlines():
            if current is not None and line == f"stale {current.pid}":
                log(f"supervisor: server pid {current.pid} has stale code; starting a fresh one")
                draining.append(current)
                restarts.append(time.monotonic())
                current = spawn()
        for proc in list(draining):
            if proc.poll() is not None:
                draining.remove(proc)
        if current is not None and current.poll() is not None:
            code = current.returncode
            if code in (EXIT_CONFIG, EXIT_IN_USE):
                log(f"supervisor: server exited with {code}; restarting cannot help, giving up")
                _stop_all(draining)
                return code
            now = time.monotonic()
            while restarts and now - restarts[0] > 60:
                restarts.popleft()
            delay = min(30.0, 0.5 * 2 ** len(restarts))
            if len(restarts) >= MAX_RESTARTS_PER_MINUTE:
                delay = max(delay, 60 - (now - restarts[0]))
            log(
                f"supervisor: server pid {current.pid} exited ({_describe(code)}); restarting in {delay:.1f}s"
            )
            current, restart_at = None, now + delay
        if current is None and restart_at is not None and time.monotonic() >= restart_at:
            restarts.append(time.monotonic())
            current, restart_at = spawn(), None
    log("supervisor: stopping")
    _stop_all([p for p in (current, *draining) if p is not None])
    return 0


def _describe(returncode: int) -> str:
    return f"signal {-returncode}" if returncode < 0 else f"code {returncode}"


def _stop_all(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE + 5
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


USAGE = "usage: python -m clickstream.warm [--serve [--notify-fd N]] SOCKET_PATH"


def main(argv: list[str]) -> int:
    args = list(argv)
    serve_only = "--serve" in args
    if serve_only:
        args.remove("--serve")
    notify_fd = None
    if "--notify-fd" in args:
        i = args.index("--notify-fd")
        try:
            notify_fd = int(args[i + 1])
        except (IndexError, ValueError):
            print(USAGE, file=sys.stderr)
            return EXIT_CONFIG
        del args[i : i + 2]
    if len(args) != 1 or args[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return EXIT_CONFIG
    path = Path(args[0]).absolute()
    if serve_only:
        return run_server(path, notify_fd)
    return supervise(path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
