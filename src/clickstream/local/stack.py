"""A local Prefect stack: one server and N process workers as subprocesses, stopped by PID.

Used by ``make up`` / ``make down`` (through ``clickstream stack``) and by the end-to-end
test fixtures. Everything binds to 127.0.0.1, telemetry is off, leases survive a server
restart (filesystem lease storage), and workers poll every second.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from clickstream import settings
from clickstream.local import logwatch
from clickstream.names import WORK_POOL

PROFILES = ("sqlite", "postgres")
WARM_SOCKET_NAME = "warm.sock"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_is_free(port: int) -> bool:
    """Nothing listens there (TIME_WAIT leftovers do not count: uvicorn sets SO_REUSEADDR)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class StackConfig:
    state_dir: Path = field(default_factory=settings.state_dir)
    # The project the stack serves (prefect.yaml, stores/, flows/, dbt/): runs start there.
    project_dir: Path = field(default_factory=settings.project_dir)
    port: int = 4200
    profile: str = "sqlite"
    workers: int = 1
    # Tests turn the scheduler off so the 30-minute store schedules never fire mid-test.
    scheduler: bool = True
    database_url: str | None = None  # postgres profile: postgresql+asyncpg://...
    extra_env: dict[str, str] = field(default_factory=dict)
    # Fork flow runs from a pre-imported interpreter (clickstream.warm); False = cold starts.
    warm: bool = True
    # How long the server keeps ended flow runs (Prefect's minimum is more than an hour).
    retention_days: float = field(default_factory=lambda: settings.get().prefect_retention_days)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stack_dir(self) -> Path:
        return self.state_dir / "stack"

    @property
    def prefect_home(self) -> Path:
        return self.state_dir / "prefect"


def client_env(cfg: StackConfig) -> dict[str, str]:
    """Environment for anything that talks to this stack (CLI, deploy, workers, tests)."""
    return {
        "PREFECT_API_URL": cfg.api_url,
        "PREFECT_UI_URL": cfg.ui_url,
        "PREFECT_HOME": str(cfg.prefect_home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
        "CLICKSTREAM_STATE_DIR": str(cfg.state_dir),
        "CLICKSTREAM_PROJECT_DIR": str(cfg.project_dir),
    }


def server_env(cfg: StackConfig) -> dict[str, str]:
    db_url = cfg.database_url
    if cfg.profile == "sqlite" or not db_url:
        db_url = f"sqlite+aiosqlite:///{cfg.prefect_home / 'prefect.db'}"
    env = {
        **client_env(cfg),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(cfg.port),
        "PREFECT_API_DATABASE_CONNECTION_URL": db_url,
        # Leases on disk: a server restart does not lose them, so no slot stays taken.
        "PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE": (
            "prefect.server.concurrency.lease_storage.filesystem"
        ),
        # ENQUEUE re-checks a waiting run every 30 s by default; 5 s drains a store's queue
        # of regular/manual runs faster (backfills do not rely on it).
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
        # A run waiting for a dbt-global slot retries after the server's Retry-After, which
        # is capped at 30 s by default; 1 s hands a freed slot on at once.
        "PREFECT_SERVER_CONCURRENCY_MAXIMUM_CONCURRENCY_SLOT_WAIT_SECONDS": "1",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "true" if cfg.scheduler else "false",
        # Retention (README, "What running the schedules costs"): Prefect's vacuum deletes
        # top-level flow runs (with their task runs, states, logs and artifacts) this long
        # after they ended, and events after PREFECT_SERVER_EVENTS_RETENTION_PERIOD (7 days,
        # Prefect's default); by default it vacuums events only, so runs piled up forever.
        "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
        "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": str(int(cfg.retention_days * 86400)),
        "PREFECT_UI_API_URL": cfg.api_url,
    }
    return env


def worker_env(cfg: StackConfig) -> dict[str, str]:
    return {
        **client_env(cfg),
        # Poll for new runs every second (default 10 s): dispatch latency per partition.
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "10",
        "PREFECT_RUNNER_HEARTBEAT_FREQUENCY": "30",
        # The deployments' command is `python -m clickstream.launch`: this interpreter's.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{settings.inherited_path()}",
    }


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


class Stack:
    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.logs = cfg.state_dir / "logs"

    # -- process bookkeeping -------------------------------------------------------------
    def _pidfile(self, name: str) -> Path:
        return self.cfg.stack_dir / f"{name}.pid"

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> int:
        self.cfg.stack_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        # The log watch reads only what this stack life wrote: the first process started
        # while none of the stack's runs records every log's size, a later one (a restart)
        # its own log's if not recorded yet.
        if not any(process_alive(pid) for pid in self.pids().values()):
            logwatch.start_life(self.cfg.stack_dir, self.logs)
        logwatch.mark(self.cfg.stack_dir, self.logs / f"{name}.log")
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - child keeps the fd
        full_env = {**os.environ, **env, **self.cfg.extra_env}
        proc = subprocess.Popen(
            argv,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(self.cfg.project_dir),
            start_new_session=True,  # own process group: stop kills the flow runs it started
        )
        self._pidfile(name).write_text(str(proc.pid))
        return proc.pid

    def pids(self) -> dict[str, int]:
        out = {}
        if self.cfg.stack_dir.is_dir():
            for f in sorted(self.cfg.stack_dir.glob("*.pid")):
                with contextlib.suppress(ValueError):
                    out[f.stem] = int(f.read_text().strip())
        return out

    # -- lifecycle -----------------------------------------------------------------------
    def start_server(self, timeout: float = 120.0) -> None:
        self.cfg.prefect_home.mkdir(parents=True, exist_ok=True)
        # A restart on the same port may briefly find it still held by the old process.
        deadline = time.monotonic() + 15
        while not port_is_free(self.cfg.port) and time.monotonic() < deadline:
            time.sleep(0.5)
        if not port_is_free(self.cfg.port):
            raise RuntimeError(
                f"127.0.0.1:{self.cfg.port} is taken; `make down` or pick PORT=<free port>"
            )
        self._spawn(
            "server",
            [
                # `prefect server start` with SQLite transactions that take the write lock
                # first (BEGIN IMMEDIATE): without it trigger evaluation and worker
                # heartbeats fail with "database is locked" (see clickstream.local.prefect_server).
                sys.executable,
                "-m",
                "clickstream.local.prefect_server",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.cfg.port),
            ],
            server_env(self.cfg),
        )
        self.wait_healthy(timeout)

    def wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.pids().get("server")
            if pid and not process_alive(pid):
                raise RuntimeError(f"Prefect server exited; see {self.logs / 'server.log'}")
            try:
                with urllib.request.urlopen(f"{self.cfg.api_url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"Prefect server not healthy after {timeout}s; see {self.logs}")

    def warm_socket(self, n: int) -> Path | None:
        """The socket of warm server ``n`` as recorded at its start (None: none recorded)."""
        record = self.cfg.stack_dir / f"warm-{n}.dir"
        with contextlib.suppress(OSError):
            directory = Path(record.read_text().strip())
            if directory.is_absolute():
                return directory / WARM_SOCKET_NAME
        return None

    def _new_warm_dir(self, n: int) -> Path:
        """A fresh private directory (0700, random name) for warm server ``n``'s socket.

        Never a predictable path: another local user could bind it first and receive every
        launcher's environment. Under the stack folder when the socket path fits AF_UNIX's
        ~108 bytes, else under the system temp dir (still random and 0700).
        """
        self._remove_warm_dir(n)
        self.cfg.stack_dir.mkdir(parents=True, exist_ok=True)
        parent: Path | None = self.cfg.stack_dir
        if len(str(parent / f"clickstream-warm-{n}-xxxxxxxx" / WARM_SOCKET_NAME)) > 100:
            parent = None
        directory = Path(tempfile.mkdtemp(prefix=f"clickstream-warm-{n}-", dir=parent))
        (self.cfg.stack_dir / f"warm-{n}.dir").write_text(str(directory))
        return directory

    def _remove_warm_dir(self, n: int) -> None:
        sock = self.warm_socket(n)
        if sock is not None and sock.parent.name.startswith("clickstream-warm-"):
            shutil.rmtree(sock.parent, ignore_errors=True)
        (self.cfg.stack_dir / f"warm-{n}.dir").unlink(missing_ok=True)

    def start_worker(self, n: int = 1, warm: bool | None = None) -> int:
        """Start process worker ``n`` and, unless disabled, its warm server.

        The warm server (``clickstream.warm``) forks flow runs from an interpreter that has
        prefect and dbt imported already; ``clickstream.launch`` (the deployments' command)
        falls back to a cold ``python -m prefect.engine`` when it is not there.
        """
        name = f"worker-{n}"
        env = worker_env(self.cfg)
        if self.cfg.warm if warm is None else warm:
            # A restarted worker reuses a live warm supervisor: its server restarts by
            # itself when the code it preloaded changes (fingerprint check per run).
            running = self.pids().get(f"warm-{n}")
            sock = self.warm_socket(n)
            if not (running and process_alive(running) and sock is not None):
                sock = self._new_warm_dir(n) / WARM_SOCKET_NAME
                # The supervisor (`python -m clickstream.warm SOCKET`) restarts its server
                # when it dies; stop() ends the whole process group, runs included.
                self._spawn(f"warm-{n}", [sys.executable, "-m", "clickstream.warm", str(sock)], env)
            env = {**env, "CLICKSTREAM_WARM_SOCKET": str(sock)}
        return self._spawn(
            name,
            [
                _bin("prefect"),
                "worker",
                "start",
                "--pool",
                WORK_POOL,
                "--type",
                "process",
                "--name",
                f"{socket.gethostname()}-{name}",
            ],
            env,
        )

    def wait_warm(self, n: int, timeout: float = 120.0) -> bool:
        """Wait (bounded) until warm server ``n`` listens: it binds its socket only after
        preloading and warming dbt, and a run launched before that starts cold (correct,
        but several CPU-seconds dearer). False, with the reason printed, if it does not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sock = self.warm_socket(n)
            pid = self.pids().get(f"warm-{n}")
            if sock is None or pid is None or not process_alive(pid):
                print(f"warm server {n} is not running; its worker's runs start cold")
                return False
            if unix_socket_listening(sock):
                return True
            time.sleep(0.2)
        print(f"warm server {n} not listening after {timeout:.0f}s; runs start cold until it is")
        return False

    def up(self) -> None:
        self.start_server()
        for n in range(1, self.cfg.workers + 1):
            self.start_worker(n)
        if self.cfg.warm:
            for n in range(1, self.cfg.workers + 1):
                self.wait_warm(n)
        (self.cfg.stack_dir / "stack.json").write_text(
            json.dumps({"api_url": self.cfg.api_url, "ui_url": self.cfg.ui_url}, indent=2)
        )

    def stop(self, name: str, grace: float = 10.0) -> None:
        pid = self.pids().get(name)
        if pid is None:
            return
        stop_pid(pid, grace)
        self._pidfile(name).unlink(missing_ok=True)
        if name.startswith("warm-") and name[5:].isdigit():
            self._remove_warm_dir(int(name[5:]))

    def log_findings(self) -> list[logwatch.Finding]:
        """ERROR tracebacks this stack life's server, workers and warm servers logged that
        the allow-list does not cover (``clickstream.local.logwatch``)."""
        return logwatch.scan_logs(self.cfg.stack_dir, self.logs)

    def down(self) -> list[str]:
        stopped = []
        # Workers first (and their flow-run children), then the server.
        for name in sorted(self.pids(), key=lambda n: n == "server"):
            self.stop(name)
            stopped.append(name)
        return stopped


def unix_socket_listening(path: Path) -> bool:
    """A live process listens on this Unix socket path (Linux: /proc/net/unix lists bound
    sockets with the listening flag). A file left by a dead server does not count, and no
    connection is made (the warm server would log it as a rejected client)."""
    accept_con = 0x10000  # __SO_ACCEPTCON
    with contextlib.suppress(OSError), open("/proc/net/unix") as f:
        next(f, None)  # header
        for line in f:
            fields = line.split()
            if len(fields) >= 8 and fields[7] == str(path) and int(fields[3], 16) & accept_con:
                return True
    return False


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as dead.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def stop_pid(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group we started, wait, then SIGKILL it (workers ignore TERM)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not process_alive(pid):
                return
            time.sleep(0.2)
