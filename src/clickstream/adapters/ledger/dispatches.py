"""Dispatches: the orchestrator's log of child runs (one row per day and attempt) and the
per-store claim under which it decides them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime

from sqlalchemy import Connection, and_, func, select, update
from sqlalchemy.exc import IntegrityError

from clickstream.adapters.ledger.engine import _in_range, _rows, _upsert_many, engine, utcnow
from clickstream.adapters.ledger.schema import dispatch_locks, partition_dispatches
from clickstream.core.records import DispatchRecord


def record_dispatches(records: Iterable[DispatchRecord], conn: Connection | None = None) -> None:
    """One row per day of a child run (a multi-day run writes one row for each of its days)."""
    rows = [r.__dict__.copy() for r in records]
    if rows:
        _upsert_many(partition_dispatches, rows, ["store_id", "ds", "attempt"], conn)


@contextmanager
def dispatch_claim(store_id: str) -> Iterator[Connection]:
    """A transaction in which one orchestrator decides what to dispatch for a store and
    records it; others deciding about the same store wait for it to commit, then see it.

    Read the store's dispatch rows and record new ones through the connection it yields.
    Keep it short: it holds a row lock (Postgres) or the database's write lock (SQLite)."""
    eng = engine()
    with contextlib.suppress(IntegrityError), eng.begin() as conn:
        conn.execute(dispatch_locks.insert().values(store_id=store_id, locked_at=utcnow()))
    with eng.begin() as conn:
        conn.execute(
            update(dispatch_locks)
            .where(dispatch_locks.c.store_id == store_id)
            .values(locked_at=utcnow())
        )
        yield conn


def _latest_dispatch_stmt(columns, store_ids, start, end):
    d = partition_dispatches
    latest = _in_range(
        select(d.c.store_id, d.c.ds, func.max(d.c.attempt).label("attempt")).group_by(
            d.c.store_id, d.c.ds
        ),
        d,
        store_ids,
        start,
        end,
    ).subquery()
    return select(*columns).join(
        latest,
        and_(
            d.c.store_id == latest.c.store_id,
            d.c.ds == latest.c.ds,
            d.c.attempt == latest.c.attempt,
        ),
    )


def read_latest_dispatches(
    store_ids: Iterable[str] | None = None,
    start: date | None = None,
    end: date | None = None,
    conn: Connection | None = None,
) -> dict[tuple[str, date], DispatchRecord]:
    """The highest attempt dispatched per partition."""
    stmt = _latest_dispatch_stmt([partition_dispatches], store_ids, start, end)
    rows = _rows(stmt, conn)
    return {(r["store_id"], r["ds"]): DispatchRecord(**r) for r in rows}


def read_planned_at(idempotency_key: str) -> datetime | None:
    """When the orchestrator planned the child run with this key (None: no such dispatch)."""
    d = partition_dispatches
    stmt = select(func.min(d.c.planned_at)).where(d.c.idempotency_key == idempotency_key)
    with engine().connect() as conn:
        return conn.execute(stmt).scalar_one_or_none()
