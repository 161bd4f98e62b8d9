"""How the ledger is reached: its URL, one engine per URL, SQLite's WAL pragmas, retries on a
locked SQLite, and the row helpers the readers and writers share."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import UTC, date, datetime
from functools import lru_cache

from sqlalchemy import Connection, Engine, Table, and_, create_engine, delete, event, inspect, text
from sqlalchemy.exc import OperationalError

from clickstream import settings
from clickstream.adapters.ledger.schema import metadata


def ledger_url() -> str:
    """``CLICKSTREAM_LEDGER_URL``, default a SQLite file under the state folder."""
    return settings.get().ledger


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            # WAL: readers never block the writer and vice versa, across processes.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    else:
        engine = create_engine(url, pool_pre_ping=True)
    metadata.create_all(engine)
    _add_missing_columns(engine)
    return engine


def _add_missing_columns(eng: Engine) -> None:
    """Upgrade a ledger written by an earlier version in place: new columns are nullable, so
    adding them is all a migration needs (old rows read as NULL there)."""
    insp = inspect(eng)
    for table in metadata.sorted_tables:
        have = {c["name"] for c in insp.get_columns(table.name)}
        for column in table.columns:
            if column.name in have:
                continue
            if not column.nullable:
                raise RuntimeError(
                    f"ledger table {table.name} lacks the required column {column.name}; "
                    "it was written by an incompatible version"
                )
            ddl = column.type.compile(dialect=eng.dialect)
            with eng.begin() as conn:
                conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {ddl}"))


def engine() -> Engine:
    return _engine_for(ledger_url())


def _retrying(fn, attempts: int = 5):
    """SQLite may answer 'database is locked' under a burst of writers; retry briefly."""
    for n in range(attempts):
        try:
            return fn()
        except OperationalError:
            if n == attempts - 1:
                raise
            time.sleep(0.2 * (n + 1))
    return None  # pragma: no cover


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _rows(stmt, conn: Connection | None = None) -> list:
    """The statement's rows as mappings, through ``conn`` (inside its transaction) or a
    connection of its own."""
    if conn is not None:
        return conn.execute(stmt).mappings().all()
    with engine().connect() as c:
        return c.execute(stmt).mappings().all()


def _upsert(table: Table, row: dict, keys: Iterable[str]) -> None:
    _upsert_many(table, [row], keys)


def _upsert_many(
    table: Table, rows: list[dict], keys: Iterable[str], conn: Connection | None = None
) -> None:
    key_names = list(keys)

    def write(c: Connection) -> None:
        for row in rows:
            cond = and_(*[table.c[k] == row[k] for k in key_names])
            c.execute(delete(table).where(cond))
        c.execute(table.insert(), rows)

    if conn is not None:
        write(conn)
        return

    def run():
        with engine().begin() as c:
            write(c)

    _retrying(run)


def _in_range(stmt, table: Table, store_ids, start: date | None, end: date | None):
    """``stmt`` limited to these stores (None: all) and days ``start`` … ``end`` (inclusive)."""
    if store_ids is not None:
        stmt = stmt.where(table.c.store_id.in_(list(store_ids)))
    if start is not None:
        stmt = stmt.where(table.c.ds >= start)
    if end is not None:
        stmt = stmt.where(table.c.ds <= end)
    return stmt
