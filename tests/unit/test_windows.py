from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from clickstream.core.windows import (
    date_range,
    input_range,
    last_complete_days,
    local_date,
    local_today,
    partition_window,
    partition_windows,
)


@pytest.mark.parametrize(
    ("tz", "ds", "start", "end", "hours"),
    [
        # New York: spring forward (23 h), fall back (25 h), a normal day.
        ("America/New_York", date(2026, 3, 8), "2026-03-08 05:00", "2026-03-09 04:00", 23),
        ("America/New_York", date(2026, 11, 1), "2026-11-01 04:00", "2026-11-02 05:00", 25),
        ("America/New_York", date(2026, 6, 1), "2026-06-01 04:00", "2026-06-02 04:00", 24),
        # Kolkata: +05:30 all year, the local day starts at 18:30 UTC the day before.
        ("Asia/Kolkata", date(2026, 3, 8), "2026-03-07 18:30", "2026-03-08 18:30", 24),
        # Sydney: DST ends first Sunday of April (25 h), starts first Sunday of October (23 h).
        ("Australia/Sydney", date(2026, 4, 5), "2026-04-04 13:00", "2026-04-05 14:00", 25),
        ("Australia/Sydney", date(2026, 10, 4), "2026-10-03 14:00", "2026-10-04 13:00", 23),
        # Clocks set back over midnight (00:00-00:59 happens twice): the day starts at the
        # first 00:00, so the day before does not take that hour.
        ("Atlantic/Azores", date(2026, 10, 24), "2026-10-24 00:00", "2026-10-25 00:00", 24),
        ("Atlantic/Azores", date(2026, 10, 25), "2026-10-25 00:00", "2026-10-26 01:00", 25),
        ("America/Havana", date(2026, 11, 1), "2026-11-01 04:00", "2026-11-02 05:00", 25),
        # Clocks jump over midnight (no local 00:00): the day starts at the jump.
        ("America/Havana", date(2026, 3, 8), "2026-03-08 05:00", "2026-03-09 04:00", 23),
        ("America/Santiago", date(2026, 9, 6), "2026-09-06 04:00", "2026-09-07 03:00", 23),
        ("Asia/Beirut", date(2026, 3, 29), "2026-03-28 22:00", "2026-03-29 21:00", 23),
    ],
)
def test_window_bounds(tz, ds, start, end, hours):
    w = partition_window(tz, ds)
    assert w.window_start == datetime.fromisoformat(start)
    assert w.window_end == datetime.fromisoformat(end)
    assert w.hours == hours
    # What a build reads: the window plus one hour before it.
    assert w.input_start == datetime.fromisoformat(start) - timedelta(hours=1)
    assert w.input_end == w.window_end


@pytest.mark.parametrize("tz", ["America/New_York", "Asia/Kolkata", "Australia/Sydney", "UTC"])
def test_windows_tile_the_year_without_gaps(tz):
    days = date_range(date(2026, 1, 1), date(2026, 12, 31))
    windows = [partition_window(tz, d) for d in days]
    for a, b in zip(windows, windows[1:], strict=False):
        assert a.window_end == b.window_start
    total = windows[-1].window_end - windows[0].window_start
    assert total == timedelta(days=365)


def test_local_today_and_complete_days():
    now = datetime(2026, 11, 22, 20, 0)  # UTC
    assert local_today("Asia/Kolkata", now) == date(2026, 11, 23)  # 01:30 next day
    assert local_today("America/New_York", now) == date(2026, 11, 22)
    assert last_complete_days("Asia/Kolkata", 3, now) == [
        date(2026, 11, 20),
        date(2026, 11, 21),
        date(2026, 11, 22),
    ]
    with pytest.raises(ValueError):
        last_complete_days("UTC", 0, now)


def test_date_range_rejects_reversed():
    with pytest.raises(ValueError, match="before start"):
        date_range(date(2026, 1, 2), date(2026, 1, 1))


def test_input_range_of_several_days_spans_the_first_lookback_to_the_last_window_end():
    windows = partition_windows("America/New_York", [date(2026, 11, 2), date(2026, 10, 31)])
    assert [w.ds for w in windows] == [date(2026, 10, 31), date(2026, 11, 2)]
    assert input_range(windows) == (
        datetime(2026, 10, 31, 3, 0),  # 00:00 EDT = 04:00 UTC, minus the hour of lookback
        datetime(2026, 11, 3, 5, 0),  # 00:00 EST on 11-03
    )
    with pytest.raises(ValueError):
        input_range([])


def test_local_date_of_a_utc_instant():
    assert local_date("Asia/Kolkata", datetime(2026, 3, 7, 18, 29, 59)) == date(2026, 3, 7)
    assert local_date("Asia/Kolkata", datetime(2026, 3, 7, 18, 30)) == date(2026, 3, 8)


# Zones with every kind of day: DST at 02:00, at midnight (jumped over, or set back over),
# half-hour and 45-minute offsets, a 30-minute DST shift, southern-hemisphere DST.
ODD_ZONES = [
    "America/New_York",
    "Asia/Kolkata",
    "Australia/Sydney",
    "Atlantic/Azores",
    "America/Havana",
    "America/Santiago",
    "Asia/Beirut",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Asia/Kathmandu",
    "Europe/Berlin",
]


@pytest.mark.parametrize("tz", ODD_ZONES)
def test_each_window_is_exactly_the_instants_whose_local_date_is_its_day(tz):
    """Checked the other way round from how windows are made: UTC instants converted to local
    time by zoneinfo (no local-to-UTC step, no pendulum). The window starts at the first
    second whose local date is ds and ends at the first whose local date is after it."""
    zone = ZoneInfo(tz)

    def local(naive_utc: datetime) -> date:
        return naive_utc.replace(tzinfo=UTC).astimezone(zone).date()

    one = timedelta(seconds=1)
    days = date_range(date(2025, 1, 1), date(2027, 12, 31))
    windows = partition_windows(tz, days)
    long_or_short = 0
    for w in windows:
        assert local(w.window_start) == w.ds and local(w.window_start - one) < w.ds, w
        assert local(w.window_end - one) == w.ds and local(w.window_end) > w.ds, w
        assert local_date(tz, w.window_start) == w.ds == local_date(tz, w.window_end - one)
        long_or_short += w.hours != 24
    assert all(a.window_end == b.window_start for a, b in pairwise(windows))
    expected = 0 if tz in ("Asia/Kolkata", "Asia/Kathmandu") else 6  # 2 a year for 3 years
    assert long_or_short == expected
