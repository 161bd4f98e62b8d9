"""Build outcomes: one row per partition, the latest build (written by the per-store flow)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from sqlalchemy import Connection, String, cast, select

from clickstream.adapters.ledger.engine import _in_range, _rows, _upsert_many, engine
from clickstream.adapters.ledger.schema import partition_builds
from clickstream.core.records import BuildRecord, BuildSummary
from clickstream.core.states import BUILD_STATUSES


def record_builds(records: Iterable[BuildRecord]) -> None:
    """Upsert the outcome of several partitions (one multi-day build) in one transaction."""
    rows = [r.__dict__.copy() for r in records]
    for row in rows:
        if row["status"] not in BUILD_STATUSES:
            raise ValueError(f"status must be one of {BUILD_STATUSES}, got {row['status']!r}")
    if rows:
        _upsert_many(partition_builds, rows, ["store_id", "ds"])


def read_builds(
    store_ids: Iterable[str] | None = None,
    start: date | None = None,
    end: date | None = None,
    conn: Connection | None = None,
) -> dict[tuple[str, date], BuildRecord]:
    stmt = _in_range(select(partition_builds), partition_builds, store_ids, start, end)
    rows = _rows(stmt, conn)
    return {(r["store_id"], r["ds"]): BuildRecord(**r) for r in rows}


def read_build_summaries(
    store_ids: Iterable[str] | None = None,
    start: date | None = None,
    end: date | None = None,
) -> dict[tuple[str, date], BuildSummary]:
    b = partition_builds
    stmt = _in_range(
        select(
            b.c.store_id,
            cast(b.c.ds, String),  # parsed below: much faster than the Date type's parser
            b.c.status,
            b.c.flow_run_id,
            b.c.fingerprint,
            b.c.source_files,
            b.c.events,
            b.c.sessions,
        ),
        b,
        store_ids,
        start,
        end,
    )
    with engine().connect() as conn:
        rows = conn.execute(stmt).all()
    return {(r[0], date.fromisoformat(r[1])): BuildSummary._make(r[2:]) for r in rows}
