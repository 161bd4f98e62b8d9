"""Concurrent triggers on the same partitions: no duplicate work, limits held."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date
from uuid import UUID

from tests.support.invariants import dbt_overlap, max_overlap
from tests.support.runs import partition, runs_in
from tests.support.stack import DBT_GLOBAL_LIMIT, parent_run_id, state_of, wait_for


def test_overlapping_backfills_do_each_partition_once_within_limits(e2e):
    from prefect.deployments import run_deployment

    start, end = date(2026, 10, 22), date(2026, 10, 24)
    parents: list[UUID] = []
    # Two CLI backfills and one run created the way the UI creates it, all at once.
    for _ in range(2):
        out = e2e.cli(
            "backfill", "--start", str(start), "--end", str(end), "--no-follow", check=True
        )
        parents.append(parent_run_id(out.stdout))

    async def ui_like(client):
        run = await run_deployment(
            "clickstream-backfill/backfill-orchestrator",
            parameters={"start_date": str(start), "end_date": str(end)},
            timeout=0,
        )
        return run.id

    parents.append(e2e.api(ui_like))

    async def read_all(client):
        return [await client.read_flow_run(p) for p in parents]

    done = wait_for(
        lambda: (rs := e2e.api(read_all)) and all(r.state.is_final() for r in rs) and rs,
        timeout=900,
        interval=3,
        what="the three orchestrators to finish",
    )
    assert [r.state_type.value for r in done] == ["COMPLETED"] * 3, [r.state.message for r in done]

    runs = runs_in(e2e, start, end)
    per_partition = Counter(partition(r) for r in runs)
    assert len(per_partition) == 9
    assert set(per_partition.values()) == {1}, per_partition  # no duplicate child runs
    assert {r.state_type.value for r in runs} == {"COMPLETED"}

    # One run per store at a time (run level), and dbt work never above dbt-global.
    by_store = defaultdict(list)
    for r in runs:
        by_store[r.parameters["store_id"]].append((r.start_time, r.end_time))
    assert all(max_overlap(v) == 1 for v in by_store.values())
    from clickstream.adapters import ledger

    with state_of(e2e):
        builds = ledger.read_builds(None, start, end)
    assert len(builds) == 9
    assert all(b.work_started_at and b.work_ended_at for b in builds.values())
    assert dbt_overlap(builds.values()) <= DBT_GLOBAL_LIMIT
