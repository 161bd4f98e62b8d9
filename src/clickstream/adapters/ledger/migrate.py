"""Bringing a ledger to SCHEMA_VERSION when an engine opens it: a fresh one is built by the
migrations, an unversioned one is checked and stamped version 1, a newer one is refused.

Rules, in order, each step in a transaction of its own under the ledger's schema lock
(Postgres: ``pg_advisory_xact_lock``; SQLite: the write lock, ``BEGIN IMMEDIATE``), which
re-reads the version first, so processes opening the ledger at the same moment take turns and
each finds the work of the one before:

- no ``schema_version`` table and none of the ledger's tables (a fresh database, or the
  warehouse database on the scale path): run every migration, from 1;
- no ``schema_version`` table but ledger tables (written before the ledger had a version:
  every ledger in the field then): check them column by column against version 1 (each
  column present with a compatible type); add the nullable columns and the tables older
  releases did not have yet; refuse a missing required column, naming table and column;
  stamp version 1 (then run the migrations above it);
- version N < SCHEMA_VERSION: run migrations N+1 … in order, each stamped with its work;
- version N > SCHEMA_VERSION: refuse (a newer version of this project wrote it).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Column, Connection, Engine, func, inspect, select, text
from sqlalchemy.exc import IntegrityError

from clickstream.adapters.ledger.schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    add_column,
    schema_version,
    version_1,
)

# Any constant: the advisory lock of the ledger's schema (Postgres scopes it per database).
_PG_SCHEMA_LOCK = 0x636C6B6C6564  # "clkled"


class LedgerSchemaError(RuntimeError):
    """The ledger cannot be used by this code: newer than it, or not one it can adopt."""


def upgrade(eng: Engine) -> None:
    """Bring the ledger behind ``eng`` to SCHEMA_VERSION (see the module docstring)."""
    with eng.connect() as conn:
        if _version(conn) == SCHEMA_VERSION:  # the common case: no lock taken
            return
    where = eng.url.render_as_string(hide_password=True)
    races = 0
    while True:
        try:
            with eng.begin() as conn:
                _lock(conn)
                done = _step(conn, where)
        except IntegrityError:
            # Another process stamped the same version first (only where no lock applies).
            races += 1
            if races > 3:
                raise
            continue
        if done:
            return


def _lock(conn: Connection) -> None:
    """Hold the ledger's schema lock until this transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SCHEMA_LOCK})
    elif conn.dialect.name == "sqlite":
        # pysqlite begins lazily (before the first write); take the write lock now instead.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _version(conn: Connection) -> int | None:
    """The ledger's schema version; None: it has none recorded."""
    if not inspect(conn).has_table(schema_version.name):
        return None
    return conn.execute(select(func.max(schema_version.c.version))).scalar()


def _stamp(conn: Connection, version: int, description: str) -> None:
    applied_at = datetime.now(UTC).replace(tzinfo=None)
    conn.execute(
        schema_version.insert().values(
            version=version, description=description, applied_at=applied_at
        )
    )


def _step(conn: Connection, where: str) -> bool:
    """One step towards SCHEMA_VERSION, under the lock; True: the ledger is there."""
    version = _version(conn)
    if version is None:
        schema_version.create(conn, checkfirst=True)
        names = set(inspect(conn).get_table_names())
        if names & set(version_1().tables):
            adopt_unversioned(conn, where)
            _stamp(conn, 1, f"{MIGRATIONS[0].description} (adopted: checked, was unversioned)")
            return SCHEMA_VERSION == 1
        version = 0
    if version > SCHEMA_VERSION:
        raise LedgerSchemaError(
            f"the ledger at {where} has schema version {version}, newer than this code's "
            f"{SCHEMA_VERSION}: it was written by a newer version of this project. Upgrade this "
            "checkout (or point CLICKSTREAM_LEDGER_URL at another ledger)."
        )
    if version == SCHEMA_VERSION:
        return True
    migration = MIGRATIONS[version]
    assert migration.version == version + 1, "MIGRATIONS must be numbered 1, 2, 3, ..."
    migration.apply(conn)
    _stamp(conn, migration.version, migration.description)
    return migration.version == SCHEMA_VERSION


def adopt_unversioned(conn: Connection, where: str) -> None:
    """Make a ledger written before versions existed version 1, or refuse it: every column of
    version 1 present with a compatible type; the nullable ones and whole tables that older
    releases did not have yet are added (old rows read NULL there)."""
    insp = inspect(conn)
    have_tables = set(insp.get_table_names())
    for table in version_1().sorted_tables:
        if table.name not in have_tables:
            table.create(conn)
            continue
        have = {c["name"]: c for c in insp.get_columns(table.name)}
        for column in table.columns:
            found = have.get(column.name)
            if found is None:
                if not column.nullable:
                    raise LedgerSchemaError(
                        f"the ledger at {where}: table {table.name} lacks the required column "
                        f"{column.name}, so it is not a ledger this project wrote (or it is "
                        "damaged); it cannot be adopted as schema version 1"
                    )
                add_column(conn, table.name, Column(column.name, column.type))
                continue
            problem = _incompatible(column, found, conn)
            if problem:
                raise LedgerSchemaError(
                    f"the ledger at {where}: column {table.name}.{column.name} {problem}; "
                    "it cannot be adopted as schema version 1"
                )


def _incompatible(want: Column, found: dict, conn: Connection) -> str | None:
    """Why the reflected column ``found`` cannot hold what ``want`` holds (None: it can)."""
    got = found["type"]
    spelled = want.type.compile(dialect=conn.dialect)
    try:
        got_python = got.python_type
    except NotImplementedError:
        return f"has type {got}, not {spelled}"
    if got_python is not want.type.python_type:
        return f"has type {got}, not {spelled}"
    want_len, got_len = getattr(want.type, "length", None), getattr(got, "length", None)
    if want_len and got_len and got_len < want_len:
        return f"has type {got}, shorter than {spelled}"
    if want.nullable and not found["nullable"] and found.get("default") is None:
        return "is NOT NULL, where version 1 allows NULL"
    return None
