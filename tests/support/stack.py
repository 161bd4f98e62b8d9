"""A real local stack for end-to-end tests: Prefect server + process worker(s) on 127.0.0.1
(free port, scheduler off so store schedules never fire mid-test), bootstrap, `prefect deploy
--all`, generated landing data. Stopped by PID at the end of the session."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from uuid import UUID

from clickstream.local import logwatch
from clickstream.local.stack import Stack, StackConfig, client_env, free_port

BIN = Path(sys.executable).parent
DBT_GLOBAL_LIMIT = 2  # below the store count, so the global cap is what binds


@dataclass
class E2EStack:
    cfg: StackConfig
    stack: Stack
    env: dict[str, str]
    log: list[str] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)
    _client: object | None = field(default=None, repr=False)

    def run(
        self, *argv: str, timeout: float = 600, check: bool = False
    ) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            list(argv),
            env=self.env,
            cwd=str(self.cfg.project_dir),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        self.log.append(f"$ {' '.join(argv)}\n{proc.stdout}\n{proc.stderr}")
        if check and proc.returncode != 0:
            raise AssertionError(f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def cli(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(str(BIN / "clickstream"), *args, **kw)

    def prefect(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return self.run(str(BIN / "prefect"), "--no-prompt", *args, **kw)

    def api(self, coro_fn):
        """Run ``coro_fn(client)`` against this stack's API.

        One event loop thread and one client per stack, kept for its life: tests poll the
        API thousands of times, and a fresh loop, thread and client (with its TLS context)
        per call cost more CPU than the request. Callers may run an event loop of their own
        (Playwright's sync API does): the coroutine runs on the stack's thread either way."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, name="e2e-api", daemon=True).start()

        async def go():
            from prefect.client.orchestration import get_client

            with temporary_settings({PREFECT_API_URL: self.cfg.api_url}):
                if self._client is None:
                    self._client = get_client()
                    await self._client.__aenter__()
                return await coro_fn(self._client)

        return asyncio.run_coroutine_threadsafe(go(), self._loop).result()

    def close_api(self) -> None:
        loop, client = self._loop, self._client
        self._loop = self._client = None
        if loop is None:
            return
        if client is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(client.__aexit__(None, None, None), loop).result(
                    timeout=10
                )
        loop.call_soon_threadsafe(loop.stop)

    def down(self) -> None:
        """Stop the stack by PID (and this test process's API client), then fail if its
        Prefect logs show an ERROR traceback the allow-list does not cover."""
        self.close_api()
        self.stack.down()
        assert_logs_clean(self.stack)


def assert_logs_clean(stack: Stack) -> None:
    """Fail naming file, line and exception of every ERROR traceback the stack's server,
    workers and warm servers logged during its life (``clickstream.local.logwatch``)."""
    findings = stack.log_findings()
    if findings:
        raise AssertionError(logwatch.report(findings))


def start_e2e_stack(
    state_dir: Path,
    *,
    workers: int = 1,
    profile: str = "sqlite",
    extra_env=None,
    database_url=None,
    project_dir: Path | None = None,
    dbt_global_limit: int = DBT_GLOBAL_LIMIT,
    zombie_after_seconds: int | None = None,
    scheduler: bool = False,
) -> E2EStack:
    cfg = StackConfig(
        state_dir=state_dir,
        **({"project_dir": project_dir} if project_dir else {}),
        port=free_port(),
        profile=profile,
        workers=workers,
        # Off unless a test proves the schedules: store schedules must not fire mid-test.
        scheduler=scheduler,
        database_url=database_url,
        extra_env=dict(extra_env or {}),
    )
    stack = Stack(cfg)
    # COLUMNS: rich wraps at 80 columns without a terminal; keep messages on one line.
    env = {**os.environ, **client_env(cfg), **cfg.extra_env, "COLUMNS": "250"}
    handle = E2EStack(cfg, stack, env)
    try:
        stack.up()
        bootstrap = ["bootstrap", "--dbt-global-limit", str(dbt_global_limit)]
        if zombie_after_seconds:
            bootstrap += ["--zombie-after-seconds", str(zombie_after_seconds)]
        handle.cli(*bootstrap, check=True)
        handle.prefect("deploy", "--all", check=True, timeout=300)
    except BaseException:
        stack.down()
        raise
    return handle


def generate(handle: E2EStack, start: date, end: date, events_per_day: int = 1500) -> None:
    handle.cli(
        "data",
        "generate",
        "--start",
        start.isoformat(),
        "--end",
        end.isoformat(),
        "--events-per-day",
        str(events_per_day),
        check=True,
    )


async def child_runs(client, since=None):
    """Every run of the per-store dbt flow (optionally created after ``since``)."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    runs, offset = [], 0
    while True:
        page = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["clickstream-dbt-run"])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=200,
            offset=offset,
        )
        runs += page
        if len(page) < 200:
            break
        offset += 200
    if since is not None:
        runs = [r for r in runs if r.created and r.created >= since]
    return runs


def read_run(handle: E2EStack, run_id):
    """A flow run as the API reads it now."""

    async def go(client):
        return await client.read_flow_run(run_id)

    return handle.api(go)


@contextlib.contextmanager
def every_dbt_slot_held(handle: E2EStack, lease_seconds: float = 300):
    """Hold every ``dbt-global`` slot (under a lease, as a run does) until the block ends:
    store runs started inside it stay in flight, running and waiting for a slot."""
    from clickstream.names import GLOBAL_LIMIT_NAME

    async def take(client):
        limit = await client.read_global_concurrency_limit_by_name(GLOBAL_LIMIT_NAME)
        resp = await client.increment_concurrency_slots_with_lease(
            names=[GLOBAL_LIMIT_NAME],
            slots=limit.limit,
            mode="concurrency",
            lease_duration=lease_seconds,
        )
        return UUID(resp.json()["lease_id"])

    lease_id = handle.api(take)

    async def release(client):
        await client.release_concurrency_slots_with_lease(lease_id)

    try:
        yield lease_id
    finally:
        handle.api(release)


def queue_sample(handle: E2EStack) -> tuple[int, int]:
    """(waiting, in flight) runs of the store flow right now: waiting = Scheduled or Pending
    (AwaitingConcurrencySlot included), in flight = those plus Running."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    async def go(client):
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["clickstream-dbt-run"])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(
                        any_=[StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING]
                    )
                )
            ),
            limit=200,
        )
        return sum(1 for r in runs if r.state_type != StateType.RUNNING), len(runs)

    return handle.api(go)


def wait_for(predicate, timeout: float = 300, interval: float = 1.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextlib.contextmanager
def state_of(handle: E2EStack):
    """Point this process's ledger/landing reads at the stack's state folder for a while."""
    old = os.environ.get("CLICKSTREAM_STATE_DIR")
    os.environ["CLICKSTREAM_STATE_DIR"] = str(handle.cfg.state_dir)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("CLICKSTREAM_STATE_DIR", None)
        else:
            os.environ["CLICKSTREAM_STATE_DIR"] = old


def parent_run_id(cli_stdout: str) -> UUID:
    """The orchestrator run `clickstream backfill` triggered (from the URL it prints)."""
    return UUID(re.search(r"/runs/flow-run/([0-9a-f-]{36})", cli_stdout).group(1))
