"""Which warehouse dbt writes to, and what the project reads back from it: one interface
(:class:`Warehouse`), a DuckDB and a Postgres implementation.

``CLICKSTREAM_DBT_TARGET`` selects the dbt target: ``duckdb`` (default; one file per store
under ``.clickstream/warehouse``, :mod:`.duckdb`) or ``postgres`` (one schema per store,
connection from the ``CLICKSTREAM_PG_*`` settings, :mod:`.postgres`). :func:`warehouse`
returns the implementation of the configured target, :func:`for_target` that of a named one.

Reading back happens twice: the store flow reads the rows it just built (the counts it
records in the ledger), and planning reads every mart row of the range, so that a partition
counts as completed only while its row is there and still holds what the ledger recorded.
On DuckDB both happen under the store's file lock (:mod:`.lock`, see :mod:`.duckdb`).

The module-level functions below are the names callers used before the package existed;
each delegates to the configured implementation.

This package may import clickstream.core, clickstream.settings and clickstream.names only
(and, lazily, duckdb, psycopg2 and dbt-duckdb).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import date
from typing import Protocol, runtime_checkable

from clickstream import settings
from clickstream.adapters.warehouse.dbt_duckdb import release_dbt_duckdb
from clickstream.adapters.warehouse.duckdb import DuckDBWarehouse, duckdb_path
from clickstream.adapters.warehouse.postgres import PostgresWarehouse, pg_dsn, pg_url
from clickstream.adapters.warehouse.rows import (
    MART,
    SCHEMA,
    SESSIONS,
    MartRow,
    MartView,
    WarehouseBusy,
)
from clickstream.core.fingerprints import Fingerprint
from clickstream.core.stores import Store
from clickstream.core.windows import Window

__all__ = [
    "MART",
    "SCHEMA",
    "SESSIONS",
    "DuckDBWarehouse",
    "MartRow",
    "MartView",
    "PostgresWarehouse",
    "Warehouse",
    "WarehouseBusy",
    "dbt_environment",
    "dbt_target",
    "duckdb_path",
    "for_target",
    "pg_dsn",
    "pg_url",
    "read_mart_rows",
    "read_mart_view",
    "read_partition_counts",
    "release_dbt_duckdb",
    "store_lock",
    "warehouse",
]


@runtime_checkable
class Warehouse(Protocol):
    """What the project needs of the warehouse of one dbt target."""

    target: str  # the dbt target: "duckdb" or "postgres"

    def mart_rows(self, store: Store, first: date, last: date) -> dict[date, MartRow]:
        """The mart rows of ``store`` between two dates (no lock: callers hold it)."""
        ...

    def partition_counts(self, store: Store, days: Iterable[date]) -> dict[date, dict[str, int]]:
        """Rows each partition now has (mart_rows, events, sessions; zeros when missing),
        right after its build; called by the build while it holds the store's lock."""
        ...

    def mart_view(self, stores: Iterable[Store], first: date, last: date) -> MartView:
        """Planning's view: every mart row of the stores in [first, last]; a store a build
        holds, or whose warehouse cannot be read, is left unchecked with the reason."""
        ...

    def store_lock(
        self, store: Store, *, exclusive: bool, wait_seconds: float
    ) -> AbstractContextManager[None]:
        """Exclusive around a build, shared around a read; ``wait_seconds=0`` raises
        :class:`WarehouseBusy` at once when taken (DuckDB: a file lock; Postgres: none)."""
        ...

    def dbt_environment(self) -> dict[str, str]:
        """Environment the dbt profile reads (set around the invocation). Raises when the
        target's dbt adapter is not the version the project relies on."""
        ...

    def release_dbt(self) -> None:
        """After a build, still under its lock: close what dbt keeps open of the warehouse."""
        ...

    def raw_fingerprints(
        self, store: Store, windows: Sequence[Window]
    ) -> dict[date, Fingerprint] | None:
        """Source fingerprints when the raw events live in the warehouse (Postgres:
        ``raw.events``); None when they do not (DuckDB: the landing files are the source)."""
        ...


def for_target(target: str) -> Warehouse:
    """The implementation for a dbt target name."""
    if target == "duckdb":
        return DuckDBWarehouse()
    if target == "postgres":
        return PostgresWarehouse()
    raise ValueError(f"unknown dbt target {target!r}: expected one of {settings.DBT_TARGETS}")


def warehouse() -> Warehouse:
    """The implementation of the configured target (``CLICKSTREAM_DBT_TARGET``, read now)."""
    return for_target(dbt_target())


def dbt_target() -> str:
    """``CLICKSTREAM_DBT_TARGET``: ``duckdb`` (default) or ``postgres`` (validated in settings)."""
    return settings.get().dbt_target


# -- module-level delegates to the configured implementation --------------------------------
def dbt_environment() -> dict[str, str]:
    """Environment the dbt profile reads (set before invoking dbt)."""
    return warehouse().dbt_environment()


def store_lock(
    store: Store, *, exclusive: bool, wait_seconds: float
) -> AbstractContextManager[None]:
    """The store's lock (DuckDB target only; a no-op on Postgres).

    ``wait_seconds=0`` fails at once with :class:`WarehouseBusy` when the lock is taken.
    """
    return warehouse().store_lock(store, exclusive=exclusive, wait_seconds=wait_seconds)


def read_mart_rows(store: Store, first: date, last: date) -> dict[date, MartRow]:
    """The mart rows of ``store`` between two dates (no lock: callers hold it)."""
    return warehouse().mart_rows(store, first, last)


def read_partition_counts(store: Store, days: Iterable[date]) -> dict[date, dict[str, int]]:
    """Rows each partition now has (mart rows, events, sessions), right after its build."""
    return warehouse().partition_counts(store, days)


def read_mart_view(stores: Iterable[Store], first: date, last: date) -> MartView:
    """Every mart row of the stores in [first, last]; a store a build holds is left unchecked."""
    return warehouse().mart_view(stores, first, last)
