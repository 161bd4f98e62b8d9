"""Issue 3 end to end: the deployed orchestrator against a real server, worker and DuckDB."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, timedelta

import pytest

from clickstream.planning import OVERSUBSCRIBE
from tests.e2e_stack import DBT_GLOBAL_LIMIT, child_runs, max_overlap, state_of

pytestmark = pytest.mark.e2e


def partition(run):
    return run.parameters["store_id"], date.fromisoformat(run.parameters["ds"])


def runs_in(e2e, start: date, end: date):
    return [
        r
        for r in e2e.api(child_runs)
        if r.parameters.get("ds") and start <= date.fromisoformat(r.parameters["ds"]) <= end
    ]


def orchestrator_runs(e2e):
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    async def go(client):
        return await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["clickstream-backfill"]))
        )

    return e2e.api(go)


def test_backfill_3_stores_x_4_days_within_limits_and_idempotent(e2e):
    start, end = date(2026, 10, 5), date(2026, 10, 8)
    out = e2e.cli("backfill", "--start", str(start), "--end", str(end))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "12/12 partitions completed" in out.stdout + out.stderr

    runs = runs_in(e2e, start, end)
    assert len(runs) == 12
    assert {r.state_type.value for r in runs} == {"COMPLETED"}
    assert len({partition(r) for r in runs}) == 12  # each partition exactly once
    for r in runs:
        assert "backfill" in r.tags and r.parameters["store_id"] in r.tags
        assert r.parent_task_run_id is not None  # linked to the orchestrator (as_subflow)

    # Limits, from the child runs' recorded start/end times.
    by_store = defaultdict(list)
    for r in runs:
        by_store[r.parameters["store_id"]].append((r.start_time, r.end_time))
    for store, intervals in by_store.items():
        assert max_overlap(intervals) == 1, store
    # Runs in flight: at most max_parallel (default OVERSUBSCRIBE x dbt-global).
    overall = max_overlap([(r.start_time, r.end_time) for r in runs])
    assert 1 < overall <= OVERSUBSCRIBE * DBT_GLOBAL_LIMIT, overall

    # Ledger agrees, and dbt itself never ran more than dbt-global at once.
    from clickstream import ledger

    with state_of(e2e):
        builds = ledger.read_builds(None, start, end)
    assert len(builds) == 12 and {b.status for b in builds.values()} == {"completed"}
    work = [(b.work_started_at, b.work_ended_at) for b in builds.values()]
    assert max_overlap(work) <= DBT_GLOBAL_LIMIT

    # The same backfill again creates no child run.
    again = e2e.cli("backfill", "--start", str(start), "--end", str(end))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Nothing to do" in again.stdout
    assert len(runs_in(e2e, start, end)) == 12

    # Status grid from the ledger and Prefect.
    status = e2e.cli("status", "--start", str(start), "--end", str(end))
    assert status.returncode == 0
    assert "12 partitions: 12 completed" in status.stdout


def test_dry_run_submits_nothing(e2e):
    start, end = date(2026, 10, 12), date(2026, 10, 13)
    out = e2e.cli("backfill", "--start", str(start), "--end", str(end), "--dry-run")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Dry run" in out.stdout
    assert runs_in(e2e, start, end) == []

    # The plan grid was published as an artifact of the dry run.
    parent = max(orchestrator_runs(e2e), key=lambda r: r.created)

    async def arts(client):
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        return await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[parent.id]))
        )

    kinds = {a.key: a for a in e2e.api(arts) if a.key}
    assert "backfill-grid" in kinds and "🔵" in kinds["backfill-grid"].data
    assert "backfill-partitions" in kinds


def test_bad_input_fails_before_anything_is_created(e2e):
    before = len(e2e.api(child_runs))
    parents_before = len(orchestrator_runs(e2e))
    cases = [
        (["--start", "2026-10-08", "--end", "2026-10-05"], "before start_date"),
        (["--start", "2025-12-30", "--end", "2026-01-02"], "earliest date"),
        (["--start", "2026-10-05", "--end", "2099-01-01"], "current local date"),
        (["--start", "2026-10-05", "--end", "2026-10-05", "--stores", "nope"], "active stores:"),
        (["--start", "2026-10-05", "--end", "2026-10-05", "--max-parallel", "0"], "at least 1"),
        (
            ["--start", "2026-10-05", "--end", "2026-10-05", "--max-parallel", "9"],
            "dbt-global limit",
        ),
        (["--start", "2026-10-05", "--end", "2026-10-05", "--reprocess", "some"], "reprocess"),
    ]
    for args, words in cases:
        out = e2e.cli("backfill", *args)
        assert out.returncode != 0, args
        assert words in out.stderr + out.stdout, (args, out.stderr)
    assert len(e2e.api(child_runs)) == before
    assert len(orchestrator_runs(e2e)) == parents_before


def test_flow_rejects_bad_input_from_the_ui_path(e2e):
    """The same checks run inside the flow: a UI run with a reversed range ends Failed."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    before = len(e2e.api(child_runs))

    async def go(client):
        with temporary_settings({PREFECT_API_URL: e2e.cfg.api_url}):
            return await run_deployment(
                "clickstream-backfill/backfill-orchestrator",
                parameters={"start_date": "2026-10-08", "end_date": "2026-10-05"},
                timeout=180,
                poll_interval=1,
            )

    run = e2e.api(go)
    assert run.state_type.value == "FAILED"
    assert "before start_date" in run.state.message
    assert len(e2e.api(child_runs)) == before


def test_forced_failure_then_failed_rerun_fixes_only_it(e2e):
    from clickstream.generate import add_bad_events
    from clickstream.registry import load_registry

    start, end = date(2026, 10, 15), date(2026, 10, 16)
    stores = ["in-mumbai", "us-flagship"]
    bad = ("us-flagship", date(2026, 10, 16))
    with state_of(e2e):
        bad_file = add_bad_events(load_registry().get(bad[0]), bad[1])

    out = e2e.cli(
        "backfill", "--start", str(start), "--end", str(end), "--stores", ",".join(stores)
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "us-flagship 2026-10-16" in out.stdout + out.stderr

    parent = max(orchestrator_runs(e2e), key=lambda r: r.created)
    assert parent.state_type.value == "FAILED"
    assert "1 failed: us-flagship 2026-10-16" in parent.state.message

    runs = runs_in(e2e, start, end)
    per_partition = Counter(partition(r) for r in runs)
    assert per_partition[bad] == 2  # max_attempts=2: tried twice with a new key each time
    assert all(n == 1 for k, n in per_partition.items() if k != bad)
    ok = [r for r in runs if partition(r) != bad]
    assert len(ok) == 3 and {r.state_type.value for r in ok} == {"COMPLETED"}

    from clickstream import ledger

    with state_of(e2e):
        assert ledger.read_builds([bad[0]])[bad].status == "failed"

    # Fix the source, re-run with the `failed` policy: exactly that partition runs.
    bad_file.unlink()
    fixed = e2e.cli(
        "backfill",
        "--start",
        str(start),
        "--end",
        str(end),
        "--stores",
        ",".join(stores),
        "--reprocess",
        "failed",
    )
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    new_runs = [r for r in runs_in(e2e, start, end) if r.id not in {x.id for x in runs}]
    assert [partition(r) for r in new_runs] == [bad]
    assert new_runs[0].name.endswith("-a3")
    with state_of(e2e):
        assert ledger.read_builds([bad[0]])[bad].status == "completed"


def test_catch_up_runs_exactly_the_gaps(e2e):
    from clickstream import ledger
    from clickstream.generate import add_late_events
    from clickstream.registry import load_registry
    from clickstream.windows import last_complete_days

    lookback = 2
    first = e2e.cli("catch-up", "--lookback-days", str(lookback))
    assert first.returncode == 0, first.stdout + first.stderr
    reg = load_registry()
    days = {s.store_id: last_complete_days(s.timezone, lookback) for s in reg.active}
    lo = min(d[0] for d in days.values())
    hi = max(d[-1] for d in days.values())
    after_first = runs_in(e2e, lo, hi)
    assert {partition(r) for r in after_first} >= {(s, d) for s, ds in days.items() for d in ds}

    # Nothing changed: a quick Completed run that submits nothing.
    idle = e2e.cli("catch-up", "--lookback-days", str(lookback))
    assert idle.returncode == 0 and "Nothing to do" in idle.stdout
    assert len(runs_in(e2e, lo, hi)) == len(after_first)

    # Forget two ledger rows, land late events for a third partition.
    forgotten = [("au-sydney", days["au-sydney"][0]), ("in-mumbai", days["in-mumbai"][1])]
    late = ("us-flagship", days["us-flagship"][0])
    with state_of(e2e):
        for sid, ds in forgotten:
            assert ledger.delete_builds(sid, [ds]) == 1
        add_late_events(reg.get(late[0]), late[1], 25)
    second = e2e.cli("catch-up", "--lookback-days", str(lookback))
    assert second.returncode == 0, second.stdout + second.stderr
    new = [r for r in runs_in(e2e, lo, hi) if r.id not in {x.id for x in after_first}]
    assert sorted(partition(r) for r in new) == sorted([*forgotten, late])
    with state_of(e2e):
        rec = ledger.read_builds([late[0]])[late]
    assert rec.status == "completed"
    _ = timedelta  # keep import for readers adjusting lookbacks
