"""Smoke run of `make bench` on a tiny grid: it runs end to end (its own stack, both
strategies, the dbt incremental run, the planner) and writes a well-formed results file
and the Gantt PNGs. Speed is what `make bench` measures; nothing here asserts a time."""

import pytest

from bench import run as bench_run
from bench.analysis import ChildTiming, ideal_makespan, max_overlap, overhead_breakdown, percentile


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
        "a", "d", "COMPLETED", created=0, start=1, end=10, work_start=2, work_end=8, body_start=1.5
    )
    nxt = ChildTiming(
        "a", "e", "COMPLETED", created=10.5, start=11, end=20, work_start=12, work_end=19
    )
    out = overhead_breakdown([child, nxt])
    assert out["overhead"]["max"] == pytest.approx(4)  # 10 wall - 6 work
    assert out["pickup"]["min"] == pytest.approx(0.5)
    assert out["refill"]["median"] == pytest.approx(0.5)


def test_bench_smoke_writes_results_and_pictures(tmp_path):
    out = tmp_path / "RESULTS.md"
    assert bench_run.main(smoke=True, results=out) == 0
    text = out.read_text()
    assert text.startswith("# Benchmark results")
    assert "Reproduce from a clean clone: `make bench`" in text
    for section in (
        "## 1. Makespan",
        "## 2. Dispatch overhead",
        "## 3. Planner scale",
        "## 4. Incremental cost",
    ):
        assert section in text
    assert "| ours | 1 |" in text and "| seed | 1 |" in text
    assert "3,288 partitions (3 stores x 3 years)" in text  # 3 x 1096 local days
    for name in ("ours", "seed"):
        png = tmp_path / f"gantt-{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"![{name}](gantt-{name}.png)" in text
