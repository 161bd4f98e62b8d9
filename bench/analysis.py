"""Pure arithmetic of the benchmarks: ideal makespan, spreads, overhead breakdown.

Input is a list of ``ChildTiming`` rows, one per child run (one bar in a Gantt chart), built
from Prefect's flow-run timestamps and the ledger. The ledger has one row per day; the days
of one run share its flow_run_id and its dbt invocation's work interval (recorded inside the
``dbt-global`` slot), and each holds an equal share of dbt's node execution time.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class ChildTiming:
    store_id: str
    ds: str  # the run's days: "2026-10-01" or "2026-10-01..2026-10-07"
    state: str
    created: float  # seconds since the strategy was triggered
    start: float | None  # flow run entered Running
    end: float | None  # flow run reached a final state
    work_start: float | None  # dbt work inside the dbt-global slot (ledger)
    work_end: float | None
    slot_request: float | None = None  # the run asked for its dbt-global slot (ledger)
    days: int = 1  # days this run built (ledger rows with its flow_run_id)
    node_seconds: float = 0.0  # dbt's node execution time, summed over its days
    work_seconds: float | None = None  # dbt work when it was several invocations

    @property
    def work(self) -> float:
        if self.work_seconds is not None:
            return self.work_seconds
        if self.work_start is None or self.work_end is None:
            return 0.0
        return self.work_end - self.work_start

    @property
    def wall(self) -> float | None:
        return None if self.end is None else self.end - self.created


def child_timings(runs, builds, t0: datetime) -> list[ChildTiming]:
    """One row per flow run: ``runs`` are Prefect flow runs (``id``, ``parameters``,
    ``state_type``, ``created``, ``start_time``, ``end_time``), ``builds`` the ledger's
    BuildRecords. A run's ledger rows are found by flow_run_id."""
    by_run: dict[str, list] = defaultdict(list)
    for b in builds:
        if b.flow_run_id:
            by_run[b.flow_run_id].append(b)

    def rel(ts: datetime | None) -> float | None:
        if ts is None:
            return None
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=UTC)
        return (ts - t0).total_seconds()

    out = []
    for run in runs:
        rows = sorted(by_run.get(str(run.id), []), key=lambda b: b.ds)
        params = run.parameters or {}
        first, last = params.get("ds"), params.get("ds_end") or params.get("ds")
        intervals = sorted(
            {(b.work_started_at, b.work_ended_at) for b in rows if b.work_started_at}
        )
        work_seconds = None
        if len(intervals) > 1:  # several invocations (a full refresh of many days)
            work_seconds = sum((e - s).total_seconds() for s, e in intervals if e)
        requests = [b.started_at for b in rows if b.started_at is not None]
        out.append(
            ChildTiming(
                store_id=str(params.get("store_id")),
                ds=str(first) if first == last else f"{first}..{last}",
                state=run.state_type.value if run.state_type else "UNKNOWN",
                created=rel(run.created),
                start=rel(run.start_time),
                end=rel(run.end_time),
                work_start=rel(intervals[0][0]) if intervals else None,
                work_end=rel(max(e for _, e in intervals if e)) if intervals else None,
                slot_request=rel(min(requests)) if requests else None,
                days=len(rows) or 1,
                node_seconds=sum(b.dbt_node_seconds or 0.0 for b in rows),
                work_seconds=work_seconds,
            )
        )
    return out


def ideal_makespan(children: list[ChildTiming], global_limit: int) -> float:
    """``max(sum(t) / G, max over stores of sum(t_store))``: the best any dispatcher can do
    with one run per store at a time and ``G`` dbt slots, given these dbt work times."""
    per_store: dict[str, float] = defaultdict(float)
    for c in children:
        per_store[c.store_id] += c.work
    total = sum(per_store.values())
    return max(total / global_limit, max(per_store.values(), default=0.0))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0, "median": math.nan, "p90": math.nan, "min": math.nan, "max": math.nan}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p90": percentile(values, 90),
        "min": min(values),
        "max": max(values),
    }


def overhead_breakdown(children: list[ChildTiming]) -> dict[str, dict[str, float]]:
    """Where a child run's wall time goes besides dbt work, per completed child.

    - ``pickup``: created -> Running (worker poll, launcher, warm fork, engine start)
    - ``setup``: Running -> the run asks for its dbt-global slot (flow and parameters, the
      registry, the ledger read, source fingerprints, dbt arguments)
    - ``slot``: slot requested -> dbt work starts (the dbt-global slot and the store's
      warehouse lock)
    - ``after_work``: dbt work end -> final state (ledger write, final state)
    - ``overhead``: wall - work (the sum of the above)
    - ``refill``: a child ended -> the next child was created (how fast the dispatcher
      reuses a freed place; only ends followed by a creation count)
    """
    done = [c for c in children if c.state == "COMPLETED" and c.work_start is not None]
    out = {
        "wall": spread([c.wall for c in done if c.wall is not None]),
        "work": spread([c.work for c in done]),
        "overhead": spread([c.wall - c.work for c in done if c.wall is not None]),
        "pickup": spread([c.start - c.created for c in done if c.start is not None]),
        "setup": spread(
            [c.slot_request - c.start for c in done if None not in (c.start, c.slot_request)]
        ),
        "slot": spread([c.work_start - c.slot_request for c in done if c.slot_request is not None]),
        "after_work": spread([c.end - c.work_end for c in done if c.end is not None]),
    }
    created = sorted(c.created for c in children)
    refills = []
    for c in children:
        later = [t for t in created if c.end is not None and t >= c.end]
        if later:
            refills.append(later[0] - c.end)
    out["refill"] = spread(refills)
    return out


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals open at one instant (end is exclusive)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best
