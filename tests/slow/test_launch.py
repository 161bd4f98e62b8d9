"""The warm launcher without a Prefect server: both paths reach prefect.engine with the
launcher's argv, stdio, environment and working directory, and exit with its code.
Robustness, authentication and exit-status details are in test_warm_server.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clickstream.local.stack import stop_pid

BOGUS_RUN_ID = "not-a-flow-run-id"


def _launch(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "clickstream.launch", BOGUS_RUN_ID],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def warm_server(tmp_path):
    sockdir = tmp_path / "warm"
    sockdir.mkdir(mode=0o700)
    sock = sockdir / "warm.sock"
    log = open(tmp_path / "warm.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "clickstream.warm", str(sock)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
    )
    deadline = time.monotonic() + 120
    while "warm server ready" not in (tmp_path / "warm.log").read_text():
        assert proc.poll() is None, (tmp_path / "warm.log").read_text()
        assert time.monotonic() < deadline, "warm server did not start"
        time.sleep(0.2)
    yield sock
    stop_pid(proc.pid, grace=10)
    log.close()


def test_cold_path_execs_the_stock_engine(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CLICKSTREAM_WARM_SOCKET"}
    proc = _launch(tmp_path, env)
    assert proc.returncode == 1
    assert "Invalid flow run id" in proc.stderr + proc.stdout
    assert BOGUS_RUN_ID in proc.stderr + proc.stdout


def test_missing_socket_falls_back_to_cold_and_says_so_once(tmp_path):
    sockdir = tmp_path / "warm"
    sockdir.mkdir(mode=0o700)
    (sockdir / "token").write_text("0" * 64)
    (sockdir / "token").chmod(0o600)
    env = {**os.environ, "CLICKSTREAM_WARM_SOCKET": str(sockdir / "nobody-listens.sock")}
    proc = _launch(tmp_path, env)
    assert proc.returncode == 1
    assert "Invalid flow run id" in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("clickstream.launch:")]
    assert lines == [
        f"clickstream.launch: no warm server at {sockdir / 'nobody-listens.sock'}; "
        "starting the run cold"
    ]


def test_warm_path_forks_the_engine_with_the_launchers_stdio_and_exit_code(tmp_path, warm_server):
    env = {**os.environ, "CLICKSTREAM_WARM_SOCKET": str(warm_server)}
    proc = _launch(tmp_path, env)
    out = proc.stderr + proc.stdout
    # The forked engine wrote to the launcher's stderr and its exit code came back.
    assert proc.returncode == 1, out
    assert "Invalid flow run id" in out and BOGUS_RUN_ID in out
    # It was forked by the warm server (not the cold fallback), which stays for the next run.
    assert f"for flow run {BOGUS_RUN_ID}" in (tmp_path / "warm.log").read_text()
    again = _launch(tmp_path, env)
    assert again.returncode == 1 and "Invalid flow run id" in again.stderr + again.stdout
