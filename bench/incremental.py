"""Incremental cost: building day 60 on top of 59 days of history vs building day 1.

dbt only (no Prefect server): each build is exactly what the store flow runs for one
invocation, the same function: clickstream.adapters.dbt.invoke.build_days (its command line
with the store's private target path, the partition spec and warehouse folder in the
environment, the store's warehouse lock, lean mode, the read-back of the built rows and the
release of dbt-duckdb's connection), with no concurrency slot (``contextlib.nullcontext``:
there is no server). Asset events are not emitted here (no server either). The target path
persists from one build to the next as it does for a store, so dbt's partial parsing carries
over between builds (the per-partition values are in the environment, not in ``--vars``).
One store, generated data. For each build it records the whole call (parse + run +
read-back) and dbt's node execution time (what the ledger records).

- day 1: on an empty warehouse, ``repeats`` times (a fresh warehouse each time)
- history: days 1..59 built in order into one warehouse
- day 60: on top of that history, ``repeats`` times (delete+insert, so repeats are equal work)
- full refresh: what the store flow's ``full_refresh=True`` does on that warehouse: rebuild
  every day the ledger knows (all 60) in invocations of at most 31 days, the first one with
  ``--full-refresh`` (clickstream.core.store_run_plan.invocations)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from unittest import mock

from clickstream import settings
from clickstream.core.states import MAX_DAYS_PER_RUN
from clickstream.core.store_run_plan import invocations
from clickstream.core.stores import load_registry
from clickstream.core.windows import partition_windows
from clickstream.local.synthetic import generate

STORE = "us-flagship"
NO_SERVER = "http://127.0.0.1:9/api"  # nothing listens there
log = logging.getLogger("bench.incremental")


def run(days: int = 60, events_per_day: int = 20_000, repeats: int = 3) -> dict:
    """Measure in a child process whose Prefect settings name no server from the start (lean
    mode invokes dbt in an empty context, where only the process-wide settings apply)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "incremental.json"
        subprocess.run(
            [
                sys.executable, "-m", "bench.incremental", "--days", str(days),
                "--events-per-day", str(events_per_day), "--repeats", str(repeats),
                "--json", str(out),
            ],
            env={**os.environ, "PREFECT_API_URL": NO_SERVER},
            check=True,
        )  # fmt: skip
        return json.loads(out.read_text())


def measure(days: int, events_per_day: int, repeats: int) -> dict:
    from clickstream.adapters.dbt import runner as dbt_run
    from clickstream.adapters.dbt.invoke import build_days

    root = Path(tempfile.mkdtemp(prefix="clickstream-incr-"))
    saved = dict(os.environ)
    store = load_registry().get(STORE)
    start = date(2026, 1, 1)
    last = start + timedelta(days=days - 1)
    try:
        os.environ["CLICKSTREAM_STATE_DIR"] = str(root / "state")
        for var in ("CLICKSTREAM_LANDING_DIR", "CLICKSTREAM_WAREHOUSE_DIR"):
            os.environ.pop(var, None)
        generate([store], start, last, events_per_day)

        # One warehouse folder, as for a store (dbt's partial parsing keys on the profile,
        # and the profile names the warehouse file): "fresh" empties it.
        warehouse = settings.warehouse_dir()

        def fresh() -> None:
            shutil.rmtree(warehouse, ignore_errors=True)
            warehouse.mkdir(parents=True)

        # build_days keeps the store's dbt target path (<state>/dbt-target/<store>) from one
        # build to the next, as for a store.
        def build(days_: list[date], full_refresh: bool = False) -> tuple[float, float]:
            windows = partition_windows(store.timezone, days_)
            t = time.perf_counter()
            result = build_days(
                store,
                windows,
                mode="lean",
                full_refresh=full_refresh,
                slot=contextlib.nullcontext,
                logger=log,
            )
            return time.perf_counter() - t, result.outcome.execution_seconds

        # No server here: the asset events lean mode emits after a build are left out; the
        # runner's API client (made, not used for this profile) names a closed port.
        with mock.patch.object(dbt_run, "_emit_asset_events", lambda *a, **k: None):
            fresh()
            build([start])  # the first dbt call in a process pays one-off setup and a full parse
            day1 = []
            for _ in range(repeats):
                fresh()
                day1.append(build([start]))
            fresh()
            history = [build([start + timedelta(days=i)]) for i in range(days - 1)]
            day_n = [build([last]) for _ in range(repeats)]
            # The store flow's full refresh: every day the ledger knows, <= 31 per invocation.
            every_day = [start + timedelta(days=i) for i in range(days)]
            groups = invocations(every_day, MAX_DAYS_PER_RUN)
            full = [build(g, full_refresh=n == 0) for n, g in enumerate(groups)]
    finally:
        os.environ.clear()
        os.environ.update(saved)
        shutil.rmtree(root, ignore_errors=True)

    def med(rows: list[tuple[float, float]], i: int) -> float:
        return statistics.median(r[i] for r in rows)

    return {
        "days": days,
        "events_per_day": events_per_day,
        "repeats": repeats,
        "day1_total": [r[0] for r in day1],
        "day1_exec": [r[1] for r in day1],
        "dayN_total": [r[0] for r in day_n],
        "dayN_exec": [r[1] for r in day_n],
        "ratio_total": med(day_n, 0) / med(day1, 0),
        "ratio_exec": med(day_n, 1) / med(day1, 1),
        "full_refresh_invocations": len(full),
        "full_refresh_total": sum(r[0] for r in full),
        "full_refresh_exec": sum(r[1] for r in full),
        "rebuild_all_total": sum(r[0] for r in history) + med(day_n, 0),
        "rebuild_all_exec": sum(r[1] for r in history) + med(day_n, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--events-per-day", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, required=True)
    a = parser.parse_args()
    a.json.write_text(json.dumps(measure(a.days, a.events_per_day, a.repeats)))
