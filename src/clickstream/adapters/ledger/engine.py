"""How the ledger is reached: its URL, one engine per URL (its schema brought up to date when
created), SQLite's WAL pragmas, retries on a locked SQLite, and the shared row helpers."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from datetime import UTC, date, datetime
from functools import lru_cache

from sqlalchemy import Connection, Engine, Table, and_, create_engine, delete, event
from sqlalchemy.exc import OperationalError

from clickstream import settings
from clickstream.adapters.ledger.migrate import upgrade


def ledger_url() -> str:
    """``CLICKSTREAM_LEDGER_URL``, default a SQLite file under the state folder."""
    return settings.get().ledger


def open_engine(url: str) -> Engine:
    """A new engine on the ledger at ``url``, its schema brought to SCHEMA_VERSION first
    (migrate.py; raises LedgerSchemaError where it cannot be). Callers use ``engine()``."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        eng = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(eng, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            # WAL: readers never block the writer and vice versa, across processes.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    else:
        eng = create_engine(url, pool_pre_ping=True)
    try:
        upgrade(eng)
    except BaseException:
        eng.dispose()
        raise
    return eng


@lru_cache(maxsize=8)
def _engine_for(url: str) -> Engine:
    return open_engine(url)


def engine() -> Engine:
    """The engine of the configured ledger (one per URL and process)."""
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
