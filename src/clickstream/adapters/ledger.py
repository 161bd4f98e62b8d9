"""The partition ledger: what was built, when, from which source slice, and what was dispatched.

It lives outside the store warehouses on purpose: DuckDB lets one process open a file at a
time (readers included), and planning, ``clickstream status`` and catch-up must read the
ledger while any store's dbt run holds its warehouse. Default: a SQLite file in WAL mode under
``.clickstream/``; scale path: ``CLICKSTREAM_LEDGER_URL=postgresql+psycopg2://...``.

Tables
- ``partition_builds``: one row per (store_id, ds), the latest build outcome (written by the
  per-store dbt flow).
- ``partition_dispatches``: one row per (store_id, ds, attempt), written by the orchestrator
  *before* it creates the child run, so a killed orchestrator's successor finds the run. A
  child run that builds several days has one row per day, all with its idempotency key.
- ``schedule_pauses``: store deployments an orchestrator paused, so they are always resumed.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from functools import lru_cache

from sqlalchemy import (
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    cast,
    create_engine,
    delete,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from clickstream import settings
from clickstream.core.records import BuildRecord, BuildSummary, DispatchRecord
from clickstream.core.states import BUILD_STATUSES

metadata = MetaData()

partition_builds = Table(
    "partition_builds",
    metadata,
    Column("store_id", String(40), primary_key=True),
    Column("ds", Date, primary_key=True),
    Column("status", String(16), nullable=False),
    Column("flow_run_id", String(36)),
    Column("mart_rows", Integer),
    Column("events", Integer),
    Column("sessions", Integer),
    Column("source_event_count", Integer),
    Column("source_max_loaded_at", DateTime),
    # Source fingerprint of the input range, taken before dbt read it (clickstream.source).
    Column("fingerprint", String(80)),
    # Token of the landing files it was taken from: unchanged files = unchanged fingerprint.
    Column("source_files", String(64)),
    Column("started_at", DateTime),
    # Inside the dbt-global slot: when dbt itself ran (limits and benchmarks use these).
    Column("work_started_at", DateTime),
    Column("work_ended_at", DateTime),
    # dbt's own node execution time of the invocation that built it, shared equally among the
    # days of that invocation (benchmarks: the time dbt really worked).
    Column("dbt_node_seconds", Float),
    Column("built_at", DateTime, nullable=False),
    Column("error", Text),
)

partition_dispatches = Table(
    "partition_dispatches",
    metadata,
    Column("store_id", String(40), primary_key=True),
    Column("ds", Date, primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("idempotency_key", String(120), nullable=False),
    Column("flow_run_id", String(36)),
    Column("orchestrator_run_id", String(36)),
    Column("submitted_at", DateTime, nullable=False),
    # When the orchestrator decided to build it (its plan): the child skips a day another
    # run built after this moment from the same data.
    Column("planned_at", DateTime),
)

# One row per store: a dispatch decision updates it first, which takes a row lock on
# Postgres and the write lock on SQLite, so two orchestrators deciding about the same store
# take turns (see dispatch_claim).
dispatch_locks = Table(
    "dispatch_locks",
    metadata,
    Column("store_id", String(40), primary_key=True),
    Column("locked_at", DateTime, nullable=False),
)

schedule_pauses = Table(
    "schedule_pauses",
    metadata,
    Column("deployment_id", String(36), primary_key=True),
    Column("store_id", String(40), nullable=False),
    Column("paused_by", String(36), nullable=False),
    Column("paused_at", DateTime, nullable=False),
)


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


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def record_builds(records: Iterable[BuildRecord]) -> None:
    """Upsert the outcome of several partitions (one multi-day build) in one transaction."""
    rows = [r.__dict__.copy() for r in records]
    for row in rows:
        if row["status"] not in BUILD_STATUSES:
            raise ValueError(f"status must be one of {BUILD_STATUSES}, got {row['status']!r}")
    if rows:
        _upsert_many(partition_builds, rows, ["store_id", "ds"])


def _in_range(stmt, table: Table, store_ids, start: date | None, end: date | None):
    if store_ids is not None:
        stmt = stmt.where(table.c.store_id.in_(list(store_ids)))
    if start is not None:
        stmt = stmt.where(table.c.ds >= start)
    if end is not None:
        stmt = stmt.where(table.c.ds <= end)
    return stmt


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


def delete_builds(store_id: str, days: Iterable[date]) -> int:
    """Forget build outcomes (operator tool; the next catch-up sees them as missing)."""
    days = list(days)

    def run():
        with engine().begin() as conn:
            res = conn.execute(
                delete(partition_builds).where(
                    partition_builds.c.store_id == store_id, partition_builds.c.ds.in_(days)
                )
            )
            return res.rowcount

    return _retrying(run)


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


def count_dispatches(store_id: str | None = None) -> int:
    stmt = select(func.count()).select_from(partition_dispatches)
    if store_id is not None:
        stmt = stmt.where(partition_dispatches.c.store_id == store_id)
    with engine().connect() as conn:
        return int(conn.execute(stmt).scalar_one())


def record_pause(deployment_id: str, store_id: str, paused_by: str) -> None:
    _upsert(
        schedule_pauses,
        {
            "deployment_id": deployment_id,
            "store_id": store_id,
            "paused_by": paused_by,
            "paused_at": utcnow(),
        },
        ["deployment_id"],
    )


def read_pauses() -> list[dict]:
    with engine().connect() as conn:
        return [dict(r) for r in conn.execute(select(schedule_pauses)).mappings().all()]


def clear_pause(deployment_id: str) -> None:
    def run():
        with engine().begin() as conn:
            conn.execute(
                delete(schedule_pauses).where(schedule_pauses.c.deployment_id == deployment_id)
            )

    _retrying(run)
