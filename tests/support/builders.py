"""Test data built by hand: example stores and landing files with chosen rows."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb

from clickstream.adapters.landing import RAW_COLUMNS, day_dir
from clickstream.core.stores import Store

NY = Store(
    store_id="us-flagship",
    display_name="US",
    database="us_flagship",
    timezone="America/New_York",
    earliest_ds=date(2026, 1, 1),
)


MUMBAI = Store(
    store_id="in-mumbai",
    display_name="IN",
    database="in_mumbai",
    timezone="Asia/Kolkata",
    earliest_ds=date(2026, 1, 1),
)


def write_events(landing: Path, ds: date, name: str, rows: list[tuple]) -> Path:
    """Raw events (event_id, event_ts, loaded_at, user_id) into ds's landing folder."""
    folder = day_dir(landing, "us-flagship", ds)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    values = ", ".join(
        f"('{eid}', 'us-flagship', '{user}', 's', 'page_view', TIMESTAMP '{ts}', "
        f"TIMESTAMP '{loaded}', NULL, NULL, NULL, 'mobile')"
        for eid, ts, loaded, user in rows
    )
    cols = ", ".join(
        f"CAST(c{n} AS {c.split(' ', 1)[1]}) AS {c.split()[0]}" for n, c in enumerate(RAW_COLUMNS)
    )
    names = ", ".join(f"c{n}" for n in range(len(RAW_COLUMNS)))
    duckdb.sql(
        f"COPY (SELECT {cols} FROM (VALUES {values}) t({names})) TO '{path}' (FORMAT parquet)"
    )
    return path
