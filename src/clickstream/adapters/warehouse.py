"""Which warehouse dbt writes to, and what the project reads back from it.

``CLICKSTREAM_DBT_TARGET`` selects the dbt target: ``duckdb`` (default; one file per store
under ``.clickstream/warehouse``) or ``postgres`` (one schema per store, connection from the
``CLICKSTREAM_PG_*`` environment variables).

Reading back happens twice: the store flow reads the rows it just built (the counts it
records in the ledger), and planning reads every mart row of the range, so that a partition
counts as completed only while its row is there and still holds what the ledger recorded.

DuckDB lets no other process open a file while one process writes it, readers included, and a
reader that opens it first makes the writer's open fail. A build therefore holds an exclusive
``flock`` on ``<database>.duckdb.lock`` from before dbt opens the file until after its read
back; planning takes a shared lock without waiting and, when a build holds the store, keeps
the ledger's word for that store and says so (:class:`MartView.unchecked`).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from clickstream import settings
from clickstream.core.stores import Store

MART = "clickstream_daily"
SESSIONS = "int_clickstream__sessions"
SCHEMA = "clickstream"


def dbt_target() -> str:
    """``CLICKSTREAM_DBT_TARGET``: ``duckdb`` (default) or ``postgres`` (validated in settings)."""
    return settings.get().dbt_target


def duckdb_path(store: Store) -> Path:
    return settings.warehouse_dir() / f"{store.database}.duckdb"


def dbt_environment() -> dict[str, str]:
    """Environment the dbt profile reads (set before invoking dbt)."""
    return {"CLICKSTREAM_WAREHOUSE_DIR": str(settings.warehouse_dir())}


def pg_dsn(database: str | None = None) -> str:
    cfg = settings.get()
    password = cfg.pg_password.get_secret_value()
    auth = f"{cfg.pg_user}:{password}" if password else cfg.pg_user
    return f"postgresql://{auth}@{cfg.pg_host}:{cfg.pg_port}/{database or cfg.pg_database}"


def pg_url(database: str | None = None, driver: str = "psycopg2") -> str:
    """SQLAlchemy URL for the same connection (``postgresql+<driver>://``)."""
    return pg_dsn(database).replace("postgresql://", f"postgresql+{driver}://", 1)


# -- the DuckDB file lock ------------------------------------------------------------------
class WarehouseBusy(RuntimeError):
    """A build holds the store's DuckDB file."""


@contextlib.contextmanager
def store_lock(store: Store, *, exclusive: bool, wait_seconds: float) -> Iterator[None]:
    """flock on the store's lock file (DuckDB target only; a no-op on Postgres).

    ``wait_seconds=0`` fails at once with :class:`WarehouseBusy` when the lock is taken.
    """
    if dbt_target() != "duckdb":
        yield
        return
    path = duckdb_path(store).with_suffix(".duckdb.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise WarehouseBusy(
                        f"{store.store_id}: its warehouse file is in use by a build"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def release_dbt_duckdb() -> None:
    """Close dbt-duckdb's connection to the store's file.

    dbt-duckdb keeps one DuckDB connection open for the life of the process, to reuse it
    (``DuckDBConnectionManager._ENV``; dbt-duckdb is pinned exactly). A run's process lives on
    for a moment after it reports its final state, and while it holds the file, the next build
    of the store (another process) cannot open it and planning cannot read it. The build calls
    this while it still holds the store's lock. tests/harness/test_store_flow.py opens the file from
    another process right after a build, so a dbt-duckdb that changes this fails a test."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:  # the Postgres-only install has no dbt-duckdb
        return
    with DuckDBConnectionManager._LOCK:
        env, DuckDBConnectionManager._ENV = DuckDBConnectionManager._ENV, None
    if env is not None:
        env.close()


def _duckdb_read(store: Store, sql: str, params: list) -> list[tuple]:
    import duckdb

    path = duckdb_path(store)
    if not path.exists():
        return []
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.ConnectionException as exc:
        if "different configuration" not in str(exc):
            raise
        # This process (a dbt build, a test) already has the file open read-write: DuckDB
        # shares one instance per file per process, so connect with that configuration.
        con = duckdb.connect(str(path))
    try:
        exists = con.execute(
            "select count(*) from information_schema.tables "
            "where table_schema = ? and table_name = ?",
            [SCHEMA, MART],
        ).fetchone()[0]
        if not exists:
            return []
        return con.execute(
            sql.format(table=f"{SCHEMA}.{MART}").replace("%s", "?"), params
        ).fetchall()
    finally:
        con.close()


def _postgres_read(store: Store, sql: str, params: list) -> list[tuple]:
    import psycopg2

    with psycopg2.connect(pg_dsn()) as con, con.cursor() as cur:
        cur.execute("select to_regclass(%s)", [f"{store.database}.{MART}"])
        if cur.fetchone()[0] is None:
            return []
        cur.execute(sql.format(table=f"{store.database}.{MART}"), params)
        return cur.fetchall()


_MART_ROWS_SQL = (
    "select ds, count(*), coalesce(sum(events), 0), coalesce(sum(sessions), 0) "
    "from {table} where store_id = %s and ds between %s and %s group by ds"
)


@dataclass(frozen=True)
class MartRow:
    mart_rows: int
    events: int
    sessions: int


def read_mart_rows(store: Store, first: date, last: date) -> dict[date, MartRow]:
    """The mart rows of ``store`` between two dates (no lock: callers hold it)."""
    params = [store.store_id, first, last]
    if dbt_target() == "duckdb":
        rows = _duckdb_read(store, _MART_ROWS_SQL, params)
    else:
        rows = _postgres_read(store, _MART_ROWS_SQL, params)
    return {ds: MartRow(int(n), int(ev), int(se)) for ds, n, ev, se in rows}


def read_partition_counts(store: Store, days: Iterable[date]) -> dict[date, dict[str, int]]:
    """Rows each partition now has (mart rows, events, sessions), right after its build.

    Called by the build itself while it holds the store's lock."""
    days = sorted(set(days))
    found = read_mart_rows(store, days[0], days[-1])
    out = {}
    for ds in days:
        row = found.get(ds, MartRow(0, 0, 0))
        out[ds] = {"mart_rows": row.mart_rows, "events": row.events, "sessions": row.sessions}
    return out


@dataclass
class MartView:
    """What planning found in the warehouses: the mart rows of the stores it could read."""

    rows: dict[tuple[str, date], MartRow] = field(default_factory=dict)
    checked: set[str] = field(default_factory=set)
    unchecked: dict[str, str] = field(default_factory=dict)  # store -> why


def read_mart_view(stores: Iterable[Store], first: date, last: date) -> MartView:
    """Every mart row of the stores in [first, last]; a store a build holds is left unchecked."""
    view = MartView()
    with _MartReader() as reader:
        for store in stores:
            try:
                with store_lock(store, exclusive=False, wait_seconds=0):
                    found = reader.rows(store, first, last)
            except WarehouseBusy:
                view.unchecked[store.store_id] = "a build holds its warehouse file"
                continue
            except Exception as exc:  # unreadable warehouse: say so, keep the ledger's word
                view.unchecked[store.store_id] = f"{type(exc).__name__}: {exc}"[:200]
                continue
            view.checked.add(store.store_id)
            for ds, row in found.items():
                view.rows[(store.store_id, ds)] = row
    return view


class _MartReader:
    """:func:`read_mart_rows` for many stores at once, with the same results.

    On DuckDB, one in-memory connection ATTACHes each store file read-only in turn: opening a
    database instance per file and asking information_schema whether the mart exists cost
    about 40 ms per store, which made planning 100 stores take seconds; an ATTACH and a
    ``duckdb_tables()`` lookup cost a few ms. A file this process already has open (a build
    in the same process) cannot be attached: that store goes through :func:`read_mart_rows`.
    """

    def __init__(self) -> None:
        self.con = None

    def __enter__(self) -> _MartReader:
        return self

    def __exit__(self, *exc) -> None:
        if self.con is not None:
            self.con.close()

    def rows(self, store: Store, first: date, last: date) -> dict[date, MartRow]:
        if dbt_target() != "duckdb":
            return read_mart_rows(store, first, last)
        import duckdb

        path = duckdb_path(store)
        if not path.exists():
            return {}
        if self.con is None:
            self.con = duckdb.connect(":memory:")
        try:
            literal = str(path).replace("'", "''")
            self.con.execute(f"ATTACH '{literal}' AS mart_store (READ_ONLY)")
        except duckdb.Error:
            return read_mart_rows(store, first, last)
        try:
            exists = self.con.execute(
                "select count(*) from duckdb_tables() "
                "where database_name = 'mart_store' and schema_name = ? and table_name = ?",
                [SCHEMA, MART],
            ).fetchone()[0]
            if not exists:
                return {}
            sql = _MART_ROWS_SQL.format(table=f"mart_store.{SCHEMA}.{MART}").replace("%s", "?")
            found = self.con.execute(sql, [store.store_id, first, last]).fetchall()
        finally:
            self.con.execute("DETACH mart_store")
        return {ds: MartRow(int(n), int(ev), int(se)) for ds, n, ev, se in found}
