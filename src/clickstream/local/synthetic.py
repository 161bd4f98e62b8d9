"""Deterministic synthetic clickstream, generated inside DuckDB.

This module only writes the source; reading it (layout, fingerprints) is
:mod:`clickstream.adapters.landing`. Main files are ``data_0.parquet`` in each store-local day's folder;
extra files (``late-*.parquet``, ``bad-*.parquet``) go next to it.

Every random draw is ``hash(seed, store_id, session_day, session, [event,] salt)`` mapped to
[0, 1), so a day's rows depend only on (seed, store_id, ds, events_per_day), never on which
range was requested. Sessions that start late on day D-1 spill into D, so generating D also
simulates D-1's sessions and keeps only the events that fall inside D's window.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pendulum

from clickstream import settings
from clickstream.adapters.landing import RAW_COLUMN_NAMES, RAW_COLUMNS, day_dir
from clickstream.core.stores import Store
from clickstream.core.windows import date_range, partition_window
from clickstream.local.synthetic_sql import SIMULATE_SQL

EVENT_TYPES = ("page_view", "product_view", "add_to_cart", "checkout", "purchase")

# Mean events per session produced by the funnel below (measured, duplicates included);
# turns the events_per_day target into a session count.
EVENTS_PER_SESSION = 4.3

# Relative session starts per store-local hour: night trough, evening peak; weekends start
# later and carry more midday traffic.
WEEKDAY_HOURS = (
    0.15, 0.08, 0.05, 0.04, 0.04, 0.06, 0.15, 0.35, 0.55, 0.70, 0.80, 0.85,
    0.90, 0.85, 0.80, 0.80, 0.85, 0.95, 1.10, 1.30, 1.40, 1.25, 0.85, 0.40,
)  # fmt: skip
WEEKEND_HOURS = (
    0.25, 0.15, 0.08, 0.05, 0.04, 0.05, 0.08, 0.20, 0.40, 0.65, 0.90, 1.05,
    1.10, 1.10, 1.05, 1.00, 1.00, 1.05, 1.15, 1.30, 1.35, 1.20, 0.90, 0.50,
)  # fmt: skip
# ISO weekday (1 = Monday) -> volume factor.
WEEKDAY_VOLUME = {1: 0.95, 2: 0.93, 3: 0.95, 4: 0.97, 5: 1.05, 6: 1.20, 7: 1.15}

DUPLICATE_SHARE = 0.01
LATE_SHARE = 0.02

# Bound the rows held in memory at once; a chunk of days is simulated and written together.
_CHUNK_EVENTS = 3_000_000

_COLUMN_NAMES = ", ".join(RAW_COLUMN_NAMES)


@dataclass
class StoreSummary:
    store_id: str
    rows: int = 0
    files: int = 0
    seconds: float = 0.0


@dataclass
class GenerateSummary:
    stores: dict[str, StoreSummary] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(s.rows for s in self.stores.values())

    @property
    def files(self) -> int:
        return sum(s.files for s in self.stores.values())

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stores.values())


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    # Naive timestamps are UTC everywhere; pin the zone so nothing depends on the host.
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET preserve_insertion_order = true")
    con.execute("SET enable_progress_bar = false")
    # hash(a, b, ...) combines per-argument hashes almost linearly, so draws that differ only
    # in the salt come out strongly correlated; re-hashing the combined value decorrelates them.
    con.execute(
        "CREATE MACRO rnd(a, b, c, d, e) AS hash(hash(a, b, c, d, e)) / 18446744073709551616.0"
    )
    con.execute(
        "CREATE MACRO rnd6(a, b, c, d, e, f) AS "
        "hash(hash(a, b, c, d, e, f)) / 18446744073709551616.0"
    )
    return con


def _hour_table(con: duckdb.DuckDBPyConnection) -> None:
    rows = []
    for profile, weights in (("weekday", WEEKDAY_HOURS), ("weekend", WEEKEND_HOURS)):
        total = sum(weights)
        cum = 0.0
        for hour, w in enumerate(weights):
            lo = cum / total
            cum += w
            hi = 1.0 if hour == 23 else cum / total
            rows.append((profile, hour, lo, hi))
    con.execute(
        "CREATE OR REPLACE TEMP TABLE hours (profile VARCHAR, hour INT, lo DOUBLE, hi DOUBLE)"
    )
    con.executemany("INSERT INTO hours VALUES (?, ?, ?, ?)", rows)


def _day_table(con: duckdb.DuckDBPyConnection, store: Store, days: list[date], epd: int) -> None:
    base_sessions = epd / EVENTS_PER_SESSION
    rows = []
    for ds in days:
        w = partition_window(store.timezone, ds)
        nxt = partition_window(store.timezone, ds + timedelta(days=1))
        dow = ds.isoweekday()
        rows.append(
            (
                ds,
                w.window_start,
                w.window_end,
                nxt.window_end,
                "weekend" if dow >= 6 else "weekday",
                round(base_sessions * WEEKDAY_VOLUME[dow]),
            )
        )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE days (ds DATE, ws TIMESTAMP, we TIMESTAMP, "
        "next_we TIMESTAMP, profile VARCHAR, n_sessions BIGINT)"
    )
    con.executemany("INSERT INTO days VALUES (?, ?, ?, ?, ?, ?)", rows)


def generate(
    stores: list[Store],
    start: date,
    end: date,
    events_per_day: int,
    seed: int = 42,
    landing: Path | None = None,
) -> GenerateSummary:
    """Write ``data_0.parquet`` for every store and local day in ``[start, end]``.

    Rewrites those days' main files atomically and leaves other days and extra files alone.
    """
    if events_per_day < 0:
        raise ValueError("events_per_day must be >= 0")
    landing = Path(landing) if landing is not None else settings.landing_dir()
    days = date_range(start, end)
    chunk = max(1, min(366, _CHUNK_EVENTS // max(events_per_day, 1)))
    base_sessions = events_per_day / EVENTS_PER_SESSION
    loyal_pool = max(5, round(base_sessions * 0.2))
    casual_pool = max(10, round(base_sessions * 5))
    summary = GenerateSummary()
    con = _connect()
    try:
        _hour_table(con)
        for store in stores:
            t0 = time.perf_counter()
            stats = StoreSummary(store.store_id)
            for i in range(0, len(days), chunk):
                part = days[i : i + chunk]
                # The day before the chunk only feeds its spill-over into the chunk's first day.
                _day_table(con, store, [part[0] - timedelta(days=1), *part], events_per_day)
                con.execute(
                    SIMULATE_SQL.format(cols=_COLUMN_NAMES),
                    {
                        "seed": seed,
                        "store": store.store_id,
                        "loyal_pool": loyal_pool,
                        "casual_pool": casual_pool,
                        "late_share": LATE_SHARE,
                        "dup_share": DUPLICATE_SHARE,
                    },
                )
                for ds in part:
                    stats.rows += _write_day(con, landing, store.store_id, ds)
                    stats.files += 1
            stats.seconds = time.perf_counter() - t0
            summary.stores[store.store_id] = stats
    finally:
        con.close()
    return summary


def _write_day(con: duckdb.DuckDBPyConnection, landing: Path, store_id: str, ds: date) -> int:
    target = day_dir(landing, store_id, ds)
    target.mkdir(parents=True, exist_ok=True)
    final = target / "data_0.parquet"
    tmp = target / "data_0.parquet.tmp"
    # Ordered so the same day always yields the same file; renamed so readers that glob
    # *.parquet never see a half-written file.
    con.execute(
        f"COPY (SELECT {_COLUMN_NAMES} FROM events WHERE ds = $ds "
        "ORDER BY event_ts, event_id, loaded_at) "
        f"TO '{_sql_path(tmp)}' (FORMAT parquet)",
        {"ds": ds},
    )
    os.replace(tmp, final)
    return con.execute("SELECT count(*) FROM events WHERE ds = $ds", {"ds": ds}).fetchone()[0]


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _write_rows(path: Path, select_sql: str, params: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    con = _connect()
    try:
        con.execute(
            f"COPY ({select_sql}) TO '{_sql_path(tmp)}' (FORMAT parquet)",
            params,
        )
    finally:
        con.close()
    os.replace(tmp, path)
    return path


def _typed_select(body: str) -> str:
    casts = ", ".join(
        f"CAST({c.split()[0]} AS {c.split(' ', 1)[1]}) AS {c.split()[0]}" for c in RAW_COLUMNS
    )
    return f"SELECT {casts} FROM ({body}) ORDER BY event_ts, event_id"


def add_late_events(
    store: Store,
    ds: date,
    n: int,
    seed: int = 7,
    landing: Path | None = None,
    loaded_at: datetime | None = None,
) -> Path:
    """Add ``n`` new events inside the local day ``ds`` that arrive at ``loaded_at``."""
    if n < 1:
        raise ValueError("n must be >= 1")
    landing = Path(landing) if landing is not None else settings.landing_dir()
    if loaded_at is None:
        loaded_at = datetime.now(UTC).replace(tzinfo=None)
    elif loaded_at.tzinfo is not None:
        loaded_at = loaded_at.astimezone(UTC).replace(tzinfo=None)
    w = partition_window(store.timezone, ds)
    tag = hashlib.sha256(
        f"{store.store_id}|{ds}|{n}|{seed}|{loaded_at.isoformat()}".encode()
    ).hexdigest()[:16]
    body = """
        SELECT
            md5(concat_ws(':', 'late', $tag, i)) AS event_id,
            $store AS store_id,
            'u' || lpad(floor(rnd($seed, $tag, i, 0, 'user') * 1000)::BIGINT::VARCHAR, 9, '0')
                AS user_id,
            'late:' || $tag || ':' || i::VARCHAR AS session_key,
            CASE WHEN rnd($seed, $tag, i, 0, 'type') < 0.7 THEN 'page_view'
                 ELSE 'product_view' END AS event_type,
            $ws + to_seconds(floor(rnd($seed, $tag, i, 0, 'ts') * $wsec)::BIGINT) AS event_ts,
            $loaded_at AS loaded_at,
            NULL AS product_id,
            NULL AS order_id,
            NULL AS revenue_usd,
            'mobile' AS device
        FROM range($n) t(i)
    """
    path = day_dir(landing, store.store_id, ds) / f"late-{tag}.parquet"
    return _write_rows(
        path,
        _typed_select(body),
        {
            "tag": tag,
            "store": store.store_id,
            "seed": seed,
            "ws": w.window_start,
            "wsec": int((w.window_end - w.window_start).total_seconds()),
            "loaded_at": loaded_at,
            "n": n,
        },
    )


def add_bad_events(store: Store, ds: date, landing: Path | None = None) -> Path:
    """Add two events with event_type 'bogus' at local noon (fails the staging data test)."""
    landing = Path(landing) if landing is not None else settings.landing_dir()
    noon = pendulum.datetime(ds.year, ds.month, ds.day, 12, tz=store.timezone).in_timezone("UTC")
    noon_utc = datetime(noon.year, noon.month, noon.day, noon.hour, noon.minute)
    body = """
        SELECT
            md5(concat_ws(':', 'bad', $store, $ds, i)) AS event_id,
            $store AS store_id,
            'u-bad' AS user_id,
            'bad' AS session_key,
            'bogus' AS event_type,
            $noon + to_seconds(i) AS event_ts,
            $noon + to_seconds(i + 1) AS loaded_at,
            NULL AS product_id,
            NULL AS order_id,
            NULL AS revenue_usd,
            'desktop' AS device
        FROM range(2) t(i)
    """
    path = day_dir(landing, store.store_id, ds) / f"bad-{ds.isoformat()}.parquet"
    return _write_rows(
        path, _typed_select(body), {"store": store.store_id, "ds": ds, "noon": noon_utc}
    )


def load_postgres(
    stores: list[Store], start: date, end: date, dsn: str, landing: Path | None = None
) -> int:
    """Copy the landing files of ``[start, end]`` into Postgres ``raw.events``.

    Replaces each store's rows inside the range's UTC span, so reloading is idempotent.
    Returns the number of rows copied.
    """
    import io

    import psycopg2

    landing = Path(landing) if landing is not None else settings.landing_dir()
    ddl = (
        "CREATE TABLE IF NOT EXISTS raw.events ("
        + ", ".join(c.replace("VARCHAR", "TEXT").replace("DECIMAL", "NUMERIC") for c in RAW_COLUMNS)
        + ")"
    )
    total = 0
    pg = psycopg2.connect(dsn)
    con = _connect()
    try:
        with tempfile.TemporaryDirectory() as tmpdir, pg, pg.cursor() as cur:
            cur.execute("CREATE SCHEMA IF NOT EXISTS raw")
            cur.execute(ddl)
            cur.execute(
                "CREATE INDEX IF NOT EXISTS events_store_ts ON raw.events (store_id, event_ts)"
            )
            for store in stores:
                lo = partition_window(store.timezone, start).window_start
                hi = partition_window(store.timezone, end).window_end
                cur.execute(
                    "DELETE FROM raw.events WHERE store_id = %s AND event_ts >= %s "
                    "AND event_ts < %s",
                    (store.store_id, lo, hi),
                )
                files = [
                    str(p)
                    for ds in date_range(start, end)
                    for p in sorted(day_dir(landing, store.store_id, ds).glob("*.parquet"))
                ]
                if not files:
                    continue
                tmp = Path(tmpdir) / f"{store.store_id}.csv"
                try:
                    copied = con.execute(
                        f"COPY (SELECT {_COLUMN_NAMES} FROM read_parquet($files, "
                        "union_by_name = true)) "
                        f"TO '{_sql_path(tmp)}' (FORMAT csv, HEADER false)",
                        {"files": files},
                    ).fetchall()[0][0]
                    data = tmp.read_bytes()
                finally:
                    tmp.unlink(missing_ok=True)
                cur.copy_expert(
                    f"COPY raw.events ({_COLUMN_NAMES}) FROM STDIN WITH (FORMAT csv)",
                    io.BytesIO(data),
                )
                total += int(copied)
    finally:
        con.close()
        pg.close()
    return total
