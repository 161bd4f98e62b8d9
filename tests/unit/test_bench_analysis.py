"""The benchmark's own arithmetic (bench/analysis.py, prefect_db, makespan, load): no stack."""

import os
import time
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest

from bench import load
from bench.analysis import (
    ChildTiming,
    child_timings,
    ideal_makespan,
    max_overlap,
    overhead_breakdown,
    percentile,
)
from bench.prefect_db import DbSnapshot, growth
from clickstream.core.records import BuildRecord


def test_ideal_makespan_is_bounded_by_the_global_limit_or_the_longest_store():
    def c(store, work):
        return ChildTiming(store, "d", "COMPLETED", 0, 0, work, 0, work)

    # 4 stores x 10 s, G=2: 40/2 = 20 s beats the longest store (10 s).
    assert ideal_makespan([c(s, 10) for s in "abcd"], 2) == 20
    # One store with 30 s of work: it cannot go faster than its own lane.
    assert ideal_makespan([c("a", 10), c("a", 20), c("b", 5)], 4) == 30


def test_percentile_and_overlap():
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90) == 9
    assert max_overlap([(0, 2), (1, 3), (2, 4)]) == 2  # ends are exclusive


def test_overhead_breakdown_splits_wall_time():
    child = ChildTiming(
        "a", "d", "COMPLETED", created=0, start=1, end=10, work_start=2, work_end=8,
        slot_request=1.5,
    )  # fmt: skip
    nxt = ChildTiming(
        "a", "e", "COMPLETED", created=10.5, start=11, end=20, work_start=12, work_end=19
    )
    out = overhead_breakdown([child, nxt])
    assert out["overhead"]["max"] == pytest.approx(4)  # 10 wall - 6 work
    assert out["pickup"]["min"] == pytest.approx(0.5)
    assert out["setup"]["median"] == pytest.approx(0.5)  # Running 1 -> slot requested 1.5
    assert out["slot"]["median"] == pytest.approx(0.5)  # slot requested 1.5 -> dbt 2
    assert out["refill"]["median"] == pytest.approx(0.5)


def test_a_run_of_several_days_is_one_child_with_one_work_interval():
    t0 = datetime(2026, 10, 1, tzinfo=UTC)
    at = lambda s: (t0 + timedelta(seconds=s)).replace(tzinfo=None)  # noqa: E731 - naive UTC

    def build(ds, run_id):
        return BuildRecord(
            store_id="store-01", ds=ds, status="completed", flow_run_id=run_id,
            fingerprint="x", built_at=at(20), started_at=at(3), work_started_at=at(5),
            work_ended_at=at(12), dbt_node_seconds=1.5,
        )  # fmt: skip

    days = [date(2026, 9, 1) + timedelta(days=n) for n in range(7)]
    run = SimpleNamespace(
        id="r1",
        parameters={"store_id": "store-01", "ds": "2026-09-01", "ds_end": "2026-09-07"},
        state_type=SimpleNamespace(value="COMPLETED"),
        created=t0 + timedelta(seconds=1),
        start_time=t0 + timedelta(seconds=2),
        end_time=t0 + timedelta(seconds=13),
    )
    (child,) = child_timings([run], [build(d, "r1") for d in days], t0)
    assert (child.ds, child.days) == ("2026-09-01..2026-09-07", 7)
    assert (child.work_start, child.work_end, child.work) == (5, 12, 7)  # one interval
    assert child.node_seconds == pytest.approx(7 * 1.5)
    assert child.slot_request == 3 and child.wall == 12


def test_database_growth_is_a_difference_of_snapshots():
    before = DbSnapshot(1000, 5000, {"flow_run": 2, "log": 10}, {"logs": 100, "events": 0})
    after = DbSnapshot(9000, 5000, {"flow_run": 6, "log": 50}, {"logs": 500, "events": 4000})
    g = growth(before, after, 6.0)
    assert (g.used_bytes, g.file_bytes, g.rows) == (8000, 0, {"flow_run": 4, "log": 40})
    per = g.per(4)
    assert per.used_bytes == 2000 and per.rows["log"] == 10 and per.group_bytes["events"] == 1000


def test_machine_cpu_counts_this_process_and_the_wall_clock():
    from bench.makespan import machine_cpu

    busy0, wall0 = machine_cpu()
    t0, cpu0 = time.monotonic(), time.process_time()
    while time.process_time() - cpu0 < 0.5:  # burn half a CPU-second in this process
        pass
    busy1, wall1 = machine_cpu()
    spent, elapsed = time.process_time() - cpu0, time.monotonic() - t0
    tick = 2 / os.sysconf("SC_CLK_TCK")  # /proc/stat counts whole ticks
    assert busy1 - busy0 >= spent - tick  # the whole machine: at least this process
    assert abs((wall1 - wall0) - elapsed) <= 0.05 + tick


def test_the_load_section_is_replaced_in_place(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(f"# x\n\n{load.BEGIN}\nold\n{load.END_MARK}\n\n## after\n")
    load.update_results(results, f"{load.BEGIN}\nnew\n{load.END_MARK}")
    assert results.read_text() == f"# x\n\n{load.BEGIN}\nnew\n{load.END_MARK}\n\n## after\n"
