"""What one dbt invocation builds and reads: the partition spec (days, windows, input range,
landing folders) and the store's --vars. dbt reads it (dbt/macros/clickstream_window.sql).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from clickstream.core.stores import Store
from clickstream.core.windows import UTC_FORMAT, Window, input_range, landing_days

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
