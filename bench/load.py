"""Load: 8 stores x 30 days of tiny partitions through one orchestrator run (`make load`).

Its own stack on a scratch project with 8 synthetic stores (clickstream.local.scratch), 200 events
per store-day, ``dbt-global`` = 2, the orchestrator's defaults (``max_parallel`` = 2 x
dbt-global, one day per child run). The backfill is triggered through the CLI
(``clickstream backfill --no-follow``). While it runs, Prefect is sampled every second: how
many child runs wait (Scheduled or Pending, AwaitingConcurrencySlot included) and how many
are in flight. Afterwards the invariants are checked from the run history and the ledger.

    python -m bench.load            # `make load`: also rewrites its section of RESULTS.md
    python -m bench.load --stores 3 --days 2 --results /tmp/r.md   # a quick look

Exits non-zero when an invariant is violated (the figures are written either way).
`make bench` runs the same function and puts the same section into RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from uuid import UUID

from bench.analysis import max_overlap
from bench.makespan import LOG_FINDINGS, bench_stack, read_child_runs, run_days
from clickstream.adapters import ledger
from clickstream.core.states import OVERSUBSCRIBE
from clickstream.local import logwatch
from clickstream.local.scratch import synthetic_stores

RESULTS = Path(__file__).parent / "RESULTS.md"
BEGIN, END_MARK = "<!-- load:begin -->", "<!-- load:end -->"

STORES = 8
START, END = date(2026, 9, 1), date(2026, 9, 30)
EVENTS_PER_DAY = 200
DBT_GLOBAL = 2  # the machine's cores: more only adds CPU contention


@dataclass
class LoadResult:
    figures: dict
    violations: list[str] = field(default_factory=list)
    measured_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def ok(self) -> bool:
        return not self.violations


async def _sample(client) -> tuple[int, int]:
    """(waiting, in flight) child runs right now."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    runs = await client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=["clickstream-dbt-run"])),
        flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(
                    any_=[StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING]
                )
            )
        ),
        limit=200,
    )
    waiting = sum(1 for r in runs if r.state_type != StateType.RUNNING)
    return waiting, len(runs)


async def _follow(parent: UUID, deadline_s: float):
    """Sample every second until the parent run is final; returns the samples' maxima."""
    from prefect.client.orchestration import get_client

    max_waiting = max_in_flight = samples = 0
    deadline = time.monotonic() + deadline_s
    async with get_client() as client:
        while time.monotonic() < deadline:
            waiting, in_flight = await _sample(client)
            max_waiting, max_in_flight = max(max_waiting, waiting), max(max_in_flight, in_flight)
            samples += 1
            state = (await client.read_flow_run(parent)).state
            if state.is_final():
                return state, max_waiting, max_in_flight, samples
            await asyncio.sleep(1)
    raise TimeoutError(f"the load backfill did not finish within {deadline_s:.0f}s")


def run(
    stores: int = STORES,
    start: date = START,
    end: date = END,
    events_per_day: int = EVENTS_PER_DAY,
    dbt_global: int = DBT_GLOBAL,
) -> LoadResult:
    max_parallel = OVERSUBSCRIBE * dbt_global  # the orchestrator's default
    days = (end - start).days + 1
    partitions = stores * days
    with bench_stack(synthetic_stores(stores), dbt_global) as bench:
        bench.generate(start, end, events_per_day)
        t_trigger = datetime.now(UTC)
        t0 = time.monotonic()
        out = bench.cli(
            "backfill", "--start", start.isoformat(), "--end", end.isoformat(), "--no-follow"
        )
        parent = UUID(re.search(r"/runs/flow-run/([0-9a-f-]{36})", out).group(1))
        state, max_waiting, max_in_flight, samples = asyncio.run(_follow(parent, 3000))
        wall = time.monotonic() - t0
        runs = read_child_runs(t_trigger)
        builds = ledger.read_builds(start=start, end=end)

    violations = []

    def check(ok: bool, what: str) -> None:
        if not ok:
            violations.append(what)

    check(state.type.value == "COMPLETED", f"the orchestrator ended {state.type.value}")
    per_partition = Counter(key for r in runs for key in run_days(r))
    check(
        len(per_partition) == partitions,
        f"{len(per_partition)} partitions had a run, expected {partitions}",
    )
    twice = sorted(k for k, n in per_partition.items() if n > 1)
    check(not twice, f"{len(twice)} partitions ran more than once, e.g. {twice[:3]}")
    states = Counter(r.state_type.value for r in runs)
    check(set(states) == {"COMPLETED"}, f"child run states {dict(states)}")
    statuses = Counter(b.status for b in builds.values())
    check(len(builds) == partitions, f"{len(builds)} ledger rows, expected {partitions}")
    check(set(statuses) == {"completed"}, f"ledger statuses {dict(statuses)}")

    # One run per store at a time, never more than max_parallel runs, never more than
    # dbt-global dbt builds at once (work intervals recorded inside the slot, one per run).
    by_store = defaultdict(list)
    for r in runs:
        by_store[r.parameters["store_id"]].append((r.start_time, r.end_time))
    per_store_overlap = max((max_overlap(iv) for iv in by_store.values()), default=0)
    run_overlap = max_overlap([(r.start_time, r.end_time) for r in runs])
    work = {
        (b.flow_run_id, b.work_started_at, b.work_ended_at)
        for b in builds.values()
        if b.work_started_at
    }
    dbt_overlap = max_overlap([(s, e) for _, s, e in work])
    check(per_store_overlap == 1, f"{per_store_overlap} runs of one store overlapped")
    check(run_overlap <= max_parallel, f"{run_overlap} runs overlapped (max {max_parallel})")
    check(dbt_overlap <= dbt_global, f"{dbt_overlap} dbt builds overlapped (max {dbt_global})")
    # The queue stays shallow: nothing is created ahead of a free lane.
    check(max_waiting <= max_parallel, f"{max_waiting} runs waited at once (max {max_parallel})")
    check(max_in_flight <= max_parallel, f"{max_in_flight} runs in flight (max {max_parallel})")
    figures = {
        "partitions": partitions,
        "stores": stores,
        "days": days,
        "events_per_day": events_per_day,
        "child_runs": len(runs),
        "wall_seconds": round(wall, 1),
        "partitions_per_minute": round(partitions / wall * 60, 1),
        "max_queue_depth_waiting": max_waiting,
        "max_in_flight": max_in_flight,
        "max_runs_overlap": run_overlap,
        "max_dbt_overlap": dbt_overlap,
        "max_per_store_overlap": per_store_overlap,
        "every_partition_once": not twice and len(per_partition) == partitions,
        "samples": samples,
        "max_parallel": max_parallel,
        "dbt_global": dbt_global,
    }
    result = LoadResult(figures, violations)
    print(f"  load: {figures}", flush=True)
    for v in violations:
        print(f"  load invariant violated: {v}", flush=True)
    return result


def render(result: LoadResult, how: str) -> str:
    f = result.figures
    ok = "all held" if result.ok else "**VIOLATED: " + "; ".join(result.violations) + "**"

    def row(label: str, value, limit: str = "") -> str:
        return f"| {label} | {value} | {limit} |"

    lines = [
        BEGIN,
        "## 6. Load: many stores through one backfill",
        "",
        f"Measured {result.measured_at:%Y-%m-%d %H:%M} UTC by {how}. Its own stack on a scratch",
        f"project with {f['stores']} synthetic stores, {f['stores']} x {f['days']} days = "
        f"{f['partitions']} partitions of {f['events_per_day']:,} events, `dbt-global` =",
        f"{f['dbt_global']}, the orchestrator's defaults (`max_parallel` {f['max_parallel']}, "
        "one day per child run),",
        "triggered with `clickstream backfill --no-follow`; Prefect sampled every second while",
        "it ran. Reproduce: `make load` (rewrites only this section).",
        "",
        "| figure | measured | invariant |",
        "|---|---|---|",
        row("partitions (child runs)", f"{f['partitions']} ({f['child_runs']})", ""),
        row(
            "wall time, trigger -> orchestrator final",
            f"{f['wall_seconds'] / 60:.1f} min ({f['partitions_per_minute']} partitions/min)",
            "",
        ),
        row(
            "max queue depth (child runs Scheduled or Pending)",
            f["max_queue_depth_waiting"],
            f"<= {f['max_parallel']}",
        ),
        row("max child runs in flight (sampled)", f["max_in_flight"], f"<= {f['max_parallel']}"),
        row(
            "max child runs overlapping (start..end)",
            f["max_runs_overlap"],
            f"<= {f['max_parallel']}",
        ),
        row(
            "max dbt builds overlapping (ledger work intervals)",
            f["max_dbt_overlap"],
            f"<= {f['dbt_global']}",
        ),
        row("max runs of one store overlapping", f["max_per_store_overlap"], "= 1"),
        row(
            "every partition built exactly once, all completed",
            "yes" if f["every_partition_once"] else "no",
            "yes",
        ),
        row("samples taken", f["samples"], ""),
        "",
        f"Invariants: {ok}.",
        END_MARK,
    ]
    return "\n".join(lines)


def update_results(path: Path, section: str) -> None:
    """Replace the load section of RESULTS.md (or append it)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    if BEGIN in text and END_MARK in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END_MARK, 1)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=STORES)
    parser.add_argument("--days", type=int, default=(END - START).days + 1)
    parser.add_argument("--events-per-day", type=int, default=EVENTS_PER_DAY)
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    end = START.fromordinal(START.toordinal() + args.days - 1)
    LOG_FINDINGS.clear()
    result = run(args.stores, START, end, args.events_per_day)
    update_results(args.results, render(result, "`make load`"))
    print(f"load section written to {args.results}")
    if LOG_FINDINGS:
        print(logwatch.report(LOG_FINDINGS), file=sys.stderr)
        return 1
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
