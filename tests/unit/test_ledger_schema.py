"""The ledger's schema version and migrations: fresh, unversioned (today's and an older
release's), damaged, newer, concurrent. On SQLite in tmp_path, and on PostgreSQL (a throwaway
database) where it is reachable."""

from __future__ import annotations

import threading
import uuid
from datetime import date, datetime

import pytest
from sqlalchemy import Column, Integer, inspect, select, text

from clickstream.adapters import ledger
from clickstream.adapters.ledger import migrate, schema
from clickstream.adapters.ledger.engine import open_engine

# Every migration ever released, as (number, description). Append a line when you add one;
# never edit or remove a line (a released ledger was stamped with it).
RELEASED = [
    (1, "partition_builds, partition_dispatches, dispatch_locks, schedule_pauses"),
]

# The tables exactly as the unversioned ledger (main before versions) created them: SQLAlchemy's
# DDL for the ledger.py tables of that time, {ts} = the dialect's timestamp type.
TODAY_DDL = [
    """CREATE TABLE dispatch_locks (
        store_id VARCHAR(40) NOT NULL,
        locked_at {ts} NOT NULL,
        PRIMARY KEY (store_id))""",
    """CREATE TABLE partition_builds (
        store_id VARCHAR(40) NOT NULL,
        ds DATE NOT NULL,
        status VARCHAR(16) NOT NULL,
        flow_run_id VARCHAR(36),
        mart_rows INTEGER,
        events INTEGER,
        sessions INTEGER,
        source_event_count INTEGER,
        source_max_loaded_at {ts},
        fingerprint VARCHAR(80),
        source_files VARCHAR(64),
        started_at {ts},
        work_started_at {ts},
        work_ended_at {ts},
        dbt_node_seconds FLOAT,
        built_at {ts} NOT NULL,
        error TEXT,
        PRIMARY KEY (store_id, ds))""",
    """CREATE TABLE partition_dispatches (
        store_id VARCHAR(40) NOT NULL,
        ds DATE NOT NULL,
        attempt INTEGER NOT NULL,
        idempotency_key VARCHAR(120) NOT NULL,
        flow_run_id VARCHAR(36),
        orchestrator_run_id VARCHAR(36),
        submitted_at {ts} NOT NULL,
        planned_at {ts},
        PRIMARY KEY (store_id, ds, attempt))""",
    """CREATE TABLE schedule_pauses (
        deployment_id VARCHAR(36) NOT NULL,
        store_id VARCHAR(40) NOT NULL,
        paused_by VARCHAR(36) NOT NULL,
        paused_at {ts} NOT NULL,
        PRIMARY KEY (deployment_id))""",
]

# The first release (ba2cc17): no work_started_at/work_ended_at, source_files,
# dbt_node_seconds, planned_at; no dispatch_locks table.
OLDEST_DDL = [
    """CREATE TABLE partition_builds (
        store_id VARCHAR(40) NOT NULL,
        ds DATE NOT NULL,
        status VARCHAR(16) NOT NULL,
        flow_run_id VARCHAR(36),
        mart_rows INTEGER,
        events INTEGER,
        sessions INTEGER,
        source_event_count INTEGER,
        source_max_loaded_at {ts},
        fingerprint VARCHAR(80),
        started_at {ts},
        built_at {ts} NOT NULL,
        error TEXT,
        PRIMARY KEY (store_id, ds))""",
    """CREATE TABLE partition_dispatches (
        store_id VARCHAR(40) NOT NULL,
        ds DATE NOT NULL,
        attempt INTEGER NOT NULL,
        idempotency_key VARCHAR(120) NOT NULL,
        flow_run_id VARCHAR(36),
        orchestrator_run_id VARCHAR(36),
        submitted_at {ts} NOT NULL,
        PRIMARY KEY (store_id, ds, attempt))""",
    TODAY_DDL[3],  # schedule_pauses
]

T0 = datetime(2026, 11, 1, 12, 0, 0)
BUILD = {
    "store_id": "a",
    "ds": date(2026, 11, 1),
    "status": "completed",
    "flow_run_id": "r1",
    "mart_rows": 1,
    "events": 10,
    "sessions": 3,
    "source_event_count": 10,
    "source_max_loaded_at": T0,
    "fingerprint": "10:abc",
    "started_at": T0,
    "built_at": T0,
    "error": None,
}
DISPATCH = {
    "store_id": "a",
    "ds": date(2026, 11, 1),
    "attempt": 1,
    "idempotency_key": "k1",
    "flow_run_id": "r1",
    "orchestrator_run_id": "o1",
    "submitted_at": T0,
}
PAUSE = {"deployment_id": "d1", "store_id": "a", "paused_by": "o1", "paused_at": T0}
NEW_BUILD_COLUMNS = {"source_files", "work_started_at", "work_ended_at", "dbt_node_seconds"}


class Db:
    """A ledger database of one dialect: its URL, raw DDL/DML, and every engine opened on it
    (disposed at the end)."""

    def __init__(self, url: str, ts: str):
        self.url, self.ts, self.engines = url, ts, []

    def open(self):
        eng = open_engine(self.url)
        self.engines.append(eng)
        return eng

    def raw(self, *statements: str, rows: dict | None = None) -> None:
        from sqlalchemy import create_engine

        eng = create_engine(self.url)
        try:
            with eng.begin() as conn:
                for s in statements:
                    conn.execute(text(s.format(ts=self.ts)))
                for table, row in (rows or {}).items():
                    cols = ", ".join(row)
                    conn.execute(
                        text(f"INSERT INTO {table} ({cols}) VALUES (:{', :'.join(row)})"), row
                    )
        finally:
            eng.dispose()

    def version(self) -> int | None:
        from sqlalchemy import create_engine

        eng = create_engine(self.url)
        try:
            with eng.connect() as conn:
                return migrate._version(conn)
        finally:
            eng.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    if request.param == "sqlite":
        d = Db(f"sqlite:///{tmp_path / 'ledger.sqlite'}", "DATETIME")
        yield d
        for eng in d.engines:
            eng.dispose()
        return
    from clickstream.adapters.warehouse import pg_url
    from clickstream.local.postgres import drop_database, ensure_database, postgres_reachable

    ok, why = postgres_reachable()
    if not ok:
        pytest.skip(why)
    name = f"clickstream_ledger_test_{uuid.uuid4().hex[:8]}"
    ensure_database(name)
    d = Db(pg_url(name), "TIMESTAMP WITHOUT TIME ZONE")
    try:
        yield d
    finally:
        for eng in d.engines:
            eng.dispose()
        drop_database(name)


def _table_rows(eng, table: str, columns) -> list[tuple]:
    """The rows of ``table`` (these columns, typed as the code reads them)."""
    t = schema.metadata.tables[table]
    with eng.connect() as conn:
        return [tuple(r) for r in conn.execute(select(*[t.c[c] for c in columns])).all()]


def _stamps(eng) -> list[tuple[int, str]]:
    with eng.connect() as conn:
        rows = conn.execute(text("SELECT version, description FROM schema_version")).all()
    return sorted((r[0], r[1]) for r in rows)


def test_migrations_are_append_only():
    """Released migrations keep their number and description; new ones are appended in
    order, and SCHEMA_VERSION is the last one's number."""
    have = [(m.version, m.description) for m in schema.MIGRATIONS]
    assert have[: len(RELEASED)] == RELEASED, "a released migration was edited or removed"
    assert have == RELEASED, "a migration was added: append it to RELEASED above"
    assert [v for v, _ in have] == list(range(1, len(have) + 1))
    assert schema.SCHEMA_VERSION == have[-1][0] == ledger.SCHEMA_VERSION


def test_fresh_ledger_is_created_and_stamped(db):
    eng = db.open()
    assert _stamps(eng) == [(1, RELEASED[0][1])]
    assert set(schema.metadata.tables) <= set(inspect(eng).get_table_names())
    db.open()  # a second open finds the version and does nothing
    assert _stamps(eng) == [(1, RELEASED[0][1])]


def test_migrations_from_nothing_build_exactly_the_tables_the_code_uses(db):
    """A fresh ledger is built by the migrations; the code reads and writes ``metadata``.
    Change a table without a migration (or the reverse) and this fails."""
    insp = inspect(db.open())
    for table in schema.metadata.sorted_tables:
        got = {c["name"]: c for c in insp.get_columns(table.name)}
        assert set(got) == set(table.columns.keys()), table.name
        for column in table.columns:
            found = got[column.name]
            assert found["type"].python_type is column.type.python_type, column
            assert found["nullable"] == column.nullable, column
        pk = insp.get_pk_constraint(table.name)["constrained_columns"]
        assert set(pk) == {c.name for c in table.primary_key.columns}, table.name


def test_unversioned_ledger_of_today_is_stamped_1_with_every_row_intact(db):
    build = {**BUILD, "source_files": "f1", "work_started_at": T0, "work_ended_at": T0}
    build["dbt_node_seconds"] = 1.5
    dispatch = {**DISPATCH, "planned_at": T0}
    lock = {"store_id": "a", "locked_at": T0}
    db.raw(
        *TODAY_DDL,
        rows={
            "partition_builds": build,
            "partition_dispatches": dispatch,
            "dispatch_locks": lock,
            "schedule_pauses": PAUSE,
        },
    )
    assert db.version() is None
    eng = db.open()
    assert _stamps(eng) == [(1, f"{RELEASED[0][1]} (adopted: checked, was unversioned)")]
    for table, row in [
        ("partition_builds", build),
        ("partition_dispatches", dispatch),
        ("dispatch_locks", lock),
        ("schedule_pauses", PAUSE),
    ]:
        assert _table_rows(eng, table, row) == [tuple(row.values())], table
    with eng.connect() as conn:  # and the code reads them
        assert ledger.read_builds(conn=conn)[("a", date(2026, 11, 1))].dbt_node_seconds == 1.5
        latest = ledger.read_latest_dispatches(conn=conn)
    assert latest[("a", date(2026, 11, 1))].planned_at == T0


def test_unversioned_ledger_of_an_older_release_gets_the_new_columns_and_tables(db):
    db.raw(
        *OLDEST_DDL,
        rows={
            "partition_builds": BUILD,
            "partition_dispatches": DISPATCH,
            "schedule_pauses": PAUSE,
        },
    )
    eng = db.open()
    assert [v for v, _ in _stamps(eng)] == [1]
    insp = inspect(eng)
    assert {c["name"] for c in insp.get_columns("partition_builds")} >= NEW_BUILD_COLUMNS
    assert "planned_at" in {c["name"] for c in insp.get_columns("partition_dispatches")}
    assert "dispatch_locks" in insp.get_table_names()
    assert _table_rows(eng, "partition_builds", BUILD) == [tuple(BUILD.values())]
    assert _table_rows(eng, "partition_builds", NEW_BUILD_COLUMNS) == [(None,) * 4]
    assert _table_rows(eng, "partition_dispatches", DISPATCH) == [tuple(DISPATCH.values())]
    assert _table_rows(eng, "schedule_pauses", PAUSE) == [tuple(PAUSE.values())]
    with eng.connect() as conn:
        assert ledger.read_builds(conn=conn)[("a", date(2026, 11, 1))].source_files is None


def test_a_missing_required_column_is_refused_naming_table_and_column(db):
    ddl = [s.replace("built_at {ts} NOT NULL,", "") for s in TODAY_DDL]
    db.raw(*ddl)
    with pytest.raises(
        ledger.LedgerSchemaError, match=r"table partition_builds .* column built_at"
    ):
        db.open()
    assert db.version() is None  # nothing stamped (and nothing added: the step rolled back)


def test_an_incompatible_column_type_is_refused(db):
    ddl = [s.replace("fingerprint VARCHAR(80)", "fingerprint INTEGER") for s in TODAY_DDL]
    db.raw(*ddl)
    with pytest.raises(ledger.LedgerSchemaError, match=r"partition_builds\.fingerprint has type"):
        db.open()
    assert db.version() is None


def test_a_ledger_newer_than_the_code_is_refused(db):
    db.open()
    db.raw(
        "INSERT INTO schema_version (version, description, applied_at) "
        "VALUES (2, 'from the future', '2030-01-01 00:00:00')"
    )
    with pytest.raises(
        ledger.LedgerSchemaError, match="schema version 2, newer than this code's 1"
    ):
        db.open()


def test_later_migrations_run_in_order_each_in_its_own_transaction(db, monkeypatch):
    """Migration 2 commits with its stamp; a failing migration 3 leaves the ledger at 2, with
    nothing of 3 applied; fixed, the next open runs only 3."""
    db.open()

    def add_retries(conn):
        schema.add_column(conn, "partition_builds", Column("retries", Integer))

    def add_and_fail(conn):
        schema.add_column(conn, "partition_builds", Column("half_done", Integer))
        raise RuntimeError("migration 3 broke")

    def add_half_done(conn):
        schema.add_column(conn, "partition_builds", Column("half_done", Integer))

    two = schema.Migration(2, "partition_builds.retries", add_retries)
    monkeypatch.setattr(migrate, "SCHEMA_VERSION", 3)
    monkeypatch.setattr(
        migrate, "MIGRATIONS", [*schema.MIGRATIONS, two, schema.Migration(3, "x", add_and_fail)]
    )
    with pytest.raises(RuntimeError, match="migration 3 broke"):
        db.open()
    assert db.version() == 2
    cols = {c["name"] for c in inspect(db.engines[0]).get_columns("partition_builds")}
    assert "retries" in cols and "half_done" not in cols

    monkeypatch.setattr(
        migrate, "MIGRATIONS", [*schema.MIGRATIONS, two, schema.Migration(3, "x", add_half_done)]
    )
    eng = db.open()
    assert [v for v, _ in _stamps(eng)] == [1, 2, 3]


@pytest.mark.parametrize("start", ["fresh", "unversioned-older-release"])
def test_processes_opening_the_ledger_at_the_same_moment_all_work(db, start):
    """Several workers and the orchestrator start at once: each engine creation takes the
    schema lock in turn, one does the work, the others find it done; all then write."""
    if start != "fresh":
        db.raw(*OLDEST_DDL, rows={"partition_builds": BUILD})
    n = 4
    barrier, errors = threading.Barrier(n), []

    def one(i: int) -> None:
        try:
            barrier.wait()
            eng = db.open()
            with eng.begin() as conn:
                conn.execute(
                    schema.schedule_pauses.insert().values(
                        deployment_id=f"d{i}", store_id="a", paused_by="o", paused_at=T0
                    )
                )
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    eng = db.open()
    assert [v for v, _ in _stamps(eng)] == [1]
    assert len(_table_rows(eng, "schedule_pauses", ["deployment_id"])) == n
