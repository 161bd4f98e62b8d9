"""The server launcher's SQLite fix (clickstream.local.prefect_server), without starting a server."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time

import pytest


def _read_then_write_after_a_concurrent_commit(path, mode: str) -> str:
    """What Prefect's trigger evaluation does on SQLite (WAL, 60 s busy timeout): read in a
    transaction, another connection commits a write, then write."""

    def connect():
        con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode = WAL")
        con.execute("PRAGMA busy_timeout = 60000")
        return con

    a, b = connect(), connect()
    a.execute("CREATE TABLE IF NOT EXISTS bucket (n INTEGER)")
    a.execute(f"BEGIN {mode}")
    a.execute("SELECT count(*) FROM bucket").fetchall()

    def other_writer():
        b.execute("BEGIN IMMEDIATE")
        b.execute("INSERT INTO bucket VALUES (1)")
        b.execute("COMMIT")

    t = threading.Thread(target=other_writer)
    t.start()
    time.sleep(0.2)
    try:
        a.execute("INSERT INTO bucket VALUES (2)")
        a.execute("COMMIT")
        return "ok"
    except sqlite3.OperationalError as exc:
        a.execute("ROLLBACK")
        return str(exc)
    finally:
        t.join()
        a.close()
        b.close()


def test_deferred_read_then_write_fails_at_once_and_immediate_waits(tmp_path):
    """The root cause of "database is locked" in the server log: the busy timeout does not
    help a deferred transaction whose snapshot another writer made stale."""
    started = time.monotonic()
    got = _read_then_write_after_a_concurrent_commit(tmp_path / "a.db", "DEFERRED")
    assert got == "database is locked"
    assert time.monotonic() - started < 5  # at once, not after the 60 s busy timeout
    assert _read_then_write_after_a_concurrent_commit(tmp_path / "b.db", "IMMEDIATE") == "ok"


PROBE = """
import asyncio
from prefect.server.database import configurations as c
from clickstream.local.prefect_server import sqlite_transactions_begin_immediate

async def modes():
    cfg = c.AioSqliteConfiguration(connection_url="sqlite+aiosqlite:///{db}")
    engine = await cfg.engine()
    seen = []
    async with await cfg.session(engine) as session:
        for with_for_update in (False, True):
            async with cfg.begin_transaction(session, with_for_update=with_for_update):
                seen.append(c.SQLITE_BEGIN_MODE.get())
    await engine.dispose()
    return seen

print(asyncio.run(modes()))
sqlite_transactions_begin_immediate()
sqlite_transactions_begin_immediate()  # idempotent
print(asyncio.run(modes()))
"""


@pytest.mark.slow  # imports Prefect's server in a fresh interpreter (a few seconds)
def test_every_sqlite_transaction_begins_immediate_after_the_patch(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(db=tmp_path / "prefect.db")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    before, after = out.stdout.strip().splitlines()[-2:]
    assert before == "['DEFERRED', 'IMMEDIATE']"  # Prefect 3.8.8 as shipped
    assert after == "['IMMEDIATE', 'IMMEDIATE']"
