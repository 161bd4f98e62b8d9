"""Planner scale: what the orchestrator does before its first dispatch, 100 stores x 3 years.

Set up once (not timed), in a temporary folder:
- a ledger (SQLite) where every other partition was built (1 in 7 of those failed), with a
  dispatch row for each, fingerprints and the token of their landing files;
- landing folders for every store-local day (one tiny Parquet file each: hard links of one
  real file, since planning only lists and stats them when the files are unchanged);
- one DuckDB warehouse per store whose ``clickstream.clickstream_daily`` holds a row for each
  completed build with the ledger's counts (1 in 50 of them missing, 1 in 50 with other
  counts, so the mart check has something to find).

Then, in a fresh process per repeat (its peak RSS is the planner's, imports included), the
orchestrator's own ``plan()`` (clickstream.pipelines.backfill: resolve_request, ledger reads,
fingerprints with the recorded tokens, the mart check over every warehouse, classify,
select) with a stub Prefect client that answers every API read at once with nothing,
``build_lanes`` with ``days_per_run`` = 7, and the rendering of the plan artifacts (grid and
partition table; their upload is an API call, not timed). Each step is timed by wrapping the
functions ``plan()`` calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

STORES = 100
YEARS = 3
DAYS_PER_RUN = 7
POLICY = "failed"


def dates() -> tuple[date, date]:
    """Three years ending two days ago (a backfill may not reach past any store's today)."""
    end = date.today() - timedelta(days=2)
    return end - timedelta(days=YEARS * 365), end


def registry(stores: int, start: date):
    from clickstream.core.stores import Registry, Store

    zones = ["America/New_York", "Asia/Kolkata", "Australia/Sydney", "Europe/Berlin", "UTC"]
    return Registry(
        tuple(
            Store(
                store_id=f"store-{i:03d}",
                display_name=f"Store {i}",
                database=f"store_{i:03d}",
                timezone=zones[i % len(zones)],
                earliest_ds=start,
            )
            for i in range(stores)
        )
    )


def _env(root: Path) -> dict[str, str]:
    return {
        "CLICKSTREAM_STATE_DIR": str(root / "state"),
        "CLICKSTREAM_LEDGER_URL": f"sqlite:///{root / 'ledger.sqlite'}",
        "CLICKSTREAM_LANDING_DIR": str(root / "landing"),
        "CLICKSTREAM_WAREHOUSE_DIR": str(root / "warehouse"),
        "CLICKSTREAM_DBT_TARGET": "duckdb",
    }


# -- set-up (not timed) ----------------------------------------------------------------------
def setup(root: Path, stores: int, start: date, end: date) -> dict:
    """Ledger, landing folders and warehouses for the planner to read; returns counts."""
    import duckdb

    from clickstream.adapters import landing as source
    from clickstream.adapters import ledger
    from clickstream.adapters.landing import RAW_COLUMN_NAMES, RAW_COLUMNS
    from clickstream.core.fingerprints import FINGERPRINT_VERSION
    from clickstream.core.windows import landing_days, partition_windows

    t0 = time.perf_counter()
    os.environ.update(_env(root))
    reg = registry(stores, start)
    landing = root / "landing"
    tiny = root / "tiny.parquet"
    cols = ", ".join(f"CAST(NULL AS {c.split()[1]}) AS {c.split()[0]}" for c in RAW_COLUMNS)
    duckdb.sql(f"COPY (SELECT {cols}) TO '{tiny}' (FORMAT parquet)")
    assert len(duckdb.sql(f"SELECT * FROM '{tiny}'").columns) == len(RAW_COLUMN_NAMES)
    days = [start - timedelta(days=1) + timedelta(days=n) for n in range((end - start).days + 3)]
    for store in reg:
        base = landing / store.store_id
        base.mkdir(parents=True)
        own = root / f"tiny-{store.store_id}.parquet"  # a file has at most 65,000 links
        shutil.copyfile(tiny, own)
        for d in days:
            folder = base / f"ds={d.isoformat()}"
            folder.mkdir()
            os.link(own, folder / "data_0.parquet")
    t_landing = time.perf_counter() - t0

    builds, dispatches, marts = [], [], defaultdict(list)
    now = ledger.utcnow()
    n = 0
    for store in reg:
        span = [start + timedelta(days=i) for i in range((end - start).days + 1)]
        built = [d for i, d in enumerate(span) if i % 2 == 0]
        for w in partition_windows(store.timezone, built):
            n += 1
            events, sessions = 1000 + n % 97, 100 + n % 13
            files = source.landing_files(
                landing, store.store_id, landing_days(store, w.input_start, w.input_end)
            )
            run_id = str(uuid.uuid4())
            status = "failed" if n % 7 == 0 else "completed"
            builds.append(
                {
                    "store_id": store.store_id,
                    "ds": w.ds,
                    "status": status,
                    "flow_run_id": run_id,
                    "fingerprint": f"{FINGERPRINT_VERSION}:{events}:{n * 7919}",
                    "source_files": source.files_token(files),
                    "events": events if status == "completed" else None,
                    "sessions": sessions if status == "completed" else None,
                    "mart_rows": 1 if status == "completed" else None,
                    "started_at": now,
                    "built_at": now,
                }
            )
            dispatches.append(
                {
                    "store_id": store.store_id,
                    "ds": w.ds,
                    "attempt": 1,
                    "idempotency_key": f"clickstream:{store.store_id}:{w.ds}:attempt-1",
                    "flow_run_id": run_id,
                    "orchestrator_run_id": None,
                    "submitted_at": now,
                    "planned_at": now,
                }
            )
            if status == "completed" and n % 50 != 1:  # 1 in 50 rows gone from the mart
                drift = 1 if n % 50 == 2 else 0  # 1 in 50 rows no longer as built
                marts[store.store_id].append((store.store_id, w.ds, events + drift, sessions))
    with ledger.engine().begin() as conn:
        conn.execute(ledger.partition_builds.insert(), builds)
        conn.execute(ledger.partition_dispatches.insert(), dispatches)
    t_ledger = time.perf_counter() - t0 - t_landing

    (root / "warehouse").mkdir()
    for store in reg:
        con = duckdb.connect(str(root / "warehouse" / f"{store.database}.duckdb"))
        try:
            con.execute("CREATE SCHEMA clickstream")
            # The mart's columns (dbt/models/marts/clickstream_daily.sql).
            con.execute(
                """CREATE TABLE clickstream.clickstream_daily (
                    store_id VARCHAR, ds DATE, events BIGINT, sessions BIGINT, users BIGINT,
                    page_views BIGINT, product_views BIGINT, add_to_carts BIGINT,
                    checkouts BIGINT, orders BIGINT, revenue_usd DECIMAL(18, 2),
                    conversion_rate DOUBLE, window_start_utc TIMESTAMP,
                    window_end_utc TIMESTAMP)"""
            )
            rows = marts[store.store_id]
            if rows:
                values = ", ".join(
                    f"('{sid}', DATE '{ds}', {ev}, {se}, 0, 0, 0, 0, 0, 0, 0, 0, NULL, NULL)"
                    for sid, ds, ev, se in rows
                )
                con.execute(f"INSERT INTO clickstream.clickstream_daily VALUES {values}")
        finally:
            con.close()
    t_total = time.perf_counter() - t0
    return {
        "partitions": stores * ((end - start).days + 1),
        "ledger_rows": len(builds),
        "mart_rows": sum(len(v) for v in marts.values()),
        "landing_folders": stores * len(days),
        "setup_seconds": round(t_total, 1),
        "landing_seconds": round(t_landing, 1),
        "ledger_seconds": round(t_ledger, 1),
    }


# -- the timed part (in its own process) -------------------------------------------------------
def _rss_mb() -> float:
    """Peak RSS of this process (VmHWM). Not getrusage's ru_maxrss: on Linux that keeps the
    high-water mark of the parent this process was forked from."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


def measure(root: Path, stores: int, start: date, end: date) -> dict:
    """One planning pass, as the orchestrator's run does it, each step timed."""
    os.environ.update(_env(root))
    from clickstream.adapters import ledger
    from clickstream.core import grid
    from clickstream.core.lanes import build_lanes
    from clickstream.core.requests import BackfillRequest
    from clickstream.pipelines.backfill import report
    from clickstream.pipelines.backfill import snapshot as orch

    reg = registry(stores, start)
    ledger.engine()  # the orchestrator's process has its ledger engine before planning
    rss_base = _rss_mb()
    timers: dict[str, float] = defaultdict(float)
    api_calls: dict[str, int] = defaultdict(int)

    def timed(module, name: str, label: str) -> None:
        fn = getattr(module, name)
        if asyncio.iscoroutinefunction(fn):

            async def wrapper(*a, **k):
                t = time.perf_counter()
                try:
                    return await fn(*a, **k)
                finally:
                    timers[label] += time.perf_counter() - t
        else:

            def wrapper(*a, **k):
                t = time.perf_counter()
                try:
                    return fn(*a, **k)
                finally:
                    timers[label] += time.perf_counter() - t

        setattr(module, name, wrapper)

    timed(orch, "resolve_request", "resolve_request (validate, expand dates)")
    timed(ledger, "read_build_summaries", "ledger read (builds)")
    timed(orch, "partition_windows", "fingerprints: windows of the built partitions")
    timed(orch, "fingerprints", "fingerprints: landing files vs recorded tokens")
    timed(orch, "read_mart_view", "mart check (every store's warehouse)")
    timed(orch, "classify", "classify (ledger, mart counts, fingerprints)")
    timed(orch, "select_partitions", "select (policy)")
    timed(orch, "read_active_store_runs", "Prefect API reads (stubbed: answered at once)")

    class StubClient:
        async def read_global_concurrency_limit_by_name(self, name):
            api_calls["read_global_concurrency_limit_by_name"] += 1
            return SimpleNamespace(limit=4, active=True)

        async def read_flow_runs(self, **kwargs):
            api_calls["read_flow_runs"] += 1
            return []

    request = BackfillRequest(
        start_date=start,
        end_date=end,
        reprocess=POLICY,
        days_per_run=DAYS_PER_RUN,
        allow_large_backfill=True,
    )
    planned: dict = {}

    async def plan() -> None:
        # Timed inside the loop, as the orchestrator's flow awaits it; nothing returned, so
        # asyncio.run's clean-up never renders the (large) result.
        t0 = time.perf_counter()
        planned["result"] = await orch.plan(request, registry=reg, client=StubClient())
        planned["seconds"] = time.perf_counter() - t0

    asyncio.run(plan())
    resolved, snapshot, selected = planned["result"]
    t_plan = planned["seconds"]
    t = time.perf_counter()
    lanes = build_lanes(selected, resolved.order, resolved.days_per_run)
    timers["build_lanes (days_per_run 7)"] = time.perf_counter() - t
    t = time.perf_counter()
    states = report.display_states(snapshot, selected, {}, True)
    grid.render_markdown(
        states, title="plan", stores=[s.store_id for s in resolved.stores], note="x"
    )
    table = report.partition_table(resolved, snapshot, selected, {}, True)
    t_artifacts = time.perf_counter() - t
    steps = dict(timers)
    fp = sum(v for k, v in steps.items() if k.startswith("fingerprints"))
    planner = t_plan - fp + steps["build_lanes (days_per_run 7)"]
    return {
        "partitions": len(snapshot.states),
        "ledger_rows": len(snapshot.builds),
        "mart_rows": len(snapshot.mart.rows),
        "stores_checked": len(snapshot.mart.checked),
        "states": {str(k): v for k, v in _count(snapshot.states.values()).items()},
        "selected": len(selected),
        "child_runs": sum(len(b) for b in lanes.values()),
        "lanes": len(lanes),
        "table_rows": len(table),
        "api_calls": dict(api_calls),
        "steps": {k: round(v, 4) for k, v in steps.items()},
        "plan_seconds": round(t_plan, 4),
        "planner_seconds": round(planner, 4),
        "fingerprint_seconds": round(fp, 4),
        "artifact_seconds": round(t_artifacts, 4),
        "total_seconds": round(t_plan + steps["build_lanes (days_per_run 7)"] + t_artifacts, 4),
        "rss_base_mb": round(rss_base, 1),
        "peak_rss_mb": round(_rss_mb(), 1),
    }


def _count(values) -> dict:
    out: dict = defaultdict(int)
    for v in values:
        out[v] += 1
    return dict(out)


# -- the section -------------------------------------------------------------------------------
def run(stores: int = STORES, repeats: int = 3) -> dict:
    start, end = dates()
    root = Path(tempfile.mkdtemp(prefix="clickstream-planner-"))
    saved = dict(os.environ)
    try:
        prepared = setup(root, stores, start, end)
        print(f"  planner set-up: {prepared}", flush=True)
        passes = []
        for _ in range(repeats):
            out = root / "measure.json"
            subprocess.run(
                [
                    sys.executable, "-m", "bench.planner", "--measure", str(root),
                    "--stores", str(stores), "--start", start.isoformat(),
                    "--end", end.isoformat(), "--json", str(out),
                ],
                env={**saved, **_env(root)},
                check=True,
            )  # fmt: skip
            passes.append(json.loads(out.read_text()))
            print(
                f"  planner pass: planner {passes[-1]['planner_seconds']:.2f}s, fingerprints "
                f"{passes[-1]['fingerprint_seconds']:.2f}s, peak {passes[-1]['peak_rss_mb']} MB",
                flush=True,
            )
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(root, ignore_errors=True)

    def med(key: str) -> float:
        return statistics.median(p[key] for p in passes)

    return {
        "stores": stores,
        "start": start,
        "end": end,
        "setup": prepared,
        "passes": passes,
        "first": passes[0],
        "planner_median": med("planner_seconds"),
        "fingerprint_median": med("fingerprint_seconds"),
        "artifact_median": med("artifact_seconds"),
        "total_median": med("total_seconds"),
        "peak_rss_max": max(p["peak_rss_mb"] for p in passes),
        "rss_base_median": med("rss_base_mb"),
        "steps_median": {
            k: statistics.median(p["steps"][k] for p in passes) for k in passes[0]["steps"]
        },
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", type=Path, help="time one pass over this set-up")
    parser.add_argument("--stores", type=int, default=STORES)
    parser.add_argument("--start", type=date.fromisoformat)
    parser.add_argument("--end", type=date.fromisoformat)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.measure:
        result = measure(args.measure, args.stores, args.start, args.end)
        args.json.write_text(json.dumps(result))
    else:
        print(json.dumps(run(args.stores, args.repeats), indent=2, default=str))
