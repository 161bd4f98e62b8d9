"""Pure arithmetic of the benchmarks: ideal makespan, spreads, overhead breakdown.

Input is a list of ``ChildTiming`` rows built from Prefect's flow-run timestamps and the
ledger's dbt work interval (recorded inside the ``dbt-global`` slot by the store flow).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass


@dataclass(frozen=True)
class ChildTiming:
    store_id: str
    ds: str
    state: str
    created: float  # seconds since the strategy was triggered
    start: float | None  # flow run entered Running
    end: float | None  # flow run reached a final state
    work_start: float | None  # dbt work inside the dbt-global slot (ledger)
    work_end: float | None
    body_start: float | None = None  # the flow body began (ledger started_at)

    @property
    def work(self) -> float:
        if self.work_start is None or self.work_end is None:
            return 0.0
        return self.work_end - self.work_start

    @property
    def wall(self) -> float | None:
        return None if self.end is None else self.end - self.created


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
    """Where a child's wall time goes besides dbt work, per completed child.

    - ``pickup``: created -> Running (worker poll, launch, engine start)
    - ``engine``: Running -> flow body (flow load, parameters, subflow bookkeeping)
    - ``prepare``: flow body -> dbt work start (registry, fingerprint, slot acquisition)
    - ``after_work``: dbt work end -> final state (row counts, ledger, completion)
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
        "engine": spread(
            [c.body_start - c.start for c in done if None not in (c.start, c.body_start)]
        ),
        "prepare": spread([c.work_start - c.body_start for c in done if c.body_start is not None]),
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
