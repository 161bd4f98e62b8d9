"""The Postgres warehouse: one schema per store in one database, its connection from settings.

The raw events live there too (``raw.events``, loaded from the landing files), so the
source fingerprints of this target are computed in the warehouse database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from datetime import date

from clickstream import settings
from clickstream.adapters.warehouse.lock import no_lock
from clickstream.adapters.warehouse.rows import (
    MART,
    MART_ROWS_SQL,
    MartRow,
    MartView,
    collect_view,
    mart_rows_from,
    partition_counts,
)
from clickstream.core.fingerprints import Fingerprint, row_text
from clickstream.core.stores import Store
from clickstream.core.windows import Window


def pg_dsn(database: str | None = None) -> str:
    cfg = settings.get()
    password = cfg.pg_password.get_secret_value()
    auth = f"{cfg.pg_user}:{password}" if password else cfg.pg_user
    return f"postgresql://{auth}@{cfg.pg_host}:{cfg.pg_port}/{database or cfg.pg_database}"


def pg_url(database: str | None = None, driver: str = "psycopg2") -> str:
    """SQLAlchemy URL for the same connection (``postgresql+<driver>://``)."""
    return pg_dsn(database).replace("postgresql://", f"postgresql+{driver}://", 1)


def _read(store: Store, sql: str, params: list) -> list[tuple]:
    import psycopg2

    with psycopg2.connect(pg_dsn()) as con, con.cursor() as cur:
        cur.execute("select to_regclass(%s)", [f"{store.database}.{MART}"])
        if cur.fetchone()[0] is None:
            return []
        cur.execute(sql.format(table=f"{store.database}.{MART}"), params)
        return cur.fetchall()


def read_mart_rows(store: Store, first: date, last: date) -> dict[date, MartRow]:
    """The mart rows of ``store`` between two dates."""
    return mart_rows_from(_read(store, MART_ROWS_SQL, [store.store_id, first, last]))


def _empty() -> Fingerprint:
    return Fingerprint(0, "0", None)


def raw_fingerprints(store: Store, windows: Sequence[Window]) -> dict[date, Fingerprint]:
    """Fingerprint of each window's input range, from ``raw.events`` (all zero without it)."""
    import psycopg2

    result = {w.ds: _empty() for w in windows}
    row = row_text("{c}::text", "\\N")
    values = ", ".join(["(%s::date, %s::timestamp, %s::timestamp)"] * len(windows))
    params: list = []
    for w in windows:
        params += [w.ds, w.input_start, w.input_end]
    sql = f"""
        WITH w(ds, lo, hi) AS (VALUES {values})
        SELECT w.ds, count(*),
            sum(('x' || substr(md5({row}), 17, 16))::bit(64)::bigint::numeric)::text,
            max(e.loaded_at)
        FROM raw.events e
        JOIN w ON e.event_ts >= w.lo AND e.event_ts < w.hi
        WHERE e.store_id = %s
        GROUP BY w.ds
    """
    with psycopg2.connect(pg_dsn()) as con, con.cursor() as cur:
        cur.execute("SELECT to_regclass('raw.events')")
        if cur.fetchone()[0] is None:
            return result
        cur.execute(sql, [*params, store.store_id])
        for ds, count, content, max_loaded in cur.fetchall():
            result[ds] = Fingerprint(int(count), str(content), max_loaded)
    return result


class PostgresWarehouse:
    """:class:`clickstream.adapters.warehouse.Warehouse` on the ``postgres`` dbt target."""

    target = "postgres"

    def mart_rows(self, store: Store, first: date, last: date) -> dict[date, MartRow]:
        return read_mart_rows(store, first, last)

    def partition_counts(self, store: Store, days: Iterable[date]) -> dict[date, dict[str, int]]:
        days = sorted(set(days))
        return partition_counts(read_mart_rows(store, days[0], days[-1]), days)

    def mart_view(self, stores: Iterable[Store], first: date, last: date) -> MartView:
        return collect_view(
            stores, first, last, rows=read_mart_rows, shared_lock=lambda s: no_lock()
        )

    def store_lock(
        self, store: Store, *, exclusive: bool, wait_seconds: float
    ) -> AbstractContextManager[None]:
        return no_lock()

    def dbt_environment(self) -> dict[str, str]:
        # The same as on DuckDB: the profile's duckdb output names the folder; handing dbt
        # one environment for both targets keeps this refactor from changing what dbt sees.
        return {"CLICKSTREAM_WAREHOUSE_DIR": str(settings.warehouse_dir())}

    def release_dbt(self) -> None:
        """dbt-postgres holds no connection past the invocation that matters here."""

    def raw_fingerprints(
        self, store: Store, windows: Sequence[Window]
    ) -> dict[date, Fingerprint] | None:
        return raw_fingerprints(store, windows)
