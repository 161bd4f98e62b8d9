"""Pure builders for the exact dbt command line and partition spec the flows use (unit-tested
to the letter).

A build of a store is ``dbt build`` with ``--vars`` that never change for that store
(store_id, database, landing_dir), plus the **partition spec** in the environment variable
``CLICKSTREAM_PARTITION_SPEC``: the days to build with their windows, the input range and the
landing folders to read, all computed here from clickstream.windows and clickstream.source.
Keeping the per-partition values out of ``--vars`` is what lets dbt's partial parsing carry
over from one build of the store to the next (changed ``--vars`` force a full re-parse);
dbt reads the spec only while executing (dbt/macros/clickstream_window.sql).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from clickstream.registry import Store
from clickstream.source import landing_days
from clickstream.windows import UTC_FORMAT, Window, input_range

SELECT = "+clickstream_daily"
TARGETS = ("duckdb", "postgres")
SPEC_ENV = "CLICKSTREAM_PARTITION_SPEC"


def dbt_vars(store: Store, landing_dir: Path) -> dict[str, str]:
    """The ``--vars`` of every build of ``store`` (defaults live in dbt/dbt_project.yml)."""
    return {
        "store_id": store.store_id,
        "database": store.database,
        "landing_dir": str(landing_dir),
    }


def partition_spec(store: Store, windows: Sequence[Window]) -> dict:
    """What one invocation builds: ``windows`` of ``store`` (sorted, no duplicates)."""
    ordered = sorted(windows, key=lambda w: w.ds)
    if len({w.ds for w in ordered}) != len(ordered):
        raise ValueError("a partition spec lists each day once")
    start, end = input_range(ordered)
    folders = landing_days(store, start, end)
    return {
        "store_id": store.store_id,
        "days": [
            [
                w.ds.isoformat(),
                w.window_start.strftime(UTC_FORMAT),
                w.window_end.strftime(UTC_FORMAT),
            ]
            for w in ordered
        ],
        "input_start": start.strftime(UTC_FORMAT),
        "input_end": end.strftime(UTC_FORMAT),
        "landing_first": folders[0].isoformat(),
        "landing_last": folders[-1].isoformat(),
    }


def spec_environment(store: Store, windows: Sequence[Window]) -> dict[str, str]:
    return {SPEC_ENV: json.dumps(partition_spec(store, windows), separators=(",", ":"))}


def dbt_build_args(
    store: Store,
    *,
    landing_dir: Path,
    project_dir: Path,
    target_path: Path,
    full_refresh: bool = False,
    target: str = "duckdb",
) -> list[str]:
    """``dbt build`` for one store; the partitions come from :func:`spec_environment`.

    ``target_path`` must be private to the store: runs of different stores execute at the
    same time and would otherwise overwrite each other's manifest, run_results and partial
    parse state.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown dbt target {target!r}; expected one of {', '.join(TARGETS)}")
    args = [
        "build",
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(project_dir),
        "--target",
        target,
        "--target-path",
        str(target_path),
        "--log-path",
        str(target_path / "logs"),
        "--select",
        SELECT,
        "--vars",
        json.dumps(dbt_vars(store, landing_dir), sort_keys=True),
    ]
    if full_refresh:
        args.append("--full-refresh")
    return args
