"""The deployed orchestrator against a real server, worker and DuckDB: dry run, bad input
(CLI and the UI's path), a failing partition and its re-run. Limits, idempotency and the
small load run are in test_batches.py; state and catch-up in test_state.py."""

from __future__ import annotations

from collections import Counter
from datetime import date

from tests.support.runs import orchestrator_runs, partition, runs_in
from tests.support.stack import child_runs, state_of


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
    from clickstream.core.stores import load_registry
    from clickstream.local.synthetic import add_bad_events

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

    from clickstream.adapters import ledger

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
