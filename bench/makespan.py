"""Makespan: our orchestrator (1 and 7 days per child run) against the seed pattern, same stack.

One local stack (SQLite Prefect server, one process worker with its warm server, DuckDB),
a scratch project with synthetic stores, generated data, and ``dbt-global`` = ``global_limit``.
The grid's strategies run one after the other, each on its own copy of the grid: the same
number of stores with the same time zones and the same days, generated the same way (store
ids ``d1-01``, ``d7-01``, ``seed-01``, ...). So no idempotency key of one strategy can meet
another's and no flow run is deleted between strategies (deleting frees pages the next
strategy would reuse, hiding its database growth); each strategy reads only the runs created
after it was triggered. Before each, the ledger, the warehouses and dbt's target folders are
wiped.

- ``ours-d1`` / ``ours-d7``: the deployed backfill orchestrator with ``days_per_run`` 1 / 7
  (lanes: one child run per store at a time, at most 2 x dbt-global in flight; children in
  lean dbt mode), triggered like the UI does (run_deployment).
- ``seed``: ../shared/seeds/000_a78d857de48793df.txt as written: asyncio.gather over
  run_deployment calls under asyncio.Semaphore(5), one call per (deployment, ds), each
  waiting for its run (run_deployment's default timeout=None, poll_interval=5), with the
  seed's run names, tags and idempotency keys. It passes only ``ds``, so its runs take the
  store deployment's default ``dbt_mode="full"`` (a Prefect task per dbt node). The seed is
  one script per deployment; here one gather covers every store deployment in deployment
  order (store 1's dates, then store 2's, ...), so all stores share the one semaphore.

Also here, on the same stack: the one-lane probe (dispatch overhead without contention) and
the cost of a regular store run (``dbt_mode="full"``) against lean mode on one partition.

Figures come from the server's flow-run timestamps, the ledger (dbt work intervals and node
execution time) and the server's SQLite file (bench.prefect_db).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench import prefect_db
from bench.analysis import (
    ChildTiming,
    child_timings,
    ideal_makespan,
    max_overlap,
    overhead_breakdown,
)
from clickstream.adapters import ledger
from clickstream.core.stores import Store
from clickstream.local import logwatch
from clickstream.local.scratch import TIMEZONES, make_project
from clickstream.local.stack import Stack, StackConfig, client_env, free_port
from clickstream.names import DBT_FLOW_NAME, orchestrator_full_name, store_deployment

BIN = Path(sys.executable).parent
# name -> days_per_run (None: the seed pattern)
STRATEGIES: dict[str, int | None] = {"ours-d1": 1, "ours-d7": 7, "seed": None}
SEED_MAX_PARALLEL = 5


@dataclass
class StrategyRun:
    strategy: str
    days_per_run: int | None
    makespan: float
    ideal: float
    children: list[ChildTiming]
    partitions: int  # distinct store-days completed by this strategy's runs
    duplicates: int  # store-days built by more than one of its runs
    max_work_overlap: int
    db: prefect_db.DbGrowth
    # The whole machine's CPU from the trigger until the strategy's runs had ended
    # (/proc/stat: every process, the Prefect server and worker included): busy CPU-seconds
    # and the wall-clock span they were counted over.
    cpu_busy: float = 0.0
    cpu_span: float = 0.0

    @property
    def cpu_floor(self) -> float:
        """The shortest makespan this much CPU work allows on this machine's cores."""
        return self.cpu_busy / (os.cpu_count() or 1)

    @property
    def cpu_share(self) -> float:
        """How busy the machine's cores were over the span: busy / (cores x span)."""
        return self.cpu_floor / self.cpu_span if self.cpu_span else float("nan")

    @property
    def ratio(self) -> float:
        return self.makespan / self.ideal if self.ideal else float("nan")

    @property
    def node_seconds(self) -> float:
        return sum(c.node_seconds for c in self.children)

    @property
    def work_seconds(self) -> float:
        return sum(c.work for c in self.children)

    def node_ratio(self, global_limit: int) -> float:
        """makespan / (sum of dbt node execution time / G)."""
        ideal = self.node_seconds / global_limit
        return self.makespan / ideal if ideal else float("nan")


# Every log-watch finding of every bench stack this process ran (bench.run / bench.load).
LOG_FINDINGS: list[logwatch.Finding] = []


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
        os.environ.pop("CLICKSTREAM_LEDGER_URL", None)
        self.cfg = StackConfig(
            state_dir=self.state, project_dir=self.project, port=free_port(), scheduler=False
        )
        self.cfg.prefect_home.mkdir(parents=True, exist_ok=True)  # before prefect reads it
        self.stack = Stack(self.cfg)
        self.env = {**os.environ, **client_env(self.cfg), "COLUMNS": "250"}
        os.environ.update(client_env(self.cfg))

    @property
    def prefect_db(self) -> Path:
        return self.cfg.prefect_home / "prefect.db"

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

    def cli(self, *args: str, timeout: float = 600) -> str:
        return self.sh(str(BIN / "clickstream"), *args, timeout=timeout)

    def up(self) -> None:
        self.stack.up()
        self.cli("bootstrap", "--dbt-global-limit", str(self.global_limit))
        self.sh(str(BIN / "prefect"), "--no-prompt", "deploy", "--all")

    def generate(self, start: date, end: date, events_per_day: int, stores=None) -> None:
        ids = [s.store_id for s in (stores or self.stores)]
        self.cli(
            "data", "generate", "--start", start.isoformat(), "--end", end.isoformat(),
            "--events-per-day", str(events_per_day), *[a for i in ids for a in ("--stores", i)],
        )  # fmt: skip

    def down(self) -> None:
        self.stack.down()
        # The log watch: an ERROR traceback in the server's or workers' logs fails the
        # benchmark (bench.run and bench.load exit non-zero) after the stack is gone.
        findings = self.stack.log_findings()
        print(logwatch.report(findings), flush=True)
        LOG_FINDINGS.extend(findings)

    def reset(self) -> None:
        """Forget every build: the next strategy builds from nothing (runs stay: see above)."""
        # Rows, not the file: workers and this process keep the SQLite ledger open.
        with ledger.engine().begin() as conn:
            for table in reversed(ledger.metadata.sorted_tables):
                conn.execute(table.delete())
        shutil.rmtree(self.state / "warehouse", ignore_errors=True)
        shutil.rmtree(self.state / "dbt-target", ignore_errors=True)


async def _with_client(fn):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return await fn(client)


# -- the strategies ---------------------------------------------------------------------------
async def run_ours(stores: list[Store], start: date, end: date, days_per_run: int = 1) -> str:
    """Trigger the deployed orchestrator, wait for it; returns its final state's message."""
    from prefect.deployments import run_deployment

    run = await run_deployment(
        orchestrator_full_name(),
        parameters={
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
            "stores": [s.store_id for s in stores],
            "days_per_run": days_per_run,
        },
        timeout=0,
    )
    final = await _wait_final(run.id)
    if final.state_type is None or final.state_type.value != "COMPLETED":
        raise RuntimeError(f"orchestrator ended {final.state_type}: {final.state.message}")
    return final.state.message or ""


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

    deployments = [store_deployment(s.store_id) for s in stores]
    await asyncio.gather(*(with_sem(dep, d) for dep in deployments for d in dates))


async def _wait_final(flow_run_id, timeout: float = 3600, poll: float = 1.0):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    async with get_client() as client:
        while time.monotonic() < deadline:
            run = await client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                return run
            await asyncio.sleep(poll)
    raise TimeoutError(f"flow run {flow_run_id} not final after {timeout}s")


# -- measuring --------------------------------------------------------------------------------
def read_child_runs(since: datetime) -> list:
    """Runs of the store flow created at or after ``since`` (server time, same machine)."""
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

    return [r for r in asyncio.run(_with_client(read)) if r.created and r.created >= since]


def run_days(run) -> list[tuple[str, date]]:
    """The store-days a store run was asked to build (its ds .. ds_end parameters)."""
    p = run.parameters or {}
    first = date.fromisoformat(str(p["ds"]))
    last = date.fromisoformat(str(p.get("ds_end") or p["ds"]))
    return [(str(p["store_id"]), first + timedelta(days=n)) for n in range((last - first).days + 1)]


def collect(
    strategy: str,
    days_per_run: int | None,
    t0: datetime,
    global_limit: int,
    db: prefect_db.DbGrowth,
) -> StrategyRun:
    runs = read_child_runs(t0)
    ids = {str(r.id) for r in runs}
    builds = [b for b in ledger.read_builds().values() if b.flow_run_id in ids]
    children = child_timings(runs, builds, t0)
    asked = Counter(key for r in runs for key in run_days(r))
    done = {(b.store_id, b.ds) for b in builds if b.status == "completed"}
    ends = [c.end for c in children if c.end is not None]
    work = [(c.work_start, c.work_end) for c in children if c.work_start is not None]
    return StrategyRun(
        strategy=strategy,
        days_per_run=days_per_run,
        makespan=max(ends, default=0.0),
        ideal=ideal_makespan(children, global_limit),
        children=sorted(children, key=lambda c: (c.store_id, c.created)),
        partitions=len(done),
        duplicates=sum(n - 1 for n in asked.values()),
        max_work_overlap=max_overlap(work),
        db=db,
    )


def machine_cpu() -> tuple[float, float]:
    """(busy, wall) seconds since boot for the whole machine, from /proc/stat's first line:
    busy = all CPU time but idle and iowait, summed over cores; wall = total / cores."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
    tick = os.sysconf("SC_CLK_TCK")
    total = sum(fields)  # user nice system idle iowait irq softirq steal
    busy = total - fields[3] - fields[4]
    return busy / tick, total / tick / (os.cpu_count() or 1)


def run_strategy(
    bench: BenchStack,
    strategy: str,
    start: date,
    end: date,
    *,
    stores: list[Store] | None = None,
    days_per_run: int | None = None,
    settle_seconds: float = 6.0,
) -> StrategyRun:
    stores = stores or bench.stores
    if strategy in STRATEGIES:
        days_per_run = STRATEGIES[strategy]
    bench.reset()
    before, _ = prefect_db.settle(bench.prefect_db, settle_seconds)
    t0 = datetime.now(UTC)
    cpu0 = machine_cpu()
    if days_per_run is None:
        asyncio.run(run_seed(stores, start, end))
    else:
        asyncio.run(run_ours(stores, start, end, days_per_run))
    cpu1 = machine_cpu()
    after, waited = prefect_db.settle(bench.prefect_db, settle_seconds)
    result = collect(
        strategy,
        days_per_run,
        t0,
        bench.global_limit,
        prefect_db.growth(before, after, waited),
    )
    result.cpu_busy, result.cpu_span = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    expected = len(stores) * ((end - start).days + 1)
    print(
        f"  {strategy}: {result.partitions}/{expected} partitions in {len(result.children)} "
        f"child runs, makespan {result.makespan:.1f}s, ideal {result.ideal:.1f}s, "
        f"ratio {result.ratio:.2f}, Prefect DB +{result.db.used_bytes / 1e6:.1f} MB, "
        f"machine CPU {result.cpu_share:.0%} busy (floor {result.cpu_floor:.1f}s)",
        flush=True,
    )
    if result.partitions != expected:
        raise RuntimeError(f"{strategy}: only {result.partitions}/{expected} partitions completed")
    return result


# -- a regular run (per-node tasks) against lean mode ----------------------------------------
@dataclass
class ModeRun:
    mode: str
    wall: float  # created -> final (server timestamps)
    work: float  # the dbt invocation inside the slot (ledger)
    node_seconds: float
    task_runs: int
    db: prefect_db.DbGrowth


def mode_runs(
    bench: BenchStack, store: Store, ds: date, repeats: int, settle_seconds: float
) -> list[ModeRun]:
    """The same store deployment on the same partition, ``dbt_mode`` full and lean alternating
    (pairs in flipped order: full/lean, lean/full, ...), one run at a time."""
    from prefect.deployments import run_deployment

    # The partition's warehouse and dbt target were wiped with the last strategy: one lean run
    # first (not counted) creates the tables and dbt's parse state, as a store has them.
    order = ["warm-up"] if repeats > 1 else []
    for i in range(repeats):
        order += ["full", "lean"] if i % 2 == 0 else ["lean", "full"]
    out: list[ModeRun] = []
    before = None
    for mode in order:

        async def one(mode=mode):
            run = await run_deployment(
                store_deployment(store.store_id),
                parameters={
                    "store_id": store.store_id,
                    "ds": ds.isoformat(),
                    "dbt_mode": "lean" if mode == "warm-up" else mode,
                },
                timeout=0,
            )
            return await _wait_final(run.id, poll=0.5)

        if before is None and mode != "warm-up":
            before, _ = prefect_db.settle(bench.prefect_db, settle_seconds)
        run = asyncio.run(one())
        if mode == "warm-up":
            continue
        after, waited = prefect_db.settle(bench.prefect_db, settle_seconds)
        tasks = prefect_db.count_for_run(bench.prefect_db, "task_run", str(run.id))
        build = ledger.read_builds([store.store_id], ds, ds).get((store.store_id, ds))
        if run.state_type.value != "COMPLETED" or build is None or build.flow_run_id != str(run.id):
            raise RuntimeError(f"{mode} run {run.id} ended {run.state_type}: {run.state.message}")
        out.append(
            ModeRun(
                mode=mode,
                wall=(run.end_time - run.created).total_seconds(),
                work=(build.work_ended_at - build.work_started_at).total_seconds(),
                node_seconds=build.dbt_node_seconds or 0.0,
                task_runs=tasks,
                db=prefect_db.growth(before, after, waited),
            )
        )
        before = after
        print(f"  {mode}: wall {out[-1].wall:.1f}s, {tasks} task runs", flush=True)
    return out


def summarize_modes(runs: list[ModeRun]) -> dict[str, dict]:
    out = {}
    for mode in ("full", "lean"):
        rs = [r for r in runs if r.mode == mode]
        out[mode] = {
            "n": len(rs),
            "wall": statistics.median(r.wall for r in rs),
            "work": statistics.median(r.work for r in rs),
            "node_seconds": statistics.median(r.node_seconds for r in rs),
            "task_runs": statistics.median(r.task_runs for r in rs),
            "db_bytes": statistics.median(r.db.used_bytes for r in rs),
            "rows": {t: statistics.median(r.db.rows.get(t, 0) for r in rs) for t in rs[0].db.rows},
        }
    return out


# -- the whole section ------------------------------------------------------------------------
def _restore_env(saved: dict[str, str], root: Path) -> None:
    os.environ.clear()
    os.environ.update(saved)
    shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def bench_stack(stores: list[Store], global_limit: int):
    """A BenchStack that is up (bootstrapped, deployed) inside the block, gone after it."""
    saved = dict(os.environ)
    root = Path(tempfile.mkdtemp(prefix="clickstream-bench-"))
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(_restore_env, saved, root)
        bench = BenchStack(root, stores, global_limit)
        cleanup.callback(bench.down)
        # Prefect reads its settings once per process: if anything imported prefect before
        # this (pytest does), the env set above is not seen. Point our client at the stack.
        from prefect.settings import PREFECT_API_URL, temporary_settings

        cleanup.enter_context(temporary_settings(updates={PREFECT_API_URL: bench.cfg.api_url}))
        t = time.monotonic()
        bench.up()
        print(f"  stack up and deployed in {time.monotonic() - t:.0f}s", flush=True)
        yield bench


def strategy_stores(prefix: str, n: int) -> list[Store]:
    """``n`` synthetic stores of one strategy: ``<prefix>-01`` .. with the time zones of
    clickstream.local.scratch's synthetic stores 1..n. Each strategy builds its own stores, so no
    strategy's idempotency key (it names the store) can meet another's and no run has to be
    deleted between strategies (deleting frees pages that would hide database growth)."""
    return [
        Store(
            store_id=f"{prefix}-{i:02d}",
            display_name=f"{prefix} store {i:02d}",
            database=f"{prefix}_{i:02d}",
            timezone=TIMEZONES[(i - 1) % len(TIMEZONES)],
            earliest_ds=date(2026, 1, 1),
        )
        for i in range(1, n + 1)
    ]


def run(
    stores: int = 4,
    days: int = 30,
    events_per_day: int = 20_000,
    global_limit: int = 2,
    probe_days: int = 15,
    mode_repeats: int = 3,
    settle_seconds: float = 6.0,
    seed_days: int | None = None,
    end: date = date(2026, 10, 31),
) -> dict:
    """``seed_days``: the seed pattern runs over the grid's first ``seed_days`` days only
    (None = all of them; the smoke profile shortens it)."""
    start = end - timedelta(days=days - 1)
    grids = {name: strategy_stores(name.removeprefix("ours-"), stores) for name in STRATEGIES}
    probe_stores = strategy_stores("probe", 1) if probe_days else []
    every_store = [s for group in grids.values() for s in group] + probe_stores
    results: list[StrategyRun] = []
    probe = None
    modes: list[ModeRun] = []
    with bench_stack(every_store, global_limit) as bench:
        t = time.monotonic()
        bench.generate(start, end, events_per_day)
        print(f"  data generated in {time.monotonic() - t:.0f}s", flush=True)
        for strategy, grid_stores in grids.items():
            last = end
            if strategy == "seed" and seed_days:
                last = min(end, start + timedelta(days=seed_days - 1))
            results.append(
                run_strategy(
                    bench,
                    strategy,
                    start,
                    last,
                    stores=grid_stores,
                    settle_seconds=settle_seconds,
                )
            )
        if probe_days:
            # Dispatch overhead without contention: one store, one lane, nothing to wait for.
            probe = run_strategy(
                bench,
                "probe",
                start,
                start + timedelta(days=probe_days - 1),
                stores=probe_stores,
                days_per_run=1,
                settle_seconds=settle_seconds,
            )
        mode_store = grids["ours-d1"][0]
        if mode_repeats:
            modes = mode_runs(bench, mode_store, start, mode_repeats, settle_seconds)
    d1 = next(r for r in results if r.strategy == "ours-d1")
    return {
        "stores": stores,
        "days": days,
        "seed_days": seed_days or days,
        "events_per_day": events_per_day,
        "global_limit": global_limit,
        "runs": results,
        "probe": probe,
        "probe_days": probe_days,
        "overhead": overhead_breakdown((probe or d1).children),
        "overhead_in_grid": overhead_breakdown(d1.children),
        "modes": modes,
        "modes_summary": summarize_modes(modes) if modes else None,
        "mode_store": mode_store.store_id,
        "mode_ds": start,
    }
