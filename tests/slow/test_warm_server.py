"""The warm server and launcher against bad clients, other users, dead and stale servers.

No Prefect server: the server runs from a copy of the launcher/server modules in tmp_path
(so edits to the checkout while tests run do not make it stale) and forks ``warm_probe``
(``CLICKSTREAM_WARM_ENTRY``) instead of ``prefect.engine``. A line "probe-start" in a
launch's output means the run was forked warm; the cold fallback runs the real engine.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import clickstream
from clickstream.local.stack import stop_pid
from clickstream.warm import server as warm

SRC = Path(clickstream.__file__).parent
PROBE = """
import os, sys, time
cmd = sys.argv[1] if len(sys.argv) > 1 else ""
print(f"probe-start pid={os.getpid()} ppid={os.getppid()} cmd={cmd}", flush=True)
if os.environ.get("PROBE_LOG"):
    with open(os.environ["PROBE_LOG"], "a") as f:
        f.write(f"started {cmd}\\n")
kind, _, arg = cmd.partition(":")
if kind == "exit":
    sys.exit(int(arg))
if kind == "kill":
    os.kill(os.getpid(), int(arg))
    time.sleep(5)
if kind == "sleep":
    time.sleep(float(arg))
if kind == "log":
    from prefect.logging import get_logger
    from prefect.settings import get_current_settings
    print("settings-level", get_current_settings().logging.level, flush=True)
    get_logger("probe").debug("probe-debug-line")
    get_logger("probe").info("probe-info-line")
    get_logger("probe").warning("probe-warning-line")
if kind == "duckdb":
    import duckdb
    con = duckdb.connect(arg)  # left open: interpreter exit must finalise it
    con.execute("create table t as select 42 as x")
if kind == "version":
    import clickstream.probe_version as v
    print("probe-version", v.VERSION, flush=True)
"""
NOBODY = 65534


def copy_package(root: Path) -> Path:
    """The launcher and server modules, alone, importable from ``root`` (PYTHONPATH)."""
    pkg = root / "clickstream"
    (pkg / "warm").mkdir(parents=True)
    for name in (
        "__init__.py",
        "launch.py",
        "warm/__init__.py",
        "warm/__main__.py",
        "warm/server.py",
    ):
        shutil.copy2(SRC / name, pkg / name)
    (root / "warm_probe.py").write_text(PROBE)
    return root


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKSTREAM_WARM")}
    env.pop("PYTHONPATH", None)
    return {**env, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class Warm:
    proc: subprocess.Popen
    sock: Path
    log: Path
    root: Path  # PYTHONPATH of server and launchers
    workdir: Path  # the runs' working directory
    env: dict[str, str] = field(default_factory=dict)  # launchers' environment

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def server_pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"warm server ready on \S+ \(pid (\d+)", self.text())]

    def wait_ready(self, count: int = 1, timeout: float = 90) -> int:
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"warm server exited {self.proc.returncode}:\n{self.text()}")
            pids = self.server_pids()
            return pids[count - 1] if len(pids) >= count else None

        return wait_until(ready, timeout, f"warm server #{count} to be ready:\n{self.text()}")

    def launch_env(self, **extra: str) -> dict[str, str]:
        return {**self.env, **extra}

    def launch(self, *argv: str, env: dict[str, str] | None = None, timeout: float = 60):
        return subprocess.run(
            [sys.executable, "-m", "clickstream.launch", *argv],
            env=env or self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def token(self) -> str:
        path = self.sock.parent / "token"
        return path.read_text().strip() if path.exists() else "no-token-file"

    def fingerprint(self) -> str:
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                "from clickstream import launch; print(launch.code_fingerprint())",
            ],
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=30,
        )
        return proc.stdout.strip() or "no-fingerprint"

    def body(self, **override) -> dict:
        body = {
            "v": 1,
            "token": self.token(),
            "fingerprint": self.fingerprint(),
            "argv": ["exit:0"],
            "env": {**self.env, "PROBE_LOG": str(self.workdir / "probe.log")},
            "cwd": str(self.workdir),
            "umask": 0o022,
        }
        body.update(override)
        return body

    def started(self) -> list[str]:
        log = self.workdir / "probe.log"
        return log.read_text().splitlines() if log.exists() else []


@pytest.fixture
def start_warm(tmp_path) -> Iterator:
    started: list[Warm] = []

    def start(
        *,
        preload: str = "",
        extra_env: dict[str, str] | None = None,
        root: Path | None = None,
        sock: Path | None = None,
        wait: bool = True,
    ) -> Warm:
        n = len(started)
        root = root or copy_package(tmp_path / f"root{n}")
        if sock is None:
            sockdir = tmp_path / f"sock{n}"
            sockdir.mkdir(mode=0o700)
            sock = sockdir / "warm.sock"
        workdir = tmp_path / f"work{n}"
        workdir.mkdir(exist_ok=True)
        env = {**base_env(), "PYTHONPATH": str(root)}
        server_env = {
            **env,
            "CLICKSTREAM_WARM_PRELOAD": preload,
            "CLICKSTREAM_WARM_ENTRY": "warm_probe",
            **(extra_env or {}),
        }
        log_path = tmp_path / f"warm{n}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "clickstream.warm", str(sock)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=server_env,
                cwd=workdir,
            )
        srv = Warm(
            proc, sock, log_path, root, workdir, {**env, "CLICKSTREAM_WARM_SOCKET": str(sock)}
        )
        started.append(srv)
        if wait:
            srv.wait_ready()
        return srv

    yield start
    for srv in started:
        stop_pid(srv.proc.pid, grace=10)


def assert_warm(srv: Warm, *argv: str) -> subprocess.CompletedProcess:
    started = time.monotonic()
    proc = srv.launch(*(argv or ("exit:0",)), timeout=30)
    out = proc.stdout + proc.stderr
    assert "probe-start" in out, f"not forked warm:\n{out}\n--- server log:\n{srv.text()}"
    assert time.monotonic() - started < 10, "a warm start took too long"
    return proc


# -- raw clients ---
def connect(path: Path, timeout: float = 10) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    return s


def send_request(s: socket.socket, body: bytes | dict, fds: list[int]) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    payload = struct.pack("!I", len(raw)) + raw
    sent = socket.send_fds(s, [payload], fds) if fds else 0
    if sent < len(payload):
        s.sendall(payload[sent:])


def read_reply(s: socket.socket) -> tuple[dict | None, list[int]]:
    buf, fds = b"", []
    while b"\n" not in buf:
        try:
            chunk, got, _, _ = socket.recv_fds(s, 4096, 4)
        except (ConnectionResetError, BrokenPipeError):
            break
        fds += got
        if not chunk:
            break
        buf += chunk
    return (json.loads(buf.partition(b"\n")[0]) if b"\n" in buf else None), fds


def pipe_closed_everywhere(read_end: int, timeout: float) -> bool:
    """True once every copy of the pipe's write end is closed (read gives EOF)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([read_end], [], [], max(0.0, deadline - time.monotonic()))
        if ready and os.read(read_end, 4096) == b"":
            return True
    return False


# -- 1. one bad client must not stop warm starts ---
def test_an_idle_client_does_not_delay_other_runs_and_is_dropped(start_warm):
    srv = start_warm()
    idle = connect(srv.sock)
    try:
        assert_warm(srv)  # while the idle client sits there
        idle.settimeout(warm.REQUEST_SECONDS + 5)
        started = time.monotonic()
        try:
            data = idle.recv(4096)
        except ConnectionResetError:
            data = b""
        assert time.monotonic() - started <= warm.REQUEST_SECONDS + 2
        assert data == b"" or b'"ok": false' in data
    finally:
        idle.close()
    wait_until(lambda: "no complete request within" in srv.text(), 5, "the rejection log line")
    assert_warm(srv)


MALFORMED = {
    "empty-object": b"{}",
    "not-json": b"\xff not json",
    "json-list": b"[1, 2]",
    "wrong-protocol": {"v": 99},
    "argv-not-list": {"argv": "exit:0"},
    "env-not-strings": {"env": {"A": 1}},
    "relative-cwd": {"cwd": "relative/dir"},
    "missing-cwd": {"cwd": "/nonexistent/dir"},
    "nul-in-env": {"env": {"A": "x\x00y"}},
    "bad-umask": {"umask": "022"},
    "bad-token": {"token": "0" * 64},
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_request_is_rejected_its_descriptors_closed_and_serving_goes_on(
    start_warm, case
):
    srv = start_warm()
    spec = MALFORMED[case]
    body = spec if isinstance(spec, bytes) else srv.body(**spec)
    r, w = os.pipe()
    try:
        with connect(srv.sock) as s:
            send_request(s, body, [w, w, w])
            os.close(w)
            w = -1
            reply, fds = read_reply(s)
        for fd in fds:
            os.close(fd)
        assert reply is not None and reply.get("ok") is False, f"not refused: {reply}"
        # The server closed the three descriptors it received (else the pipe stays open).
        assert pipe_closed_everywhere(r, 5), "the server kept the rejected request's descriptors"
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)
    assert "rejected client" in srv.text()
    assert srv.started() == [] and "forked" not in srv.text()
    assert_warm(srv)


def test_framing_errors_are_rejected_and_serving_goes_on(start_warm):
    srv = start_warm()
    with connect(srv.sock) as s:  # no descriptors at all
        send_request(s, srv.body(), [])
        assert (read_reply(s)[0] or {}).get("ok") is False
    with connect(srv.sock) as s:  # announces more than the limit
        s.sendall(struct.pack("!I", warm.MAX_REQUEST + 1))
        assert (read_reply(s)[0] or {}).get("ok") is False
    with connect(srv.sock) as s:  # five descriptors
        send_request(s, srv.body(), [0, 1, 2, 0, 1])
        reply, fds = read_reply(s)
        assert reply["ok"] is False and not fds
    with connect(srv.sock) as s:  # closes halfway through the request
        s.sendall(struct.pack("!I", 1000) + b'{"v": 1')
    assert srv.started() == []
    wait_until(lambda: srv.text().count("rejected client") >= 4, 10, "four rejection lines")
    assert_warm(srv)


def test_a_launcher_that_dies_mid_handshake_leaves_no_run_and_serving_goes_on(start_warm):
    srv = start_warm()
    # Gone right after sending its request (before the reply).
    with connect(srv.sock) as s:
        send_request(s, srv.body(argv=["exit:0"]), [0, 1, 2])
    # Gone after the reply (it got the pidfd) but before confirming with "go".
    with connect(srv.sock) as s:
        send_request(s, srv.body(argv=["exit:0"]), [0, 1, 2])
        reply, fds = read_reply(s)
    assert reply is not None and reply["ok"] is True and len(fds) == 1
    pidfd = fds[0]
    try:
        # The unstarted child is killed at once: its pidfd becomes readable (it exited).
        assert select.select([pidfd], [], [], 5)[0], "the unconfirmed child was left alive"
    finally:
        os.close(pidfd)
    wait_until(lambda: srv.text().count("mid-handshake") >= 2, 10, "both aborts logged")
    assert srv.started() == [], "a run started without its launcher"
    assert_warm(srv)


# -- 2. authentication ---
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a second uid")

NOBODY_CLIENT = """
import json, os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print("connect-failed", exc.errno, flush=True)
    sys.exit(0)
body = json.dumps({"v": 1, "token": sys.argv[2], "fingerprint": sys.argv[3], "argv": ["exit:0"],
                   "env": {"PATH": "/usr/bin"}, "cwd": "/", "umask": 18}).encode()
payload = struct.pack("!I", len(body)) + body
try:
    socket.send_fds(s, [payload[:1]], [0, 1, 2])
    s.sendall(payload[1:])
    print("reply", repr(s.recv(4096)), flush=True)
except OSError as exc:
    print("reply-failed", exc, flush=True)
"""


def as_nobody(*argv: str, **kw) -> subprocess.CompletedProcess:
    cmd = ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, **kw)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory another uid can reach (pytest's tmp_path is under a 0700 folder)."""
    d = Path(tempfile.mkdtemp(prefix="warm-test-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@needs_root
def test_another_uid_gets_no_fork_even_with_the_token(start_warm, shared_tmp):
    root = copy_package(shared_tmp / "root")
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    sockdir = shared_tmp / "sock"
    sockdir.mkdir(mode=0o700)
    srv = start_warm(root=root, sock=sockdir / "warm.sock")
    token, fingerprint = srv.token(), srv.fingerprint()
    # Normally the private directory alone keeps the other uid out.
    out = as_nobody(sys.executable, "-c", NOBODY_CLIENT, str(srv.sock), token, fingerprint)
    assert "connect-failed 13" in out.stdout, out.stdout + out.stderr
    # Opened up by mistake: the server's own peer-credential check still refuses it.
    sockdir.chmod(0o755)
    srv.sock.chmod(0o666)
    out = as_nobody(sys.executable, "-c", NOBODY_CLIENT, str(srv.sock), token, fingerprint)
    assert "connect-failed" not in out.stdout, out.stdout + out.stderr
    # Closed on it at accept: no answer at all, let alone a child's pid.
    assert "reply b''" in out.stdout or "reply-failed" in out.stdout, out.stdout
    wait_until(lambda: f"peer uid {NOBODY}" in srv.text(), 5, "the uid rejection line")
    assert "forked" not in srv.text()
    # And a launcher run by that uid does not trust a directory it does not own.
    env = {**srv.env, "HOME": "/nonexistent"}
    proc = as_nobody(sys.executable, "-m", "clickstream.launch", "exit:0", env=env, cwd="/")
    assert "probe-start" not in proc.stdout + proc.stderr
    assert "starting the run cold" in proc.stderr and f"owned by uid 0, not {NOBODY}" in proc.stderr


SQUATTER = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(8)
print("listening", flush=True)
s.settimeout(30)
conn, _ = s.accept()
conn.settimeout(5)
got = b""
try:
    while chunk := conn.recv(65536):
        got += chunk
except OSError:
    pass
print("received", len(got), flush=True)
"""


def test_a_squatted_socket_in_a_shared_directory_is_not_trusted(start_warm, tmp_path):
    srv = start_warm()  # only for the launcher environment (PYTHONPATH, probe)
    public = tmp_path / "public"
    public.mkdir(mode=0o755)
    public.chmod(0o1777)  # like /tmp
    (public / "token").write_text("0" * 64)
    (public / "token").chmod(0o600)
    sock = public / "warm.sock"
    squatter = subprocess.Popen(
        [sys.executable, "-c", SQUATTER, str(sock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert squatter.stdout.readline().strip() == "listening"
        proc = srv.launch("exit:0", env=srv.launch_env(CLICKSTREAM_WARM_SOCKET=str(sock)))
        assert "not trusting the warm socket" in proc.stderr and "mode 1777" in proc.stderr
        assert "starting the run cold" in proc.stderr
        assert "probe-start" not in proc.stdout
    finally:
        squatter.kill()
        out, _ = squatter.communicate(timeout=10)
    assert "received" not in out or "received 0" in out


@needs_root
def test_a_socket_served_by_another_uid_is_not_trusted(start_warm, shared_tmp):
    srv = start_warm()  # only for the launcher environment
    squat = shared_tmp / "squat"
    squat.mkdir(mode=0o700)
    os.chown(squat, NOBODY, NOBODY)
    sock = squat / "warm.sock"
    cmd = ["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]
    squatter = subprocess.Popen(
        [*cmd, sys.executable, "-c", SQUATTER, str(sock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert squatter.stdout.readline().strip() == "listening"
        # The directory now looks like ours in every respect but who listens in it.
        os.chown(squat, 0, 0)
        (squat / "token").write_text("0" * 64)
        (squat / "token").chmod(0o600)
        proc = srv.launch("exit:0", env=srv.launch_env(CLICKSTREAM_WARM_SOCKET=str(sock)))
        assert f"of uid {NOBODY}" in proc.stderr and "starting the run cold" in proc.stderr
        assert "probe-start" not in proc.stdout
        out, _ = squatter.communicate(timeout=15)
    finally:
        squatter.kill()
    assert "received 0" in out, out


def test_a_second_server_never_takes_over_a_live_socket_and_a_stale_one_is_replaced(start_warm):
    first = start_warm()
    second = start_warm(root=first.root, sock=first.sock, wait=False)
    assert second.proc.wait(timeout=60) == warm.EXIT_IN_USE, second.text()
    assert "another warm server holds" in second.text()
    assert_warm(first)  # still serving on its own socket
    # A dead server's socket file stays behind; the next server replaces it.
    os.killpg(first.proc.pid, signal.SIGKILL)
    first.proc.wait(timeout=10)
    assert first.sock.exists()
    proc = first.launch("exit:0")
    assert "connection refused" in proc.stderr and "starting the run cold" in proc.stderr
    third = start_warm(root=first.root, sock=first.sock)
    assert "removed the stale socket" in third.text()
    assert_warm(third)


# -- 3. exit status ---
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ("exit:0", 0),
        ("exit:3", 3),
        (f"kill:{int(signal.SIGKILL)}", -signal.SIGKILL),
        (f"kill:{int(signal.SIGTERM)}", -signal.SIGTERM),
    ],
)
def test_the_launcher_ends_the_way_its_run_ended(start_warm, argv, expected):
    srv = start_warm()
    proc = assert_warm(srv, argv)
    assert proc.returncode == expected, proc.stderr
    assert "Traceback" not in proc.stderr


def _start_sleeping_run(srv: Warm, seconds: float) -> tuple[subprocess.Popen, int]:
    launcher = subprocess.Popen(
        [sys.executable, "-m", "clickstream.launch", f"sleep:{seconds}"],
        env=srv.env,
        cwd=srv.workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    line = launcher.stdout.readline()
    assert line.startswith("probe-start"), line + launcher.stderr.read()
    return launcher, int(re.search(r"pid=(\d+)", line).group(1))


def _pidfds_of(pid: int) -> list[int]:
    """PIDs that process ``pid`` holds pidfds for."""
    held = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            m = re.search(r"^Pid:\s+(-?\d+)", f.read(), re.M)
        if m and os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[pidfd]":
            held.append(int(m.group(1)))
    return held


def test_signals_reach_the_run_through_a_pidfd_and_a_killed_launcher_takes_its_run(start_warm):
    srv = start_warm()
    launcher, run_pid = _start_sleeping_run(srv, 60)
    try:
        assert _pidfds_of(launcher.pid) == [run_pid]
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=10) == -signal.SIGTERM  # the run died of it, so do we
    finally:
        launcher.kill()
        launcher.communicate(timeout=10)
    launcher, run_pid = _start_sleeping_run(srv, 60)
    run = os.pidfd_open(run_pid)
    try:
        launcher.kill()  # SIGKILL: nothing to forward, the server kills the run
        launcher.communicate(timeout=10)
        assert select.select([run], [], [], 10)[0], "the run outlived its SIGKILLed launcher"
    finally:
        os.close(run)


def test_a_lost_server_makes_the_launcher_fail_not_succeed(start_warm):
    srv = start_warm()
    launcher, run_pid = _start_sleeping_run(srv, 3)
    try:
        server_pid = srv.server_pids()[-1]
        os.kill(server_pid, signal.SIGKILL)  # the run lives on and then exits 0
        _, err = launcher.communicate(timeout=30)
    finally:
        launcher.kill()
    assert launcher.returncode != 0
    assert f"warm server lost while run pid {run_pid} was running" in err
    assert err.count("clickstream.launch:") == 1


# -- 4. threads, logging ---
def test_the_preload_list_leaves_one_os_thread():
    code = (
        "import os, json\n"
        "from clickstream.warm import server as warm\n"
        "loaded = warm.preload(warm.PRELOAD)\n"
        "print(json.dumps({'loaded': loaded, 'threads': len(os.listdir('/proc/self/task'))}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=base_env()
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["threads"] == 1, result
    assert result["loaded"] == list(warm.PRELOAD), proc.stdout


def test_a_server_with_a_second_thread_refuses_to_fork(start_warm):
    srv = start_warm(preload="duckdb")  # DuckDB starts a native thread at import
    assert "forks are refused" in srv.text()
    proc = srv.launch("exit:0")
    assert "probe-start" not in proc.stdout
    assert "OS threads; refusing to fork" in proc.stderr and "starting the run cold" in proc.stderr
    assert "forked" not in srv.text()


def test_a_run_ends_with_a_normal_interpreter_exit(start_warm, tmp_path):
    srv = start_warm()
    db = tmp_path / "run.duckdb"
    proc = assert_warm(srv, f"duckdb:{db}")
    assert proc.returncode == 0, proc.stderr
    # os._exit would skip DuckDB's close: its write-ahead log would be left unmerged.
    assert db.exists() and not Path(f"{db}.wal").exists()


def test_the_runs_own_logging_settings_apply(start_warm):
    srv = start_warm(
        preload="prefect,prefect.engine,prefect.flow_engine",
        extra_env={"PREFECT_LOGGING_LEVEL": "WARNING"},
    )
    # The run's environment sets no level: Prefect's default (INFO), not the server's WARNING.
    proc = assert_warm(srv, "log")
    assert "probe-info-line" in proc.stderr and "probe-debug-line" not in proc.stderr, proc.stderr
    proc = srv.launch("log", env=srv.launch_env(PREFECT_LOGGING_LEVEL="DEBUG"))
    assert "settings-level DEBUG" in proc.stdout, proc.stdout + proc.stderr
    assert "probe-debug-line" in proc.stderr, proc.stderr
    proc = srv.launch("log", env=srv.launch_env(PREFECT_LOGGING_LEVEL="ERROR"))
    assert "probe-start" in proc.stdout and "probe-warning-line" not in proc.stderr, proc.stderr


# -- 5. stale code, supervision ---
def test_after_a_code_change_no_run_executes_old_modules(start_warm, tmp_path):
    root = copy_package(tmp_path / "root-versioned")
    version = root / "clickstream" / "probe_version.py"
    version.write_text("VERSION = 1\n")
    srv = start_warm(root=root, preload="clickstream.probe_version")
    assert "probe-version 1" in assert_warm(srv, "version").stdout
    version.write_text("VERSION = 22  # changed\n")
    proc = srv.launch("version")
    assert "probe-version 1" not in proc.stdout
    assert "stale code" in proc.stderr and "starting the run cold" in proc.stderr
    srv.wait_ready(count=2, timeout=60)  # the supervisor started a fresh server
    proc = assert_warm(srv, "version")
    assert "probe-version 22" in proc.stdout
    wait_until(lambda: "stale server drained" in srv.text(), 10, "the old server to exit")


def test_the_supervisor_restarts_a_dead_server(start_warm):
    srv = start_warm()
    os.kill(srv.server_pids()[0], signal.SIGKILL)
    srv.wait_ready(count=2, timeout=30)
    assert_warm(srv)


def test_the_supervisor_bounds_restarts_of_a_crashing_server(start_warm, tmp_path):
    root = copy_package(tmp_path / "root-crashing")
    (root / "crash_at_import.py").write_text("import os\nos._exit(1)\n")
    srv = start_warm(root=root, preload="crash_at_import", wait=False)
    time.sleep(8)
    starts = srv.text().count("started server pid")
    assert 3 <= starts <= 6, srv.text()  # backoff 0.5, 1, 2, 4 s; at most 5 restarts a minute
    assert warm.MAX_RESTARTS_PER_MINUTE == 5
    assert srv.proc.poll() is None  # still supervising, backing off


# -- stack: where the socket lives ---
class _FakePopen:
    def __init__(self, argv, env=None, **kw):
        self.pid = 999_999_999  # never a real process


def test_the_stack_puts_each_socket_in_a_fresh_private_directory(tmp_path, monkeypatch):
    from clickstream.local import stack as stack_mod

    monkeypatch.setattr(stack_mod.subprocess, "Popen", _FakePopen)
    long_state = tmp_path / ("x" * 80) / "state"  # too long for AF_UNIX under the stack dir
    socks, stacks = [], []
    try:
        for state in (tmp_path / "s", long_state, tmp_path / ("y" * 80) / "state"):
            stack = stack_mod.Stack(stack_mod.StackConfig(state_dir=state, port=1))
            stacks.append(stack)
            stack.start_worker(1)
            sock = stack.warm_socket(1)
            assert sock is not None and len(str(sock)) <= 100
            st = sock.parent.stat()
            assert st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o700
            socks.append(sock)
        assert len(set(socks)) == 3  # never a name another user could guess and bind first
        # A restarted worker whose warm server is gone gets a fresh directory.
        stacks[1].start_worker(1)
        assert stacks[1].warm_socket(1) != socks[1] and not socks[1].parent.exists()
    finally:
        for stack in stacks:
            stack.stop("warm-1")
    assert not any(sock.parent.exists() for sock in socks)
    assert all(stack.warm_socket(1) is None for stack in stacks)


def test_warming_dbt_leaves_the_server_able_to_fork():
    """The real preload plus warm_dbt, in a fresh interpreter: dbt parses the project and the
    process still has exactly one OS thread, so the server may fork (a dbt that starts a
    lasting thread during a parse fails this test instead of making every run start cold)."""
    script = (
        "import json, tempfile, os\n"
        "from clickstream import settings\nfrom clickstream.warm import server as warm\n"
        "warm.preload()\n"
        "before = set(os.listdir(tempfile.gettempdir()))\n"
        "msg = warm.warm_dbt(settings.dbt_project_dir())\n"
        "left = sorted(n for n in set(os.listdir(tempfile.gettempdir())) - before\n"
        "              if n.startswith('clickstream-warm-dbt-'))\n"
        "print(json.dumps({'msg': msg, 'threads': warm.thread_count(), 'left': left}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["msg"].startswith("dbt warmed"), result
    assert result["threads"] == 1, result
    assert result["left"] == [], result  # the scratch target directory is removed


def test_a_socket_counts_as_listening_only_while_a_process_listens(tmp_path):
    """What `Stack.wait_warm` waits for: a file left by a dead server is not a live server."""
    from clickstream.local.stack import unix_socket_listening

    path = tmp_path / "probe.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        assert not unix_socket_listening(path)  # bound, not listening yet
        sock.listen(1)
        assert unix_socket_listening(path)
    finally:
        sock.close()
    assert path.exists() and not unix_socket_listening(path)
