"""Ledger rows counted directly, for assertions the ledger's API has no read for (it reads
only the latest dispatch of a partition; tests check that earlier attempts are kept)."""

from __future__ import annotations

from sqlalchemy import func, select

from clickstream.adapters import ledger


def count_dispatches(store_id: str | None = None) -> int:
    """Dispatch rows (every attempt of every day) of one store, or of all."""
    d = ledger.partition_dispatches
    stmt = select(func.count()).select_from(d)
    if store_id is not None:
        stmt = stmt.where(d.c.store_id == store_id)
    with ledger.engine().connect() as conn:
        return int(conn.execute(stmt).scalar_one())
