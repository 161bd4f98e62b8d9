"""Where things live. Every path can be moved with an environment variable.

The defaults keep all generated state (landing files, warehouses, ledger, Prefect home,
logs, PIDs) under one git-ignored folder, ``.clickstream/`` at the repository root.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_dir() -> Path:
    """Repository root (holds prefect.yaml, stores/, dbt/)."""
    env = os.environ.get("CLICKSTREAM_PROJECT_DIR")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parents[2]


def state_dir() -> Path:
    """Generated local state; never committed."""
    env = os.environ.get("CLICKSTREAM_STATE_DIR")
    return Path(env).resolve() if env else project_dir() / ".clickstream"


def stores_dir() -> Path:
    env = os.environ.get("CLICKSTREAM_STORES_DIR")
    return Path(env).resolve() if env else project_dir() / "stores"


def dbt_project_dir() -> Path:
    return project_dir() / "dbt"


def landing_dir() -> Path:
    """Raw events as Parquet: ``<landing>/<store_id>/ds=<YYYY-MM-DD>/*.parquet``."""
    env = os.environ.get("CLICKSTREAM_LANDING_DIR")
    return Path(env).resolve() if env else state_dir() / "landing"


def warehouse_dir() -> Path:
    """One DuckDB file per store: ``<warehouse>/<database>.duckdb``."""
    env = os.environ.get("CLICKSTREAM_WAREHOUSE_DIR")
    return Path(env).resolve() if env else state_dir() / "warehouse"


def prefect_yaml_path() -> Path:
    return project_dir() / "prefect.yaml"
