"""Limits a run of the product must never break, measured from what it recorded."""

from __future__ import annotations


def max_overlap(intervals) -> int:
    """Most half-open intervals [start, end) open at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = cur = 0
    for _, step in events:
        cur += step
        best = max(best, cur)
    return best


def work_intervals(builds) -> list[tuple]:
    """dbt work intervals from ledger builds, one per dbt invocation: the days a multi-day
    run built share theirs, and must count once when measuring overlap."""
    return sorted({(b.flow_run_id, b.work_started_at, b.work_ended_at) for b in builds})


def dbt_overlap(builds) -> int:
    """Most dbt invocations at work at one instant (from the ledger)."""
    return max_overlap([(start, end) for _, start, end in work_intervals(builds)])
