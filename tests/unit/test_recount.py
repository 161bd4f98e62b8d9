"""Unit tests of tests/support/recount.py on tiny hand-built landing zones.

Every expected number is a literal worked out by hand from the events listed in the test.
Timestamps are naive UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from tests.support.recount import (
    compare_rows,
    local_window,
    read_raw_events,
    recount_day,
    recount_store,
)

STORE = "s-test"
SCHEMA = (
    "event_id VARCHAR, store_id VARCHAR, user_id VARCHAR, session_key VARCHAR, "
    "event_type VARCHAR, event_ts TIMESTAMP, loaded_at TIMESTAMP, product_id VARCHAR, "
    "order_id VARCHAR, revenue_usd DECIMAL(12,2), device VARCHAR"
)


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def ev(
    event_id: str,
    user: str,
    event_type: str,
    at: str,
    *,
    loaded: str | None = None,
    order: str | None = None,
    revenue: str | None = None,
) -> tuple:
    when = ts(at)
    return (
        event_id,
        STORE,
        user,
        f"k-{user}",
        event_type,
        when,
        ts(loaded) if loaded else when + timedelta(seconds=5),
        None,
        order,
        Decimal(revenue) if revenue is not None else None,
        "mobile",
    )


def write(landing: Path, folder: str, name: str, rows: list[tuple], select: str = "*") -> Path:
    """``COPY (SELECT ...) TO`` one Parquet file at ``<landing>/<STORE>/ds=<folder>/<name>``."""
    path = landing / STORE / f"ds={folder}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        con.execute(f"CREATE TABLE t ({SCHEMA})")
        con.executemany(f"INSERT INTO t VALUES ({', '.join('?' * 11)})", rows)
        con.execute(f"COPY (SELECT {select} FROM t ORDER BY event_ts) TO '{path}' (FORMAT parquet)")
    finally:
        con.close()
    return path


def counts(row: dict) -> tuple:
    return (row["events"], row["sessions"], row["users"])


# -- windows --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "ds", "start", "end"),
    [
        # New York spring forward: EST (-5) at midnight, EDT (-4) at the next one: 23 h.
        ("America/New_York", date(2026, 3, 8), "2026-03-08 05:00", "2026-03-09 04:00"),
        # New York fall back: EDT at midnight, EST at the next one: 25 h.
        ("America/New_York", date(2026, 11, 1), "2026-11-01 04:00", "2026-11-02 05:00"),
        # Sydney: AEDT (+11) ends on 2026-04-05: 25 h; AEDT starts on 2026-10-04: 23 h.
        ("Australia/Sydney", date(2026, 4, 5), "2026-04-04 13:00", "2026-04-05 14:00"),
        ("Australia/Sydney", date(2026, 10, 4), "2026-10-03 14:00", "2026-10-04 13:00"),
        # Kolkata: +05:30 all year; the local day starts at 18:30 UTC the day before.
        ("Asia/Kolkata", date(2026, 6, 15), "2026-06-14 18:30", "2026-06-15 18:30"),
        ("America/New_York", date(2026, 7, 1), "2026-07-01 04:00", "2026-07-02 04:00"),
    ],
)
def test_local_window(tz, ds, start, end):
    assert local_window(tz, ds) == (ts(start), ts(end))


# -- day assignment on DST days and at the Kolkata boundary ---------------------------------------


def test_new_york_spring_forward_day_has_23_hours(tmp_path):
    write(
        tmp_path,
        "2026-03-08",
        "data_0.parquet",
        [
            ev("a", "u1", "page_view", "2026-03-08 04:59:59"),  # 03-07 23:59:59 EST
            ev("b", "u2", "page_view", "2026-03-08 05:00:00"),  # 03-08 00:00:00 EST
            ev("c", "u3", "product_view", "2026-03-08 07:30:00"),  # 03-08 03:30 EDT
            ev("d", "u4", "page_view", "2026-03-09 03:59:59"),  # 03-08 23:59:59 EDT
            ev("e", "u5", "page_view", "2026-03-09 04:00:00"),  # 03-09 00:00:00 EDT
        ],
    )
    days = [date(2026, 3, 7), date(2026, 3, 8), date(2026, 3, 9)]
    rows = recount_store(tmp_path, STORE, "America/New_York", days)
    assert [counts(rows[d]) for d in days] == [(1, 1, 1), (3, 3, 3), (1, 1, 1)]
    mar8 = rows[date(2026, 3, 8)]
    assert (mar8["page_views"], mar8["product_views"]) == (2, 1)
    assert mar8["window_end_utc"] - mar8["window_start_utc"] == timedelta(hours=23)


def test_new_york_fall_back_day_has_25_hours(tmp_path):
    write(
        tmp_path,
        "2026-11-01",
        "data_0.parquet",
        [
            ev("a", "u1", "page_view", "2026-11-01 03:59:59"),  # 10-31 23:59:59 EDT
            ev("b", "u2", "page_view", "2026-11-01 04:00:00"),  # 11-01 00:00 EDT
            ev("c", "u3", "page_view", "2026-11-01 05:30:00"),  # 01:30 EDT
            ev("d", "u4", "page_view", "2026-11-01 06:30:00"),  # 01:30 EST (repeated hour)
            ev("e", "u5", "page_view", "2026-11-02 04:59:59"),  # 11-01 23:59:59 EST
            ev("f", "u6", "page_view", "2026-11-02 05:00:00"),  # 11-02 00:00 EST
        ],
    )
    days = [date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2)]
    rows = recount_store(tmp_path, STORE, "America/New_York", days)
    assert [counts(rows[d]) for d in days] == [(1, 1, 1), (4, 4, 4), (1, 1, 1)]
    nov1 = rows[date(2026, 11, 1)]
    assert nov1["window_end_utc"] - nov1["window_start_utc"] == timedelta(hours=25)


def test_sydney_dst_end_day_has_25_hours(tmp_path):
    write(
        tmp_path,
        "2026-04-05",
        "data_0.parquet",
        [
            ev("a", "u1", "page_view", "2026-04-04 12:59:59"),  # 04-04 23:59:59 AEDT
            ev("b", "u2", "page_view", "2026-04-04 13:00:00"),  # 04-05 00:00 AEDT
            ev("c", "u3", "page_view", "2026-04-05 13:30:00"),  # 04-05 23:30 AEST
            ev("d", "u4", "page_view", "2026-04-05 14:00:00"),  # 04-06 00:00 AEST
        ],
    )
    days = [date(2026, 4, 4), date(2026, 4, 5), date(2026, 4, 6)]
    rows = recount_store(tmp_path, STORE, "Australia/Sydney", days)
    assert [counts(rows[d]) for d in days] == [(1, 1, 1), (2, 2, 2), (1, 1, 1)]


def test_sydney_dst_start_day_has_23_hours(tmp_path):
    write(
        tmp_path,
        "2026-10-04",
        "data_0.parquet",
        [
            ev("a", "u1", "page_view", "2026-10-03 13:59:59"),  # 10-03 23:59:59 AEST
            ev("b", "u2", "page_view", "2026-10-03 14:00:00"),  # 10-04 00:00 AEST
            ev("c", "u3", "page_view", "2026-10-04 12:59:59"),  # 10-04 23:59:59 AEDT
            ev("d", "u4", "page_view", "2026-10-04 13:00:00"),  # 10-05 00:00 AEDT
            ev("e", "u5", "page_view", "2026-10-04 13:30:00"),  # 10-05 00:30 AEDT
        ],
    )
    days = [date(2026, 10, 3), date(2026, 10, 4), date(2026, 10, 5)]
    rows = recount_store(tmp_path, STORE, "Australia/Sydney", days)
    assert [counts(rows[d]) for d in days] == [(1, 1, 1), (2, 2, 2), (2, 2, 2)]


def test_kolkata_day_starts_at_1830_utc(tmp_path):
    write(
        tmp_path,
        "2026-06-15",
        "data_0.parquet",
        [
            ev("a", "u1", "page_view", "2026-06-14 18:29:59"),  # 06-14 23:59:59 IST
            ev("b", "u2", "page_view", "2026-06-14 18:30:00"),  # 06-15 00:00:00 IST
            ev("c", "u3", "page_view", "2026-06-15 18:29:59"),  # 06-15 23:59:59 IST
            ev("d", "u4", "page_view", "2026-06-15 18:30:00"),  # 06-16 00:00:00 IST
        ],
    )
    days = [date(2026, 6, 14), date(2026, 6, 15), date(2026, 6, 16)]
    rows = recount_store(tmp_path, STORE, "Asia/Kolkata", days)
    assert [counts(rows[d]) for d in days] == [(1, 1, 1), (2, 2, 2), (1, 1, 1)]
    assert rows[date(2026, 6, 15)]["window_start_utc"] == ts("2026-06-14 18:30:00")


# -- deduplication, counts, sessions -------------------------------------------------------------

KOLKATA = "Asia/Kolkata"
D = date(2026, 6, 15)  # window [2026-06-14 18:30, 2026-06-15 18:30) UTC


def test_duplicate_event_id_is_counted_once(tmp_path):
    buy = ev("p1", "u1", "purchase", "2026-06-15 06:10:00", order="o1", revenue="19.99")
    write(
        tmp_path,
        "2026-06-15",
        "data_0.parquet",
        [
            ev("v1", "u1", "page_view", "2026-06-15 06:00:00"),
            ev("v1", "u1", "page_view", "2026-06-15 06:00:00", loaded="2026-06-15 07:00:00"),
            buy,
        ],
    )
    resent = ev("p1", "u1", "purchase", "2026-06-15 06:10:00", order="o1", revenue="19.99")
    resent = resent[:6] + (ts("2026-06-16 03:00:00"),) + resent[7:]
    write(tmp_path, "2026-06-15", "late-abc.parquet", [resent])
    assert len(read_raw_events(tmp_path, STORE)) == 4
    row = recount_store(tmp_path, STORE, KOLKATA, [D])[D]
    assert counts(row) == (2, 1, 1)
    assert (row["page_views"], row["orders"], row["revenue_usd"]) == (1, 1, Decimal("19.99"))
    assert row["conversion_rate"] == 1.0


def test_counts_by_type_orders_and_revenue(tmp_path):
    write(
        tmp_path,
        "2026-06-15",
        "data_0.parquet",
        [
            # u1: one session, converts with two purchase events of the same order.
            ev("e1", "u1", "page_view", "2026-06-15 04:00:00"),
            ev("e2", "u1", "product_view", "2026-06-15 04:01:00"),
            ev("e3", "u1", "add_to_cart", "2026-06-15 04:02:00"),
            ev("e4", "u1", "checkout", "2026-06-15 04:03:00"),
            ev("e5", "u1", "purchase", "2026-06-15 04:04:00", order="o1", revenue="10.50"),
            ev("e6", "u1", "purchase", "2026-06-15 04:05:00", order="o1", revenue="2.25"),
            # u2: two sessions (gap 2 h), the second buys order o2.
            ev("e7", "u2", "page_view", "2026-06-15 08:00:00"),
            ev("e8", "u2", "page_view", "2026-06-15 10:00:00"),
            ev("e9", "u2", "purchase", "2026-06-15 10:10:00", order="o2", revenue="100.00"),
            # u3: browses only.
            ev("e10", "u3", "product_view", "2026-06-15 12:00:00"),
        ],
    )
    row = recount_store(tmp_path, STORE, KOLKATA, [D])[D]
    assert {k: v for k, v in row.items() if k not in ("window_start_utc", "window_end_utc")} == {
        "store_id": STORE,
        "ds": D,
        "events": 10,
        "sessions": 4,
        "converted_sessions": 2,
        "users": 3,
        "page_views": 3,
        "product_views": 2,
        "add_to_carts": 1,
        "checkouts": 1,
        "orders": 2,
        "revenue_usd": Decimal("112.75"),
        "conversion_rate": 0.5,
    }


def test_gap_of_exactly_30_minutes_keeps_the_session(tmp_path):
    write(
        tmp_path,
        "2026-06-15",
        "data_0.parquet",
        [
            # u1: +30:00 same session, then +30:01 new session -> 2 sessions.
            ev("a1", "u1", "page_view", "2026-06-15 05:00:00"),
            ev("a2", "u1", "page_view", "2026-06-15 05:30:00"),
            ev("a3", "u1", "page_view", "2026-06-15 06:00:01"),
            # u2: gaps of 25 min measured from the previous event, not the session start -> 1.
            ev("b1", "u2", "page_view", "2026-06-15 07:00:00"),
            ev("b2", "u2", "page_view", "2026-06-15 07:25:00"),
            ev("b3", "u2", "page_view", "2026-06-15 07:50:00"),
            ev("b4", "u2", "page_view", "2026-06-15 08:15:00"),
        ],
    )
    row = recount_store(tmp_path, STORE, KOLKATA, [D])[D]
    assert counts(row) == (7, 3, 2)


def test_session_crossing_local_midnight(tmp_path):
    # Local midnight between D and D+1 is 2026-06-15 18:30 UTC.
    write(
        tmp_path,
        "2026-06-15",
        "data_0.parquet",
        [
            ev("a1", "u1", "page_view", "2026-06-15 18:10:00"),  # D 23:40
            ev("a2", "u1", "add_to_cart", "2026-06-15 18:25:00"),  # D 23:55
            ev("a3", "u1", "page_view", "2026-06-15 18:40:00"),  # D+1 00:10, same session
            ev("a4", "u1", "page_view", "2026-06-15 19:05:00"),  # D+1 00:35, same session
        ],
    )
    write(
        tmp_path,
        "2026-06-16",
        "data_0.parquet",
        [
            ev("b1", "u2", "page_view", "2026-06-15 19:00:00"),  # D+1 00:30, new session
            ev("a5", "u1", "page_view", "2026-06-15 19:40:00"),  # D+1 01:10, gap 35 min: new
        ],
    )
    d1 = D + timedelta(days=1)
    rows = recount_store(tmp_path, STORE, KOLKATA, [D, d1])
    assert counts(rows[D]) == (2, 1, 1)
    assert counts(rows[d1]) == (4, 2, 2)


def test_sessions_use_the_whole_history_not_a_lookback(tmp_path):
    # One user active every 20 min from D 00:00 to D+2 23:40 local: a single session of D.
    start = ts("2026-06-14 18:30:00")
    rows_in = [
        ev(f"e{i:03d}", "u1", "page_view", str(start + timedelta(minutes=20 * i)))
        for i in range(3 * 72)
    ]
    write(tmp_path, "2026-06-15", "data_0.parquet", rows_in)
    days = [D, D + timedelta(days=1), D + timedelta(days=2)]
    rows = recount_store(tmp_path, STORE, KOLKATA, days)
    assert [counts(rows[d]) for d in days] == [(72, 1, 1), (72, 0, 1), (72, 0, 1)]


def test_purchase_after_window_end_does_not_convert(tmp_path):
    write(
        tmp_path,
        "2026-06-15",
        "data_0.parquet",
        [
            # u1: session starts D 23:50, buys D+1 00:05 -> not converted on D.
            ev("a1", "u1", "checkout", "2026-06-15 18:20:00"),
            ev("a2", "u1", "purchase", "2026-06-15 18:35:00", order="o1", revenue="40.00"),
            # u2: session of D that buys before midnight -> converted.
            ev("b1", "u2", "page_view", "2026-06-15 10:00:00"),
            ev("b2", "u2", "purchase", "2026-06-15 10:05:00", order="o2", revenue="5.00"),
        ],
    )
    d1 = D + timedelta(days=1)
    rows = recount_store(tmp_path, STORE, KOLKATA, [D, d1])
    day, nxt = rows[D], rows[d1]
    assert (day["sessions"], day["converted_sessions"], day["conversion_rate"]) == (2, 1, 0.5)
    assert (day["orders"], day["revenue_usd"]) == (1, Decimal("5.00"))
    # The purchase is an event of D+1 (order and revenue there) but in no session of D+1.
    assert (nxt["events"], nxt["sessions"], nxt["conversion_rate"]) == (1, 0, 0.0)
    assert (nxt["orders"], nxt["revenue_usd"]) == (1, Decimal("40.00"))


def test_files_in_the_wrong_ds_folder_count_on_the_right_day(tmp_path):
    # Events of local D filed under ds=2026-06-20; an event of local D-1 filed under D.
    write(
        tmp_path,
        "2026-06-20",
        "data_0.parquet",
        [
            ev("a1", "u1", "page_view", "2026-06-15 03:00:00"),
            ev("a2", "u2", "page_view", "2026-06-15 04:00:00"),
        ],
    )
    # Columns in another order: files are read by name.
    write(
        tmp_path,
        "2026-06-15",
        "late-x.parquet",
        [ev("b1", "u3", "page_view", "2026-06-14 18:00:00")],  # D-1 23:30 IST
        select="device, event_ts, event_id, user_id, event_type, loaded_at, store_id, "
        "session_key, product_id, order_id, revenue_usd",
    )
    days = [D - timedelta(days=1), D, date(2026, 6, 20)]
    rows = recount_store(tmp_path, STORE, KOLKATA, days)
    assert [counts(rows[d]) for d in days] == [(1, 1, 1), (2, 2, 2), (0, 0, 0)]


def test_empty_day_is_an_all_zero_row(tmp_path):
    write(
        tmp_path, "2026-06-15", "data_0.parquet", [ev("a", "u1", "page_view", "2026-06-15 03:00")]
    )
    d = date(2026, 7, 1)
    row = recount_store(tmp_path, STORE, KOLKATA, [d])[d]
    assert row == {
        "store_id": STORE,
        "ds": d,
        "events": 0,
        "sessions": 0,
        "converted_sessions": 0,
        "users": 0,
        "page_views": 0,
        "product_views": 0,
        "add_to_carts": 0,
        "checkouts": 0,
        "orders": 0,
        "revenue_usd": Decimal(0),
        "conversion_rate": 0.0,
        "window_start_utc": ts("2026-06-30 18:30:00"),
        "window_end_utc": ts("2026-07-01 18:30:00"),
    }
    assert recount_store(tmp_path / "nowhere", STORE, KOLKATA, [d])[d]["events"] == 0


def test_recount_day_matches_recount_store(tmp_path):
    write(
        tmp_path,
        "2026-06-15",
        "data_0.parquet",
        [
            ev("a1", "u1", "page_view", "2026-06-15 03:00:00"),
            ev("a2", "u1", "purchase", "2026-06-15 03:10:00", order="o", revenue="1.00"),
            ev("a2", "u1", "purchase", "2026-06-15 03:10:00", order="o", revenue="1.00"),
        ],
    )
    events = read_raw_events(tmp_path, STORE)
    row = recount_day(events, KOLKATA, D)
    assert (row["store_id"], row["events"], row["sessions"], row["orders"]) == (STORE, 2, 1, 1)
    assert row == recount_store(tmp_path, STORE, KOLKATA, [D])[D]


# -- compare_rows ----------------------------------------------------------------------------------

EXPECTED = {
    "store_id": STORE,
    "ds": D,
    "events": 10,
    "sessions": 4,
    "converted_sessions": 1,
    "users": 3,
    "page_views": 5,
    "product_views": 2,
    "add_to_carts": 1,
    "checkouts": 1,
    "orders": 1,
    "revenue_usd": Decimal("12.30"),
    "conversion_rate": 0.25,
    "window_start_utc": ts("2026-06-14 18:30:00"),
    "window_end_utc": ts("2026-06-15 18:30:00"),
}


def test_compare_rows_accepts_duckdb_and_psycopg2_types():
    duck = {k: v for k, v in EXPECTED.items() if k != "converted_sessions"}
    assert compare_rows(EXPECTED, duck) == []
    ist = timezone(timedelta(hours=5, minutes=30))
    pg = dict(
        duck,
        ds=datetime(2026, 6, 15),
        revenue_usd=Decimal("12.3"),
        conversion_rate=0.25 + 1e-12,
        sessions=Decimal(4),
        window_start_utc=datetime(2026, 6, 14, 18, 30, tzinfo=UTC),
        window_end_utc=datetime(2026, 6, 16, 0, 0, tzinfo=ist),
    )
    assert compare_rows(EXPECTED, pg) == []
    assert compare_rows(EXPECTED, dict(pg, revenue_usd=12.3)) == []


def test_compare_rows_reports_each_mismatch():
    actual = dict(
        EXPECTED,
        sessions=5,
        revenue_usd=Decimal("12.31"),
        conversion_rate=0.25 + 1e-6,
        window_end_utc=ts("2026-06-15 19:30:00"),
    )
    del actual["orders"]
    problems = compare_rows(EXPECTED, actual)
    assert len(problems) == 5, problems
    text = "\n".join(problems)
    for key in ("sessions", "revenue_usd", "conversion_rate", "window_end_utc", "orders"):
        assert key in text
    assert "actual - expected = 1" in text
