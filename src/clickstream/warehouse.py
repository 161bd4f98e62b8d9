"""Which warehouse dbt writes to, and the small read-back the dbt flow records in the ledger.

``CLICKSTREAM_DBT_TARGET`` selects the dbt target: ``duckdb`` (default; one file per store
under ``.clickstream/warehouse``) or ``postgres`` (one schema per store, connection from the
``CLICKSTREAM_PG_*`` environment variables).
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from clickstream import paths
from clickstream.dbt_args import TARGETS
from clickstream.registry import Store

MART = "clickstream_daily"
SESSIONS = "int_clickstream__sessions"
SCHEMA = "clickstream"


def dbt_target() -> str:
    target = os.environ.get("CLICKSTREAM_DBT_TARGET", "duckdb")
    if target not in TARGETS:
        raise ValueError(f"CLICKSTREAM_DBT_TARGET={target!r} is not one of {', '.join(TARGETS)}")
    return target


def duckdb_path(store: Store) -> Path:
    return paths.warehouse_dir() / f"{store.database}.duckdb"


def dbt_environment() -> dict[str, str]:
    """Environment the dbt profile reads (set before invoking dbt)."""
    return {"CLICKSTREAM_WAREHOUSE_DIR": str(paths.warehouse_dir())}


def pg_dsn(database: str | None = None) -> str:
    host = os.environ.get("CLICKSTREAM_PG_HOST", "127.0.0.1")
    port = os.environ.get("CLICKSTREAM_PG_PORT", "5432")
    user = os.environ.get("CLICKSTREAM_PG_USER", "postgres")
    password = os.environ.get("CLICKSTREAM_PG_PASSWORD", "")
    db = database or os.environ.get("CLICKSTREAM_PG_DATABASE", "clickstream")
    auth = f"{user}:{password}" if password else user
    return f"postgresql://{auth}@{host}:{port}/{db}"


def pg_url(database: str | None = None, driver: str = "psycopg2") -> str:
    """SQLAlchemy URL for the same connection (``postgresql+<driver>://``)."""
    return pg_dsn(database).replace("postgresql://", f"postgresql+{driver}://", 1)


def read_partition_counts(store: Store, ds: date, target: str | None = None) -> dict[str, int]:
    """Rows the partition now has: mart rows, its events and sessions figures."""
    target = target or dbt_target()
    mart_sql = f"select count(*), coalesce(sum(events), 0), coalesce(sum(sessions), 0) from {{schema}}.{MART} where store_id = %s and ds = %s"  # noqa: E501
    if target == "duckdb":
        import duckdb

        # Same process as dbt-duckdb: DuckDB shares one instance per file within a process,
        # so this read does not fight dbt's (already closed) connection for the file lock.
        con = duckdb.connect(str(duckdb_path(store)))
        try:
            row = con.execute(
                mart_sql.format(schema=f"{store.database}.{SCHEMA}").replace("%s", "?"),
                [store.store_id, ds],
            ).fetchone()
        finally:
            con.close()
    else:
        import psycopg2

        with psycopg2.connect(pg_dsn()) as con, con.cursor() as cur:
            cur.execute(mart_sql.format(schema=store.database), (store.store_id, ds))
            row = cur.fetchone()
    mart_rows, events, sessions = (int(v) for v in row)
    return {"mart_rows": mart_rows, "events": events, "sessions": sessions}
