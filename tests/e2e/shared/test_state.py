"""Partition state you can trust, end to end on the shared DuckDB stack: every mart row
compared with an independent recount from the raw landing files (tests/support/recount.py), the
partitions that rebuild counted from the child runs, the grid read from `clickstream status`.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pytest

from tests.support.scenarios import (
    Profile,
    days_reading,
    full_refresh_keeps_history,
    late_data_in_the_lookback,
    utcnow,
)
from tests.support.stack import state_of


@pytest.fixture(scope="module")
def p(e2e) -> Profile:
    return Profile(e2e)


def test_dst_and_offset_days_match_an_independent_recount(p):
    # New York springs forward on 03-08 (23 h) and Kolkata's day starts at 18:30 UTC, in one
    # backfill of runs of three days; Sydney's DST ends on 04-05 (25 h), one run per day.
    first, last = date(2026, 3, 7), date(2026, 3, 9)
    p.backfill("us-flagship,in-mumbai", first, last, "--reprocess", "stale", "--days-per-run", "3")
    for store_id in ("us-flagship", "in-mumbai"):
        rows = p.assert_rows_match_recount(store_id, [first, date(2026, 3, 8), last])
        assert len(rows) == 3
    ny = p.mart("us-flagship", [date(2026, 3, 8)])[date(2026, 3, 8)]
    assert (ny["window_end_utc"] - ny["window_start_utc"]) == timedelta(hours=23)
    p.backfill("au-sydney", date(2026, 4, 4), date(2026, 4, 6), "--reprocess", "stale")
    rows = p.assert_rows_match_recount(
        "au-sydney", [date(2026, 4, 4) + timedelta(days=n) for n in range(3)]
    )
    syd = rows[date(2026, 4, 5)]
    assert syd["window_end_utc"] - syd["window_start_utc"] == timedelta(hours=25)


def test_late_events_inside_the_window_make_exactly_their_readers_stale(p):
    from clickstream.core.stores import load_registry
    from clickstream.local.synthetic import add_late_events

    store_id, days = "au-sydney", [date(2026, 4, 14) + timedelta(days=n) for n in range(3)]
    p.backfill(store_id, days[0], days[-1], "--reprocess", "stale")
    with state_of(p.handle):
        late = add_late_events(load_registry().get(store_id), days[1], 40, seed=11)
    times = [r[0] for r in duckdb.sql(f"select event_ts from read_parquet('{late}')").fetchall()]
    expected = days_reading(store_id, times, days)
    assert days[1] in expected
    grid = p.status(store_id, days[0], days[-1])
    assert grid == {d: ("stale" if d in expected else "completed") for d in days}, grid
    since = utcnow()
    p.backfill(store_id, days[0], days[-1], "--reprocess", "stale")
    assert p.days_built_since(since, store_id) == sorted(expected)
    p.assert_rows_match_recount(store_id, days)


def test_late_data_in_the_lookback_is_found_by_one_catch_up(p):
    late_data_in_the_lookback(p, "us-flagship")


def test_a_mart_row_deleted_behind_the_ledgers_back_is_missing_and_rebuilt(p):
    store_id, days = "in-mumbai", [date(2026, 3, 21), date(2026, 3, 22)]
    p.backfill(store_id, days[0], days[-1], "--reprocess", "stale")
    p.delete_mart_row(store_id, days[0])
    assert p.status(store_id, days[0], days[-1]) == {days[0]: "missing", days[1]: "completed"}
    since = utcnow()
    p.backfill(store_id, days[0], days[-1])  # the default policy: missing
    assert p.days_built_since(since, store_id) == [days[0]]
    p.assert_rows_match_recount(store_id, days)


def test_full_refresh_of_one_store_loses_nothing(p):
    store_id = "au-sydney"
    p.backfill(store_id, date(2026, 4, 20), date(2026, 4, 22), "--reprocess", "stale")
    full_refresh_keeps_history(p, store_id, extra_day=date(2026, 4, 23))
