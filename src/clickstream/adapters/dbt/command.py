"""The exact `dbt build` command line of a store (unit-tested to the letter)."""

from __future__ import annotations

import json
from pathlib import Path

from clickstream.core.partition_spec import dbt_vars
from clickstream.core.stores import Store
from clickstream.settings import DBT_TARGETS as TARGETS

SELECT = "+clickstream_daily"


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
