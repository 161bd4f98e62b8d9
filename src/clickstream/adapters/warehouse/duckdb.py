"""The DuckDB warehouse: one file per store under the warehouse folder, read back in place.

DuckDB lets no other process open a file while one process writes it, readers included, and a
reader that opens it first makes the writer's open fail. A build therefore holds an exclusive
``flock`` on ``<database>.duckdb.lock`` from before dbt opens the file until after its read
back; planning takes a shared lock without waiting and, when a build holds the store, keeps
the ledger's word for that store and says so (:class:`MartView.unchecked`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import date
from pathlib import Path

from clickstream import settings
from clickstream.adapters.warehouse import dbt_duckdb
from clickstream.adapters.warehouse.lock import file_lock
from clickstream.adapters.warehouse.rows import (
    MART,
    MART_ROWS_SQL,
    SCHEMA,
    MartRow,
    MartView,
    collect_view,
    mart_rows_from,
    partition_counts,
)
from clickstream.core.fingerprints import Fingerprint
from clickstream.core.stores import Store
from clickstream.core.windows import Window


def duckdb_path(store: Store) -> Path:
    return settings.warehouse_dir() / f"{store.database}.duckdb"


def _read(store: Store, sql: str, params: list) -> list[tuple]:
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


def read_mart_rows(store: Store, first: date, last: date) -> dict[date, MartRow]:
    """The mart rows of ``store`` between two dates (no lock: callers hold it)."""
    return mart_rows_from(_read(store, MART_ROWS_SQL, [store.store_id, first, last]))


class _MartReader:
    """:func:`read_mart_rows` for many stores at once, with the same results.

    One in-memory connection ATTACHes each store file read-only in turn: opening a database
    instance per file and asking information_schema whether the mart exists cost about 40 ms
    per store, which made planning 100 stores take seconds; an ATTACH and a
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
            sql = MART_ROWS_SQL.format(table=f"mart_store.{SCHEMA}.{MART}").replace("%s", "?")
            found = self.con.execute(sql, [store.store_id, first, last]).fetchall()
        finally:
            self.con.execute("DETACH mart_store")
        return mart_rows_from(found)


class DuckDBWarehouse:
    """:class:`clickstream.adapters.warehouse.Warehouse` on the ``duckdb`` dbt target."""

    target = "duckdb"

    def mart_rows(self, store: Store, first: date, last: date) -> dict[date, MartRow]:
        return read_mart_rows(store, first, last)

    def partition_counts(self, store: Store, days: Iterable[date]) -> dict[date, dict[str, int]]:
        days = sorted(set(days))
        return partition_counts(read_mart_rows(store, days[0], days[-1]), days)

    def mart_view(self, stores: Iterable[Store], first: date, last: date) -> MartView:
        with _MartReader() as reader:
            return collect_view(
                stores,
                first,
                last,
                rows=reader.rows,
                shared_lock=lambda s: self.store_lock(s, exclusive=False, wait_seconds=0),
            )

    def store_lock(
        self, store: Store, *, exclusive: bool, wait_seconds: float
    ) -> AbstractContextManager[None]:
        return file_lock(
            duckdb_path(store).with_suffix(".duckdb.lock"),
            exclusive=exclusive,
            wait_seconds=wait_seconds,
            what=store.store_id,
        )

    def dbt_environment(self) -> dict[str, str]:
        dbt_duckdb.check()  # fail before dbt runs, not after, on an unpinned dbt-duckdb
        return {"CLICKSTREAM_WAREHOUSE_DIR": str(settings.warehouse_dir())}

    def release_dbt(self) -> None:
        dbt_duckdb.release_dbt_duckdb()

    def raw_fingerprints(
        self, store: Store, windows: Sequence[Window]
    ) -> dict[date, Fingerprint] | None:
        return None  # the raw events are the landing files, not in the warehouse
