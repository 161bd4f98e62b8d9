"""The ledger's tables as the code reads and writes them, its schema version, and the numbered
migrations that lead a ledger there.

Tables
- ``partition_builds``: one row per (store_id, ds), the latest build outcome (written by the
  per-store dbt flow).
- ``partition_dispatches``: one row per (store_id, ds, attempt), written by the orchestrator
  *before* it creates the child run, so a killed orchestrator's successor finds the run. A
  child run that builds several days has one row per day, all with its idempotency key.
- ``dispatch_locks``: one row per store, the per-store claim of dispatch decisions.
- ``schedule_pauses``: store deployments an orchestrator paused, so they are always resumed.
- ``schema_version``: one row per version the ledger was brought to (the highest one is its
  version). Not in ``metadata``: that holds the data tables only (``bench`` empties those).

Changing the schema: never edit a released migration (its number, description or what it
does); append one. Say version 2 adds a nullable column to ``partition_builds``:

1. add ``Column("retries", Integer)`` to ``partition_builds`` below (what the code uses);
2. append the migration and bump the version::

       def _add_build_retries(conn: Connection) -> None:
           add_column(conn, "partition_builds", Column("retries", Integer))


       MIGRATIONS = [
           Migration(1, "...", _create_version_1),
           Migration(2, "partition_builds.retries: attempts the build took", _add_build_retries),
       ]
       SCHEMA_VERSION = 2

3. add ``(2, "partition_builds.retries: attempts the build took")`` to ``RELEASED`` in
   tests/unit/test_ledger_schema.py.

A new table is ``Table(..., MetaData()).create(conn)`` in its migration (the definition frozen
there, as ``_version_1`` below is) plus the table in ``metadata``. A new column must be
nullable or have a ``server_default``: old rows get NULL or the default. Every migration runs
in a transaction of its own, under the ledger's schema lock (see migrate.py), and the version
is stamped in the same transaction. tests/unit/test_ledger_schema.py checks that a ledger
built by the migrations from nothing is exactly ``metadata``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from sqlalchemy import (
    Column,
    Connection,
    Date,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

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
    # Source fingerprint of the input range, taken before dbt read it (clickstream.adapters.landing).
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

schema_version = Table(
    "schema_version",
    MetaData(),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", DateTime, nullable=False),
)


def add_column(conn: Connection, table: str, column: Column) -> None:
    """``ALTER TABLE <table> ADD COLUMN``, the type spelled for the connection's database."""
    ddl = column.type.compile(dialect=conn.dialect)
    if not column.nullable and column.server_default is None:
        raise ValueError(f"{table}.{column.name}: a new column needs NULL or a server_default")
    conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column.name} {ddl}"))


def version_1() -> MetaData:
    """The tables of schema version 1, frozen: what every unversioned ledger (written before
    the ledger had a version) is checked against, and what migration 1 creates. Never change
    it; later versions are migrations."""
    md = MetaData()
    Table(
        "partition_builds",
        md,
        Column("store_id", String(40), primary_key=True),
        Column("ds", Date, primary_key=True),
        Column("status", String(16), nullable=False),
        Column("flow_run_id", String(36)),
        Column("mart_rows", Integer),
        Column("events", Integer),
        Column("sessions", Integer),
        Column("source_event_count", Integer),
        Column("source_max_loaded_at", DateTime),
        Column("fingerprint", String(80)),
        Column("source_files", String(64)),
        Column("started_at", DateTime),
        Column("work_started_at", DateTime),
        Column("work_ended_at", DateTime),
        Column("dbt_node_seconds", Float),
        Column("built_at", DateTime, nullable=False),
        Column("error", Text),
    )
    Table(
        "partition_dispatches",
        md,
        Column("store_id", String(40), primary_key=True),
        Column("ds", Date, primary_key=True),
        Column("attempt", Integer, primary_key=True),
        Column("idempotency_key", String(120), nullable=False),
        Column("flow_run_id", String(36)),
        Column("orchestrator_run_id", String(36)),
        Column("submitted_at", DateTime, nullable=False),
        Column("planned_at", DateTime),
    )
    Table(
        "dispatch_locks",
        md,
        Column("store_id", String(40), primary_key=True),
        Column("locked_at", DateTime, nullable=False),
    )
    Table(
        "schedule_pauses",
        md,
        Column("deployment_id", String(36), primary_key=True),
        Column("store_id", String(40), nullable=False),
        Column("paused_by", String(36), nullable=False),
        Column("paused_at", DateTime, nullable=False),
    )
    return md


def _create_version_1(conn: Connection) -> None:
    version_1().create_all(conn)


class Migration(NamedTuple):
    version: int
    description: str
    apply: Callable[[Connection], None]


# Append-only (see the module docstring): migration N brings a ledger from version N-1 to N.
MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "partition_builds, partition_dispatches, dispatch_locks, schedule_pauses",
        _create_version_1,
    ),
]
SCHEMA_VERSION = 1
