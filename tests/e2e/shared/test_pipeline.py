"""Issue 2 end to end: the per-store dbt flow against a real server, worker and DuckDB."""

from __future__ import annotations

import re
from datetime import date
from uuid import UUID

from tests.support.invariants import max_overlap
from tests.support.stack import state_of, wait_for


def _run_id(stdout: str) -> UUID:
    return UUID(re.search(r"UUID: ([0-9a-f-]{36})", stdout).group(1))


def test_deployment_runs_from_cli_and_enqueues(e2e):
    """Two runs of one store submitted together run one after the other (ENQUEUE)."""
    ids = []
    for ds in ("2026-10-01", "2026-10-02"):
        out = e2e.prefect(
            "deployment", "run", "clickstream-dbt-run/us-flagship", "-p", f"ds={ds}", check=True
        )
        ids.append(_run_id(out.stdout))

    async def states(client):
        return [await client.read_flow_run(i) for i in ids]

    runs = wait_for(
        lambda: (rs := e2e.api(states)) and all(r.state.is_final() for r in rs) and rs,
        timeout=300,
        what="both store runs to finish",
    )
    assert [r.state_type.value for r in runs] == ["COMPLETED", "COMPLETED"], [
        r.state.message for r in runs
    ]
    assert max_overlap([(r.start_time, r.end_time) for r in runs]) == 1

    from clickstream.adapters import ledger

    with state_of(e2e):
        builds = ledger.read_builds(["us-flagship"], date(2026, 10, 1), date(2026, 10, 2))
    assert {k[1] for k in builds} == {date(2026, 10, 1), date(2026, 10, 2)}
    for rec in builds.values():
        assert rec.status == "completed"
        assert rec.mart_rows == 1
        assert rec.events > 0 and rec.sessions > 0
        assert rec.fingerprint and rec.source_event_count >= rec.events
        assert str(rec.flow_run_id) in {str(i) for i in ids}
