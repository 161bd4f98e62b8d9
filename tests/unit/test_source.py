"""Reading the source: landing layout and fingerprints of a partition's input range.

Expected values are computed here with zoneinfo and plain DuckDB scans of the files, not
with clickstream.core.windows: the input range of a New York day is [local midnight - 60 min,
next local midnight) in UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest

from clickstream.adapters.landing import fingerprints
from clickstream.core.fingerprints import FINGERPRINT_VERSION, Recorded
from clickstream.core.windows import (
    SESSION_LOOKBACK,
    landing_days,
    partition_window,
    partition_windows,
)
from clickstream.local.synthetic import generate
from tests.support.builders import NY, write_events

DAYS = [date(2026, 10, 30) + timedelta(days=n) for n in range(5)]  # NY falls back 11-01


def input_bounds(ds: date) -> tuple[datetime, datetime]:
    """Independent: zoneinfo, 60 minutes of lookback."""
    tz = ZoneInfo(NY.timezone)
    start = datetime(ds.year, ds.month, ds.day, tzinfo=tz).astimezone(UTC).replace(tzinfo=None)
    nxt = ds + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=tz).astimezone(UTC).replace(tzinfo=None)
    return start - timedelta(minutes=60), end


def raw_count(landing: Path, ds: date) -> int:
    lo, hi = input_bounds(ds)
    return duckdb.sql(
        f"select count(*) from read_parquet('{landing}/us-flagship/*/*.parquet', "
        f"union_by_name = true) where event_ts >= '{lo}' and event_ts < '{hi}'"
    ).fetchall()[0][0]


@pytest.fixture
def landing(tmp_path) -> Path:
    generate([NY], DAYS[0] - timedelta(days=1), DAYS[-1], 800, seed=3, landing=tmp_path)
    return tmp_path


def test_lookback_is_at_least_the_dbt_session_gap():
    import yaml

    from clickstream import settings

    gap = yaml.safe_load((settings.dbt_project_dir() / "dbt_project.yml").read_text())["vars"][
        "session_gap_minutes"
    ]
    assert timedelta(minutes=gap) <= SESSION_LOOKBACK


def test_input_range_and_landing_folders():
    w = partition_window(NY.timezone, date(2026, 11, 1))  # 25 h local day
    assert (w.input_start, w.input_end) == input_bounds(date(2026, 11, 1))
    # 03:00 UTC on 11-01 is 23:00 local on 10-31: the lookback reaches into the day before.
    assert landing_days(NY, w.input_start, w.input_end) == [date(2026, 10, 31), date(2026, 11, 1)]


def test_fingerprint_counts_every_raw_row_of_the_input_range(landing):
    fps = fingerprints(NY, partition_windows(NY.timezone, DAYS), target="duckdb", landing=landing)
    assert list(fps) == DAYS
    for ds in DAYS:
        assert fps[ds].event_count == raw_count(landing, ds) > 0
        assert fps[ds].token.startswith(f"{FINGERPRINT_VERSION}:{fps[ds].event_count}:")
        assert fps[ds].files and fps[ds].files.startswith("2:")  # the day and the day before


def test_late_data_changes_exactly_the_partitions_that_read_it(landing):
    windows = partition_windows(NY.timezone, DAYS)
    before = fingerprints(NY, windows, target="duckdb", landing=landing)
    d = date(2026, 11, 1)
    _, end = input_bounds(d)  # next local midnight (UTC)
    # 20 minutes before the next local midnight: in d's window AND in d+1's lookback.
    write_events(
        landing,
        d,
        "late-a.parquet",
        [("late-a", end - timedelta(minutes=20), datetime(2030, 1, 1), "u1")],
    )
    after = fingerprints(NY, windows, target="duckdb", landing=landing)
    changed = {ds for ds in DAYS if after[ds].token != before[ds].token}
    assert changed == {d, d + timedelta(days=1)}
    assert after[d].event_count == before[d].event_count + 1

    # Local noon of d: only d reads it.
    before = after
    noon = (
        datetime(2026, 11, 1, 12, tzinfo=ZoneInfo(NY.timezone)).astimezone(UTC).replace(tzinfo=None)
    )
    write_events(landing, d, "late-b.parquet", [("late-b", noon, datetime(2030, 1, 1), "u2")])
    after = fingerprints(NY, windows, target="duckdb", landing=landing)
    assert {ds for ds in DAYS if after[ds].token != before[ds].token} == {d}


def test_a_changed_row_changes_the_fingerprint_even_with_the_same_count(landing):
    d = date(2026, 11, 2)
    lo, _ = input_bounds(d)
    ts = lo + timedelta(hours=10)
    path = write_events(landing, d, "late-c.parquet", [("late-c", ts, datetime(2026, 11, 3), "u1")])
    windows = partition_windows(NY.timezone, [d])
    before = fingerprints(NY, windows, target="duckdb", landing=landing)[d]
    path.unlink()
    write_events(landing, d, "late-c.parquet", [("late-c", ts, datetime(2026, 11, 3), "u9")])
    after = fingerprints(NY, windows, target="duckdb", landing=landing)[d]
    assert after.event_count == before.event_count
    assert after.token != before.token


def test_unchanged_files_reuse_the_recorded_fingerprint_without_a_scan(landing):
    d = date(2026, 11, 1)
    windows = partition_windows(NY.timezone, [d])
    fp = fingerprints(NY, windows, target="duckdb", landing=landing)[d]
    # A recorded token that no scan could produce: reused as long as the files match.
    marker = f"{FINGERPRINT_VERSION}:7:recorded"
    reused = fingerprints(
        NY, windows, target="duckdb", landing=landing, recorded={d: Recorded(marker, fp.files)}
    )[d]
    assert reused.token == marker
    write_events(
        landing,
        d,
        "late-d.parquet",
        [("late-d", input_bounds(d)[0] + timedelta(hours=3), datetime(2030, 1, 1), "u1")],
    )
    rescanned = fingerprints(
        NY, windows, target="duckdb", landing=landing, recorded={d: Recorded(marker, fp.files)}
    )[d]
    assert rescanned.token != marker and rescanned.event_count == fp.event_count + 1


def test_old_window_only_fingerprints_are_never_reused(landing):
    d = date(2026, 11, 1)
    windows = partition_windows(NY.timezone, [d])
    fp = fingerprints(NY, windows, target="duckdb", landing=landing)[d]
    old = "2894:2026-11-02T01:00:00"  # the format builds recorded before input ranges
    again = fingerprints(
        NY, windows, target="duckdb", landing=landing, recorded={d: Recorded(old, fp.files)}
    )[d]
    assert again.token == fp.token != old


def test_fingerprint_of_missing_data(tmp_path):
    d = date(2026, 11, 1)
    fp = fingerprints(NY, partition_windows(NY.timezone, [d]), target="duckdb", landing=tmp_path)[d]
    assert (fp.event_count, fp.max_loaded_at) == (0, None)
    assert fp.files == "0:" + fp.files.split(":", 1)[1]


def test_many_windows_in_one_call(tmp_path):
    """1000 windows in one scan (speed is measured by the benchmark, not asserted here)."""
    days = [date(2024, 1, 1) + timedelta(days=n) for n in range(1000)]
    generate([NY], days[0], days[-1], 20, landing=tmp_path)
    fps = fingerprints(NY, partition_windows(NY.timezone, days), target="duckdb", landing=tmp_path)
    assert len(fps) == 1000 and all(fp.event_count > 0 for fp in fps.values())
