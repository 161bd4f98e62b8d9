"""What a backfill shows a person: the outcome, the grid and table artifacts, run links."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.settings import PREFECT_UI_URL

from clickstream.core import grid
from clickstream.core.child_runs import batch_label
from clickstream.core.lanes import build_lanes
from clickstream.core.requests import ResolvedRequest
from clickstream.core.states import PartitionKey
from clickstream.pipelines.backfill.dispatcher import PartitionResult
from clickstream.pipelines.backfill.snapshot import Snapshot


@dataclass
class Outcome:
    planned: list[PartitionKey]
    results: dict[PartitionKey, PartitionResult] = field(default_factory=dict)
    dry_run: bool = False
    summary: str = ""
    child_runs: int = 0

    @property
    def failed(self) -> list[PartitionKey]:
        return sorted(k for k, r in self.results.items() if r.state != "completed")

    @property
    def ok(self) -> bool:
        return not self.failed


def flow_run_url(flow_run_id: str | None) -> str:
    if not flow_run_id:
        return ""
    base = (PREFECT_UI_URL.value() or "").rstrip("/")
    return f"{base}/runs/flow-run/{flow_run_id}" if base else flow_run_id


def display_states(
    snapshot: Snapshot, selected: list[PartitionKey], results: Mapping | None, dry_run: bool
) -> dict[PartitionKey, str]:
    states: dict[PartitionKey, str] = {k: str(v) for k, v in snapshot.states.items()}
    if dry_run:
        for key in selected:
            states[key] = grid.PLANNED
    for key, res in (results or {}).items():
        states[key] = res.state
    return states


def planned_runs(
    resolved: ResolvedRequest, selected: list[PartitionKey]
) -> dict[PartitionKey, str]:
    """The child run (its days) each selected partition goes into, as planned."""
    out = {}
    for sid, batches in build_lanes(selected, resolved.order, resolved.days_per_run).items():
        for batch in batches:
            for ds in batch:
                out[(sid, ds)] = batch_label(batch)
    return out


def partition_table(
    resolved: ResolvedRequest,
    snapshot: Snapshot,
    selected: list[PartitionKey],
    results: Mapping[PartitionKey, PartitionResult],
    dry_run: bool,
) -> list[dict]:
    chosen = planned_runs(resolved, selected)
    rows = []
    for key in sorted(snapshot.states):
        sid, ds = key
        res = results.get(key)
        build = snapshot.builds.get(key)
        if res is not None:
            state, attempt, run_id = res.state, res.attempt, res.flow_run_id
            duration = round(res.duration_s, 1) if res.duration_s is not None else None
            note = res.message or ""
            run_days = res.run_days
        else:
            state = str(snapshot.states[key])
            attempt = None
            run_id = snapshot.in_flight_runs.get(key) or (build.flow_run_id if build else None)
            duration = None
            if key in chosen:
                note = "would run" if dry_run else "not run"
            elif key in snapshot.in_flight_runs:
                note = "in flight in another run"
            else:
                note = "skipped by policy"
            run_days = chosen.get(key)
        rows.append(
            {
                "store_id": sid,
                "ds": ds.isoformat(),
                "state": state,
                "attempt": attempt,
                "run_days": run_days,
                "duration_s": duration,
                "run": flow_run_url(run_id),
                "note": note,
            }
        )
    return rows


async def publish_artifacts(
    resolved: ResolvedRequest,
    snapshot: Snapshot,
    selected: list[PartitionKey],
    results: Mapping[PartitionKey, PartitionResult],
    *,
    dry_run: bool,
    title: str,
) -> str:
    states = display_states(snapshot, selected, results, dry_run)
    md = grid.render_markdown(
        states,
        title=title,
        stores=[s.store_id for s in resolved.stores],
        note=snapshot.warehouse_note(),
    )
    prefix = "catch-up" if resolved.mode == "catch_up" else "backfill"
    await acreate_markdown_artifact(
        markdown=md, key=f"{prefix}-grid", description=f"{title}: status grid"
    )
    await acreate_table_artifact(
        table=partition_table(resolved, snapshot, selected, results, dry_run),
        key=f"{prefix}-partitions",
        description=f"{title}: every partition's state, attempt, child run days, duration and run",
    )
    return md
