"""Reading the runs a backfill made: which partitions each built, and the orchestrator runs."""

from __future__ import annotations

from datetime import date, timedelta

from tests.support.stack import child_runs


def partition(run):
    """(store_id, ds) of a one-day run."""
    assert not run.parameters.get("ds_end") or run.parameters["ds_end"] == run.parameters["ds"]
    return run.parameters["store_id"], date.fromisoformat(run.parameters["ds"])


def run_partitions(run) -> list[tuple[str, date]]:
    """Every (store_id, ds) a run builds: ds .. ds_end."""
    first = date.fromisoformat(run.parameters["ds"])
    last = date.fromisoformat(run.parameters.get("ds_end") or run.parameters["ds"])
    sid = run.parameters["store_id"]
    return [(sid, first + timedelta(days=n)) for n in range((last - first).days + 1)]


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
