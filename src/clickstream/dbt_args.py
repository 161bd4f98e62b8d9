"""Pure builders for the exact dbt command lines the flows run (unit-tested to the letter)."""

from __future__ import annotations

import json
from pathlib import Path

from clickstream.registry import Store
from clickstream.windows import Window

DEFAULT_SELECT = "+clickstream_daily"
TARGETS = ("duckdb", "postgres")


def dbt_vars(store: Store, window: Window, landing_dir: Path) -> dict[str, str]:
    """Every var the models read; defaults for each live in dbt/dbt_project.yml."""
    return {
        "store_id": store.store_id,
        "database": store.database,
        **window.as_dbt_vars(),
        "landing_dir": str(landing_dir),
    }


def dbt_build_args(
    store: Store,
    window: Window,
    *,
    landing_dir: Path,
    project_dir: Path,
    target_path: Path,
    select: str = DEFAULT_SELECT,
    full_refresh: bool = False,
    target: str = "duckdb",
) -> list[str]:
    """``dbt build`` for one partition (store_id, ds).

    ``target_path`` must be private to the store: runs of different stores execute at the
    same time and would otherwise overwrite each other's manifest and run_results.
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
        select,
        "--vars",
        json.dumps(dbt_vars(store, window, landing_dir), sort_keys=True),
    ]
    if full_refresh:
        args.append("--full-refresh")
    return args
