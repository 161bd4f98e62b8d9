"""Incremental cost: building day 60 on top of 59 days of history vs building day 1.

dbt only (no Prefect): the exact ``dbt build`` command line the store flow runs
(``clickstream.dbt_args``), invoked in-process with dbt's programmatic runner on the DuckDB
target, one store, generated data. For each build it records the whole invocation (parse +
run) and dbt's own execution time (``elapsed_time`` of the run results, nodes only).

- day 1: on an empty warehouse, ``repeats`` times (a fresh warehouse each time)
- history: days 1..59 built in order into one warehouse
- day 60: on top of that history, ``repeats`` times (delete+insert, so repeats are equal work)
- full refresh: one ``--full-refresh`` invocation on day 60, and the cost of rebuilding
  all 60 days partition by partition (what reprocessing everything means here)
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from clickstream import paths
from clickstream.dbt_args import dbt_build_args
from clickstream.generate import generate
from clickstream.registry import load_registry
from clickstream.windows import partition_window

STORE = "us-flagship"


def run(days: int = 60, events_per_day: int = 20_000, repeats: int = 3) -> dict:
    from dbt.cli.main import dbtRunner

    root = Path(tempfile.mkdtemp(prefix="clickstream-incr-"))
    saved = dict(os.environ)
    store = load_registry().get(STORE)
    start = date(2026, 1, 1)
    last = start + timedelta(days=days - 1)
    try:
        os.environ["CLICKSTREAM_STATE_DIR"] = str(root / "state")
        generate([store], start, last, events_per_day)

        def build(ds: date, warehouse: Path, full_refresh: bool = False) -> tuple[float, float]:
            warehouse.mkdir(parents=True, exist_ok=True)
            os.environ["CLICKSTREAM_WAREHOUSE_DIR"] = str(warehouse)
            args = dbt_build_args(
                store,
                partition_window(store.timezone, ds),
                landing_dir=paths.landing_dir(),
                project_dir=paths.dbt_project_dir(),
                target_path=root / "target",
                full_refresh=full_refresh,
            )
            t = time.perf_counter()
            # Full parse every time, as in production (the window vars differ per partition).
            res = dbtRunner().invoke([*args, "--quiet", "--no-partial-parse"])
            total = time.perf_counter() - t
            if not res.success:
                raise RuntimeError(f"dbt build {ds} failed: {res.exception}")
            return total, float(res.result.elapsed_time)

        build(start, root / "warm-up")  # first dbt call in a process pays one-off setup
        day1 = [build(start, root / f"empty-{i}") for i in range(repeats)]
        history_wh = root / "history"
        history = [build(start + timedelta(days=i), history_wh) for i in range(days - 1)]
        day_n = [build(last, history_wh) for _ in range(repeats)]
        full = build(last, history_wh, full_refresh=True)
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
        "full_refresh_total": full[0],
        "rebuild_all_total": sum(r[0] for r in history) + med(day_n, 0),
    }
