"""Makespan: our orchestrator against the seed's gather + semaphore pattern, same stack.

One local stack (SQLite Prefect server, one process worker with its warm server, DuckDB),
a scratch project with ``stores`` synthetic stores, ``days`` days of generated data, and
``dbt-global`` = ``global_limit``. Each round runs both strategies over the same grid,
alternating which goes first; before each run the flow runs, ledger and warehouses are wiped
so both start from nothing.

- ``ours``: the deployed backfill orchestrator (lanes: one run per store, at most
  ``max_parallel`` = the dbt-global limit), triggered like the UI does (run_deployment).
- ``seed``: ../shared/seeds/000_a78d857de48793df.txt as written: asyncio.gather over
  run_deployment calls under asyncio.Semaphore(5), one call per (deployment, ds), each
  waiting for its run (run_deployment's default timeout=None, poll_interval=5), with the
  seed's run names, tags and idempotency keys. The seed is one script per deployment; here
  one gather covers every store deployment in deployment order (store 1's dates, then store
  2's, ...), so all stores share the one semaphore.

Figures come from the server's flow-run timestamps and the ledger's dbt work intervals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench.analysis import ChildTiming, ideal_makespan, max_overlap, overhead_breakdown
from clickstream import ledger
from clickstream.deployments import DBT_FLOW_NAME, deployment_full_name, orchestrator_full_name
from clickstream.registry import Store
from clickstream.scratch import make_project, synthetic_stores
from clickstream.stack import Stack, StackConfig, client_env, free_port

BIN = Path(sys.executable).parent
STRATEGIES = ("ours", "seed")
SEED_MAX_PARALLEL = 5


@dataclass
class StrategyRun:
    strategy: str
    round: int
    makespan: float
    ideal: float
    children: list[ChildTiming]
    duplicates: int
    max_work_overlap: int

    @property
    def ratio(self) -> float:
        return self.makespan / self.ideal if self.ideal else float("nan")


class BenchStack:
    """A scratch project + local stack owned by the benchmark process."""

    def __init__(self, root: Path, stores: list[Store], global_limit: int) -> None:
        self.root = root
        self.stores = stores
        self.global_limit = global_limit
        self.project = make_project(root / "project", stores)
        self.state = root / "state"
        os.environ["CLICKSTREAM_PROJECT_DIR"] = str(self.project)
        os.environ["CLICKSTREAM_STATE_DIR"] = str(self.state)
        os.environ.pop("CLICKSTREAM_STORES_DIR", None)
        self.cfg = StackConfig(state_dir=self.state, port=free_port(), scheduler=False)
        self.cfg.prefect_home.mkdir(parents=True, exist_ok=True)  # before prefect reads it
        self.stack = Stack(self.cfg)
        self.env = {**os.environ, **client_env(self.cfg), "COLUMNS": "200"}
        os.environ.update(client_env(self.cfg))

    def sh(self, *argv: str, timeout: float = 600) -> str:
        proc = subprocess.run(
            list(argv),
            env=self.env,
            cwd=str(self.project),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{argv} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc.stdout

    def up(self, start: date, end: date, events_per_day: int) -> None:
        self.stack.up()
        self.sh(str(BIN / "clickstream"), "bootstrap", "--dbt-global-limit", str(self.global_limit))
        self.sh(str(BIN / "prefect"), "--no-prompt", "deploy", "--all")
        self.sh(
            str(BIN / "clickstream"),
            "data",
            "generate",
            "--start",
            start.isoformat(),
            "--end",
            end.isoformat(),
            "--events-per-day",
            str(events_per_day),
        )

    def down(self) -> None:
        self.stack.down()

    def reset(self) -> None:
        """Forget every run, build and table: the next strategy starts from nothing."""

        async def wipe(client) -> None:
            while runs := await client.read_flow_runs(limit=200):
                for run in runs:
                    await client.delete_flow_run(run.id)

        asyncio.run(_with_client(wipe))
        # Rows, not the file: workers and this process keep the SQLite ledger open.
        with ledger.engine().begin() as conn:
            for table in reversed(ledger.metadata.sorted_tables):
                conn.execute(table.delete())
        shutil.rmtree(self.state / "warehouse", ignore_errors=True)


async def _with_client(fn):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await fn(client)


# -- the two strategies ---------------------------------------------------------------------
async def run_ours(stores: list[Store], start: date, end: date) -> None:
    from prefect.deployments import run_deployment

    run = await run_deployment(
        orchestrator_full_name(),
        parameters={
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
            "stores": [s.store_id for s in stores],
        },
        timeout=0,
    )
    await _wait_final(run.id)


async def run_seed(stores: list[Store], start: date, end: date) -> None:
    """The seed's main(), generalised from one deployment to a list of them."""
    import pendulum
    from prefect.deployments.flow_runs import run_deployment

    days = (end - start).days + 1
    dates = [pendulum.date(start.year, start.month, start.day).add(days=i) for i in range(days)]

    async def submit_one(deployment: str, ds):
        return await run_deployment(
            name=deployment,
            parameters={"ds": ds.to_date_string()},
            flow_run_name=f"backfill-{ds.to_date_string()}",
            scheduled_time=pendulum.now("UTC"),
            tags=["backfill"],
            idempotency_key=f"backfill:{deployment}:{ds.to_date_string()}",
        )

    sem = asyncio.Semaphore(SEED_MAX_PARALLEL)

    async def with_sem(deployment: str, ds):
        async with sem:
            return await submit_one(deployment, ds)

    deployments = [deployment_full_name(s) for s in stores]
    await asyncio.gather(*(with_sem(dep, d) for dep in deployments for d in dates))


async def _wait_final(flow_run_id, timeout: float = 3600) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while time.monotonic() < deadline:
            run = await client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                return
            await asyncio.sleep(1)
    raise TimeoutError(f"flow run {flow_run_id} not final after {timeout}s")


# -- measuring --------------------------------------------------------------------------------
def collect(strategy: str, rnd: int, t0: datetime, global_limit: int) -> StrategyRun:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async def read(client):
        runs, offset = [], 0
        while page := await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[DBT_FLOW_NAME])),
            limit=200,
            offset=offset,
        ):
            runs += page
            offset += len(page)
        return runs

    runs = asyncio.run(_with_client(read))
    builds = {b.flow_run_id: b for b in ledger.read_builds().values()}

    def rel(ts: datetime | None) -> float | None:
        if ts is None:
            return None
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        return (ts - t0).total_seconds()

    children = []
    for run in runs:
        build = builds.get(str(run.id))
        children.append(
            ChildTiming(
                store_id=str(run.parameters.get("store_id")),
                ds=str(run.parameters.get("ds")),
                state=run.state_type.value if run.state_type else "UNKNOWN",
                created=rel(run.created),
                start=rel(run.start_time),
                end=rel(run.end_time),
                body_start=rel(build.started_at) if build else None,
                work_start=rel(build.work_started_at) if build else None,
                work_end=rel(build.work_ended_at) if build else None,
            )
        )
    partitions = [(c.store_id, c.ds) for c in children]
    ends = [c.end for c in children if c.end is not None]
    work = [(c.work_start, c.work_end) for c in children if c.work_start is not None]
    return StrategyRun(
        strategy=strategy,
        round=rnd,
        makespan=max(ends, default=0.0),
        ideal=ideal_makespan(children, global_limit),
        children=sorted(children, key=lambda c: (c.store_id, c.created)),
        duplicates=len(partitions) - len(set(partitions)),
        max_work_overlap=max_overlap(work),
    )


def run_strategy(
    bench: BenchStack,
    strategy: str,
    rnd: int,
    start: date,
    end: date,
    stores: list[Store] | None = None,
) -> StrategyRun:
    stores = stores or bench.stores
    bench.reset()
    t0 = datetime.now(UTC)
    fn = run_ours if strategy == "ours" else run_seed
    asyncio.run(fn(stores, start, end))
    result = collect(strategy, rnd, t0, bench.global_limit)
    expected = len(stores) * ((end - start).days + 1)
    done = sum(1 for c in result.children if c.state == "COMPLETED")
    print(
        f"  round {rnd} {strategy}: {done}/{expected} completed, makespan {result.makespan:.1f}s,"
        f" ideal {result.ideal:.1f}s, ratio {result.ratio:.2f}",
        flush=True,
    )
    if done != expected:
        raise RuntimeError(f"{strategy}: only {done}/{expected} partitions completed")
    return result


def _restore_env(saved: dict[str, str], root: Path) -> None:
    os.environ.clear()
    os.environ.update(saved)
    shutil.rmtree(root, ignore_errors=True)


def run(
    stores: int = 4,
    days: int = 10,
    events_per_day: int = 100_000,
    global_limit: int = 2,
    rounds: int = 1,
    end: date = date(2026, 10, 31),
) -> dict:
    start = end - timedelta(days=days - 1)
    root = Path(tempfile.mkdtemp(prefix="clickstream-bench-"))
    saved = dict(os.environ)
    bench = BenchStack(root, synthetic_stores(stores), global_limit)
    results: list[StrategyRun] = []
    # Prefect reads its settings once per process: if anything imported prefect before this
    # (pytest does), the env set above is not seen. Point this process's client at our stack.
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with contextlib.ExitStack() as cleanup:
        cleanup.callback(_restore_env, dict(saved), root)
        cleanup.callback(bench.down)
        cleanup.enter_context(temporary_settings(updates={PREFECT_API_URL: bench.cfg.api_url}))
        t = time.monotonic()
        bench.up(start, end, events_per_day)
        print(f"  stack, deployments and data ready in {time.monotonic() - t:.0f}s", flush=True)
        for rnd in range(1, rounds + 1):
            order = STRATEGIES if rnd % 2 else tuple(reversed(STRATEGIES))
            for strategy in order:
                results.append(run_strategy(bench, strategy, rnd, start, end))
        # Dispatch overhead without contention: one store, one lane, nothing to wait for.
        probe = run_strategy(bench, "ours", 0, start, end, stores=bench.stores[:1])
    return {
        "stores": stores,
        "days": days,
        "events_per_day": events_per_day,
        "global_limit": global_limit,
        "rounds": rounds,
        "runs": results,
        "overhead": overhead_breakdown(probe.children),
        "overhead_in_grid": overhead_breakdown(
            [c for r in results if r.strategy == "ours" for c in r.children]
        ),
    }
