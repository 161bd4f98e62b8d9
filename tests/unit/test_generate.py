"""The synthetic clickstream generator: determinism, realism and the landing layout."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest

from clickstream.core.windows import date_range, partition_window
from clickstream.local.synthetic import EVENT_TYPES, add_bad_events, add_late_events, generate
from tests.support.builders import MUMBAI, NY

START, END = date(2026, 10, 30), date(2026, 11, 3)  # NY falls back on 2026-11-01
EPD = 3000


def _rows(landing: Path, store_id: str, ds: date, name: str = "data_0.parquet") -> list[tuple]:
    path = landing / store_id / f"ds={ds.isoformat()}" / name
    return duckdb.sql(f"SELECT * FROM read_parquet('{path}') ORDER BY ALL").fetchall()


def _all(landing: Path, store_id: str) -> duckdb.DuckDBPyRelation:
    return duckdb.sql(
        f"SELECT * FROM read_parquet('{landing}/{store_id}/*/*.parquet', "
        "hive_partitioning = true, union_by_name = true)"
    )


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("landing")
    generate([NY, MUMBAI], START, END, EPD, seed=42, landing=root)
    return root


def test_layout_and_summary(tmp_path):
    summary = generate([NY], START, END, EPD, landing=tmp_path)
    days = date_range(START, END)
    assert summary.stores["us-flagship"].files == len(days)
    on_disk = sorted(p.parent.name for p in (tmp_path / "us-flagship").glob("*/data_0.parquet"))
    assert on_disk == [f"ds={d.isoformat()}" for d in days]
    total = _all(tmp_path, "us-flagship").aggregate("count(*)").fetchall()[0][0]
    assert summary.rows == total
    # Volume roughly follows the target (weekday factors scale it by about +-20%).
    assert 0.7 * EPD * len(days) < total < 1.3 * EPD * len(days)


def test_same_args_same_rows(landing, tmp_path):
    generate([NY, MUMBAI], START, END, EPD, seed=42, landing=tmp_path)
    for store in (NY, MUMBAI):
        for ds in date_range(START, END):
            assert _rows(tmp_path, store.store_id, ds) == _rows(landing, store.store_id, ds)


def test_sub_range_gives_the_same_days(landing, tmp_path):
    mid = date(2026, 11, 1)
    generate([NY], mid, mid, EPD, seed=42, landing=tmp_path)
    assert [p.name for p in (tmp_path / "us-flagship").iterdir()] == ["ds=2026-11-01"]
    assert _rows(tmp_path, "us-flagship", mid) == _rows(landing, "us-flagship", mid)


def test_other_seed_differs_and_regenerating_is_idempotent(landing, tmp_path):
    ds = date(2026, 10, 31)
    generate([NY], ds, ds, EPD, seed=43, landing=tmp_path)
    assert _rows(tmp_path, "us-flagship", ds) != _rows(landing, "us-flagship", ds)
    late = add_late_events(NY, ds, 5, landing=tmp_path, loaded_at=datetime(2026, 11, 5))
    other = date(2026, 11, 2)
    generate([NY], other, other, EPD, seed=43, landing=tmp_path)
    before_other = _rows(tmp_path, "us-flagship", other)
    # Regenerating ds with the original seed replaces its main file only.
    generate([NY], ds, ds, EPD, seed=42, landing=tmp_path)
    assert _rows(tmp_path, "us-flagship", ds) == _rows(landing, "us-flagship", ds)
    assert late.exists()
    assert _rows(tmp_path, "us-flagship", other) == before_other
    assert not list(tmp_path.rglob("*.tmp"))


def test_schema(landing):
    rel = _all(landing, "us-flagship")
    types = dict(zip(rel.columns, [str(t) for t in rel.types], strict=True))
    assert types == {
        "event_id": "VARCHAR",
        "store_id": "VARCHAR",
        "user_id": "VARCHAR",
        "session_key": "VARCHAR",
        "event_type": "VARCHAR",
        "event_ts": "TIMESTAMP",
        "loaded_at": "TIMESTAMP",
        "product_id": "VARCHAR",
        "order_id": "VARCHAR",
        "revenue_usd": "DECIMAL(12,2)",
        "device": "VARCHAR",
        "ds": "DATE",
    }
    bad = rel.filter(
        "store_id <> 'us-flagship' OR event_id IS NULL OR user_id IS NULL OR event_ts IS NULL "
        "OR loaded_at < event_ts "
        "OR (event_type = 'purchase') <> (revenue_usd IS NOT NULL) "
        "OR (event_type = 'purchase') <> (order_id IS NOT NULL) "
        "OR revenue_usd <= 0"
    )
    assert bad.aggregate("count(*)").fetchall()[0][0] == 0


def test_funnel_is_monotonic(landing):
    for store in (NY, MUMBAI):
        counts = dict(
            _all(landing, store.store_id)
            .aggregate("event_type, count(DISTINCT event_id)", "event_type")
            .fetchall()
        )
        assert set(counts) == set(EVENT_TYPES)
        steps = [counts[t] for t in EVENT_TYPES]
        assert steps == sorted(steps, reverse=True), steps
        assert all(s > 0 for s in steps)
        assert counts["page_view"] > 2 * counts["purchase"]


def test_duplicates_and_late_events_have_small_shares(landing):
    rel = _all(landing, "us-flagship")
    total, distinct = rel.aggregate("count(*), count(DISTINCT event_id)").fetchall()[0]
    dup_share = (total - distinct) / total
    assert 0.005 < dup_share < 0.02, dup_share
    # A duplicate repeats the event exactly, only later.
    changed = duckdb.sql(
        """
        SELECT count(*) FROM (
            SELECT event_id FROM rel GROUP BY event_id HAVING count(*) > 1 AND (
                count(DISTINCT (event_ts, user_id, event_type, coalesce(product_id, ''),
                                coalesce(order_id, ''), device)) > 1
                OR count(DISTINCT loaded_at) < 2)
        )
        """
    ).fetchall()[0][0]
    assert changed == 0
    late = 0
    for ds in date_range(START, END):
        w = partition_window(NY.timezone, ds)
        late += (
            rel.filter(f"ds = DATE '{ds}' AND loaded_at >= TIMESTAMP '{w.window_end}'")
            .aggregate("count(DISTINCT event_id)")
            .fetchall()[0][0]
        )
    assert 0.01 < late / distinct < 0.04, late / distinct


def test_every_event_is_inside_its_directory_window(landing):
    for store in (NY, MUMBAI):
        rel = _all(landing, store.store_id)
        for ds in date_range(START, END):
            w = partition_window(store.timezone, ds)
            outside = rel.filter(
                f"ds = DATE '{ds}' AND NOT (event_ts >= TIMESTAMP '{w.window_start}' "
                f"AND event_ts < TIMESTAMP '{w.window_end}')"
            )
            assert outside.aggregate("count(*)").fetchall()[0][0] == 0
            assert rel.filter(f"ds = DATE '{ds}'").aggregate("count(*)").fetchall()[0][0] > 0


def test_sessions_cross_local_midnight_and_users_return(landing):
    rel = _all(landing, "in-mumbai")  # noqa: F841 - DuckDB finds it by name in the SQL
    spanning = duckdb.sql(
        "SELECT count(*) FROM (SELECT session_key FROM rel GROUP BY session_key "
        "HAVING count(DISTINCT ds) > 1)"
    ).fetchall()[0][0]
    assert spanning > 0
    returning = duckdb.sql(
        "SELECT count(*) FROM (SELECT user_id FROM rel GROUP BY user_id "
        "HAVING count(DISTINCT ds) > 1)"
    ).fetchall()[0][0]
    assert returning > 0
    max_gap = duckdb.sql(
        "SELECT max(gap) FROM (SELECT epoch(event_ts - lag(event_ts) OVER "
        "(PARTITION BY session_key ORDER BY event_ts)) AS gap FROM "
        "(SELECT DISTINCT session_key, event_id, event_ts FROM rel))"
    ).fetchall()[0][0]
    assert 0 < max_gap < 30 * 60


def test_daily_rhythm_follows_local_time(landing):
    # Kolkata is UTC+05:30: the local evening peak (18-22 h) beats the night trough (2-5 h).
    rel = _all(landing, "in-mumbai")  # noqa: F841 - DuckDB finds it by name in the SQL
    by_hour = dict(
        duckdb.sql(
            "SELECT hour(event_ts + INTERVAL 330 MINUTE) AS h, count(*) FROM rel GROUP BY h"
        ).fetchall()
    )
    evening = sum(by_hour.get(h, 0) for h in range(18, 22))
    night = sum(by_hour.get(h, 0) for h in range(2, 6))
    assert evening > 4 * night


def test_add_late_events(landing, tmp_path):
    ds = date(2026, 11, 1)
    when = datetime(2026, 11, 4, 9, 30)
    path = add_late_events(NY, ds, 25, landing=tmp_path, loaded_at=when)
    assert path.parent == tmp_path / "us-flagship" / "ds=2026-11-01"
    assert path.name.startswith("late-") and path.suffix == ".parquet"
    assert add_late_events(NY, ds, 25, landing=tmp_path, loaded_at=when) == path
    rows = duckdb.sql(f"SELECT * FROM read_parquet('{path}')")
    w = partition_window(NY.timezone, ds)
    n, n_ids, lo, hi, loaded = rows.aggregate(
        "count(*), count(DISTINCT event_id), min(event_ts), max(event_ts), max(loaded_at)"
    ).fetchall()[0]
    assert (n, n_ids, loaded) == (25, 25, when)
    assert w.window_start <= lo and hi < w.window_end
    main_ids = {r[0] for r in _rows(landing, "us-flagship", ds)}
    late_ids = {r[0] for r in rows.fetchall()}
    assert not main_ids & late_ids
    other = add_late_events(NY, ds, 25, seed=8, landing=tmp_path, loaded_at=when)
    assert other != path


def test_add_bad_events(tmp_path):
    ds = date(2026, 11, 1)
    path = add_bad_events(MUMBAI, ds, landing=tmp_path)
    assert path.parent == tmp_path / "in-mumbai" / "ds=2026-11-01"
    assert path.name.startswith("bad-")
    rows = duckdb.sql(f"SELECT event_type, event_ts FROM read_parquet('{path}')").fetchall()
    assert len(rows) == 2
    assert {r[0] for r in rows} == {"bogus"}
    # Local noon in Kolkata is 06:30 UTC.
    assert min(r[1] for r in rows) == datetime(2026, 11, 1, 6, 30)
