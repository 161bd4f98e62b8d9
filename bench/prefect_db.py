"""How much a strategy writes to the Prefect server's database (SQLite, the bench stack's).

Read through a read-only SQLite connection to ``<state>/prefect/prefect.db`` while the server
runs. A reader sees every committed transaction, those still in the WAL included, so no
checkpoint is needed (and none is forced on the server).

- **bytes**: pages in use, ``(page_count - freelist_count) x page_size``. Not the file size:
  the file never shrinks and reuses freed pages, so file growth says little. The benchmark
  deletes no run between strategies, so no freed page hides growth.
- **rows** of the tables that grow with runs (``ROW_TABLES``) and the bytes of each group of
  tables with its indexes (SQLite's ``dbstat``), to say where the bytes go.

The server persists events and the task runs derived from them in batches (every 5 s by
default), so :func:`settle` waits until nothing changes for a while before the "after"
snapshot.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

# Prefect 3.8's table names (checked against the bench stack's prefect.db).
ROW_TABLES = (
    "flow_run",
    "flow_run_state",
    "task_run",
    "task_run_state",
    "log",
    "events",
    "event_resources",
    "artifact",
)
# Where the bytes go: tables (and their indexes) grouped by what writes them.
GROUPS = {
    "flow runs": ("flow_run", "flow_run_state", "flow_run_input"),
    "task runs": ("task_run", "task_run_state", "task_run_state_cache"),
    "logs": ("log",),
    "events": ("events", "event_resources"),
    "artifacts": ("artifact", "artifact_collection"),
}


@dataclass(frozen=True)
class DbSnapshot:
    used_bytes: int
    file_bytes: int  # prefect.db + prefect.db-wal on disk (for reference)
    rows: dict[str, int]
    group_bytes: dict[str, int] = field(default_factory=dict)
    taken: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class DbGrowth:
    used_bytes: int
    file_bytes: int
    rows: dict[str, int]
    group_bytes: dict[str, int]
    settle_seconds: float

    def per(self, n: int) -> DbGrowth:
        """The same growth divided by ``n`` (partitions, runs)."""
        n = max(n, 1)
        return DbGrowth(
            round(self.used_bytes / n),
            round(self.file_bytes / n),
            {k: v / n for k, v in self.rows.items()},
            {k: round(v / n) for k, v in self.group_bytes.items()},
            self.settle_seconds,
        )


def _connect(db: Path) -> sqlite3.Connection:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    con.execute("PRAGMA query_only = 1")
    return con


def _counts(con: sqlite3.Connection) -> dict[str, int]:
    have = {r[0] for r in con.execute("select name from sqlite_master where type = 'table'")}
    return {
        t: int(con.execute(f'select count(*) from "{t}"').fetchone()[0])  # noqa: S608
        for t in ROW_TABLES
        if t in have
    }


def snapshot(db: Path, *, by_group: bool = True) -> DbSnapshot:
    con = _connect(db)
    try:
        # One read transaction: counts and pages of the same moment.
        con.execute("BEGIN")
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        pages = con.execute("PRAGMA page_count").fetchone()[0]
        free = con.execute("PRAGMA freelist_count").fetchone()[0]
        rows = _counts(con)
        groups: dict[str, int] = {}
        if by_group:
            owner = {
                name: tbl for name, tbl in con.execute("select name, tbl_name from sqlite_master")
            }
            per_table: dict[str, int] = {}
            for name, size in con.execute("select name, sum(pgsize) from dbstat group by name"):
                table = owner.get(name, name)
                per_table[table] = per_table.get(table, 0) + int(size)
            known = {t for tables in GROUPS.values() for t in tables}
            for group, tables in GROUPS.items():
                groups[group] = sum(per_table.get(t, 0) for t in tables)
            groups["other"] = sum(v for t, v in per_table.items() if t not in known)
        con.execute("COMMIT")
    finally:
        con.close()
    wal = db.with_name(db.name + "-wal")
    files = sum(p.stat().st_size for p in (db, wal) if p.exists())
    return DbSnapshot((pages - free) * page_size, files, rows, groups)


def settle(db: Path, quiet_seconds: float = 6.0, timeout: float = 60.0) -> tuple[DbSnapshot, float]:
    """Wait until the row counts stay unchanged for ``quiet_seconds`` (the server's batched
    writers have flushed), then take a snapshot. Returns it and the seconds waited."""
    t0 = time.monotonic()
    last = _rows_now(db)
    stable_since = time.monotonic()
    while time.monotonic() - t0 < timeout:
        time.sleep(min(1.0, max(quiet_seconds / 3, 0.1)))
        now = _rows_now(db)
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= quiet_seconds:
            break
    return snapshot(db), time.monotonic() - t0


def _rows_now(db: Path) -> dict[str, int]:
    con = _connect(db)
    try:
        return _counts(con)
    finally:
        con.close()


def growth(before: DbSnapshot, after: DbSnapshot, settle_seconds: float = 0.0) -> DbGrowth:
    return DbGrowth(
        used_bytes=after.used_bytes - before.used_bytes,
        file_bytes=after.file_bytes - before.file_bytes,
        rows={t: after.rows.get(t, 0) - before.rows.get(t, 0) for t in after.rows},
        group_bytes={
            g: after.group_bytes.get(g, 0) - before.group_bytes.get(g, 0) for g in after.group_bytes
        },
        settle_seconds=settle_seconds,
    )


def count_for_run(db: Path, table: str, flow_run_id: str) -> int:
    """Rows of ``table`` (task_run, log) that belong to one flow run (ids are stored as text)."""
    con = _connect(db)
    try:
        sql = f'select count(*) from "{table}" where flow_run_id = ?'  # noqa: S608
        return int(con.execute(sql, [str(flow_run_id)]).fetchone()[0])
    finally:
        con.close()
