"""Scale profile end to end: Prefect server on PostgreSQL, two process workers, dbt and the
ledger on PostgreSQL. Skips (with the reason) only where PostgreSQL is unreachable."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, timedelta

import pytest

from clickstream.adapters.warehouse import pg_dsn, pg_url
from clickstream.core.states import OVERSUBSCRIBE
from clickstream.local.postgres import drop_database, ensure_database, postgres_reachable
from tests.support.invariants import dbt_overlap, max_overlap
from tests.support.scenarios import Profile, full_refresh_keeps_history, late_data_in_the_lookback
from tests.support.stack import DBT_GLOBAL_LIMIT, child_runs, generate, start_e2e_stack

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory):
    ok, why = postgres_reachable()
    if not ok:
        pytest.skip(why)
    suffix = uuid.uuid4().hex[:8]
    warehouse_db, prefect_db = f"clickstream_e2e_{suffix}", f"prefect_e2e_{suffix}"
    ensure_database(warehouse_db)
    ensure_database(prefect_db)
    ledger_url = pg_url(warehouse_db)
    env = {
        "CLICKSTREAM_DBT_TARGET": "postgres",
        "CLICKSTREAM_PG_DATABASE": warehouse_db,
        "CLICKSTREAM_LEDGER_URL": ledger_url,
    }
    prefect_url = pg_url(prefect_db, "asyncpg")
    handle = None
    try:
        handle = start_e2e_stack(
            tmp_path_factory.mktemp("pg") / "state",
            workers=2,
            profile="postgres",
            extra_env=env,
            database_url=prefect_url,
        )
        generate(handle, date(2026, 10, 1), date(2026, 10, 7))
        today = date.today()
        generate(handle, today - timedelta(days=6), today + timedelta(days=1))
        yield handle, env
    finally:
        try:
            if handle is not None:
                handle.down()  # fails the module if the stack's logs show a traceback
        finally:
            drop_database(warehouse_db)
            drop_database(prefect_db)


def test_server_really_runs_on_postgres(pg_stack):
    handle, _ = pg_stack
    log = (handle.stack.logs / "server.log").read_text(errors="replace")
    assert sorted(handle.stack.pids()) == ["server", "warm-1", "warm-2", "worker-1", "worker-2"]
    assert "postgresql+asyncpg" in handle.cfg.database_url
    assert "Traceback" not in log


def test_backfill_on_postgres_within_limits_and_idempotent(pg_stack, monkeypatch):
    handle, env = pg_stack
    start, end = date(2026, 10, 2), date(2026, 10, 4)
    out = handle.cli("backfill", "--start", str(start), "--end", str(end))
    assert out.returncode == 0, out.stdout + out.stderr

    runs = [r for r in handle.api(child_runs) if r.parameters.get("ds")]
    assert len(runs) == 9 and {r.state_type.value for r in runs} == {"COMPLETED"}
    by_store = defaultdict(list)
    for r in runs:
        by_store[r.parameters["store_id"]].append((r.start_time, r.end_time))
    assert all(max_overlap(v) == 1 for v in by_store.values())
    assert (
        max_overlap([(r.start_time, r.end_time) for r in runs]) <= OVERSUBSCRIBE * DBT_GLOBAL_LIMIT
    )

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    from clickstream.adapters import ledger

    builds = ledger.read_builds(None, start, end)
    assert len(builds) == 9 and {b.status for b in builds.values()} == {"completed"}
    assert dbt_overlap(builds.values()) <= DBT_GLOBAL_LIMIT

    import psycopg2

    with psycopg2.connect(pg_dsn(env["CLICKSTREAM_PG_DATABASE"])) as con, con.cursor() as cur:
        cur.execute("select count(*), sum(events) from us_flagship.clickstream_daily")
        rows, events = cur.fetchone()
    assert rows == 3 and events > 0

    again = handle.cli("backfill", "--start", str(start), "--end", str(end))
    assert again.returncode == 0 and "Nothing to do" in again.stdout
    assert len([r for r in handle.api(child_runs) if r.parameters.get("ds")]) == 9


def test_late_data_in_the_lookback_on_postgres(pg_stack):
    handle, env = pg_stack
    late_data_in_the_lookback(Profile(handle, "postgres", env), "in-mumbai")


def test_full_refresh_keeps_history_on_postgres(pg_stack):
    handle, env = pg_stack
    p = Profile(handle, "postgres", env)
    p.backfill("us-flagship", date(2026, 10, 2), date(2026, 10, 5), "--reprocess", "stale")
    full_refresh_keeps_history(p, "us-flagship", extra_day=date(2026, 10, 7))
