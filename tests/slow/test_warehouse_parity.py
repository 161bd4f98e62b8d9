"""DuckDB and Postgres build the same mart rows from the same events.

Needs PostgreSQL at 127.0.0.1:5432 (user/password from CLICKSTREAM_PG_USER /
CLICKSTREAM_PG_PASSWORD); creates and drops a throwaway database.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import date

import duckdb
import pytest

from clickstream import settings
from clickstream.adapters.dbt.command import dbt_build_args
from clickstream.core.partition_spec import spec_environment
from clickstream.core.stores import load_registry
from clickstream.core.windows import date_range, partition_windows
from clickstream.local.synthetic import generate, load_postgres

pytestmark = pytest.mark.postgres

HOST = os.environ.get("CLICKSTREAM_PG_HOST", "127.0.0.1")
PORT = int(os.environ.get("CLICKSTREAM_PG_PORT", "5432"))
USER = os.environ.get("CLICKSTREAM_PG_USER", "postgres")
PASSWORD = os.environ.get("CLICKSTREAM_PG_PASSWORD", "")
DAYS = date_range(date(2026, 10, 31), date(2026, 11, 1))  # includes NY's 25-hour day
STORES = ("us-flagship", "in-mumbai")
MART_COLUMNS = (
    "store_id, ds, events, sessions, users, page_views, product_views, add_to_carts, "
    "checkouts, orders, revenue_usd, conversion_rate, window_start_utc, window_end_utc"
)


def _reachable() -> bool:
    try:
        with socket.create_connection((HOST, PORT), timeout=1):
            return True
    except OSError:
        return False


def _dsn(database: str) -> str:
    auth = f"{USER}:{PASSWORD}" if PASSWORD else USER
    return f"postgresql://{auth}@{HOST}:{PORT}/{database}"


@pytest.fixture(scope="module")
def pg_database():
    if not _reachable():
        pytest.skip(f"PostgreSQL is not reachable at {HOST}:{PORT}")
    import psycopg2

    name = f"clickstream_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(_dsn("postgres"))
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE {name}")
        yield name
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()


def test_duckdb_and_postgres_marts_match(pg_database, tmp_path, monkeypatch):
    import psycopg2
    from dbt.cli.main import dbtRunner

    landing, warehouse = tmp_path / "landing", tmp_path / "warehouse"
    warehouse.mkdir()
    monkeypatch.setenv("CLICKSTREAM_LANDING_DIR", str(landing))
    monkeypatch.setenv("CLICKSTREAM_WAREHOUSE_DIR", str(warehouse))
    monkeypatch.setenv("CLICKSTREAM_PG_DATABASE", pg_database)
    registry = load_registry()
    stores = [registry.get(s) for s in STORES]
    generate(stores, DAYS[0], DAYS[-1], 1500, landing=landing)
    loaded = load_postgres(stores, DAYS[0], DAYS[-1], _dsn(pg_database))
    raw = duckdb.sql(
        f"select count(*) from read_parquet('{landing}/*/*/*.parquet', union_by_name = true)"
    ).fetchall()[0][0]
    assert loaded == raw
    # Loading again replaces rather than appends.
    assert load_postgres(stores, DAYS[0], DAYS[-1], _dsn(pg_database)) == raw

    # DuckDB day by day, Postgres all days in one invocation: equal rows prove both the
    # targets and the batch path agree.
    for store in stores:
        for target, batches in (("duckdb", [[d] for d in DAYS]), ("postgres", [DAYS])):
            for days in batches:
                args = dbt_build_args(
                    store,
                    landing_dir=landing,
                    project_dir=settings.dbt_project_dir(),
                    target_path=tmp_path / "target" / target / store.store_id,
                    target=target,
                )
                for key, value in spec_environment(
                    store, partition_windows(store.timezone, days)
                ).items():
                    monkeypatch.setenv(key, value)
                result = dbtRunner().invoke(args)
                assert result.success, (target, store.store_id, days, result.exception)

    sql = f"select {MART_COLUMNS} from {{schema}}.clickstream_daily order by ds"
    for store in stores:
        con = duckdb.connect(str(warehouse / f"{store.database}.duckdb"))
        try:
            duck_rows = con.execute(sql.format(schema="clickstream")).fetchall()
        finally:
            con.close()
        with psycopg2.connect(_dsn(pg_database)) as pg, pg.cursor() as cur:
            cur.execute(sql.format(schema=store.database))
            pg_rows = cur.fetchall()
        pg.close()
        assert len(duck_rows) == len(DAYS)
        assert duck_rows == pg_rows

    # The project's own read paths agree too: both warehouse implementations read back the
    # same mart rows (adapters.warehouse), and both source scans count the same raw events
    # (landing files on DuckDB, raw.events on Postgres; their hashes differ by design).
    from clickstream.adapters.landing import fingerprints
    from clickstream.adapters.warehouse import for_target

    for store in stores:
        duck = for_target("duckdb").mart_rows(store, DAYS[0], DAYS[-1])
        assert len(duck) == len(DAYS)
        assert for_target("postgres").mart_rows(store, DAYS[0], DAYS[-1]) == duck
        assert for_target("postgres").mart_view([store], DAYS[0], DAYS[-1]).checked == {
            store.store_id
        }
        windows = partition_windows(store.timezone, DAYS)
        counts = {
            target: {
                ds: fp.event_count for ds, fp in fingerprints(store, windows, target=target).items()
            }
            for target in ("duckdb", "postgres")
        }
        assert counts["duckdb"] == counts["postgres"]
        assert all(n > 0 for n in counts["duckdb"].values())
